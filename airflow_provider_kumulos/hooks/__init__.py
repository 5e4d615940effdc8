"""Hooks of the Kumulos provider."""
