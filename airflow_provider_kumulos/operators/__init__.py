"""Operators of the Kumulos provider."""
