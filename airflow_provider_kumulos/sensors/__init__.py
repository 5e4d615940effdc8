"""Sensors of the Kumulos provider."""
