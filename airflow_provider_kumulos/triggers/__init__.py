"""Triggers of the Kumulos provider."""
