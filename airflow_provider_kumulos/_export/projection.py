"""Keep only the user keys asked for (``fields``, ``include_installs``); ``identifier`` always stays."""

from __future__ import annotations

from typing import Any


class Projection:
    """Copy of a user dict restricted to ``keys`` (in the order the API sent them)."""

    def __init__(self, keys: tuple[str, ...]) -> None:
        self.keys = frozenset(keys)

    def apply(self, user: dict[str, Any]) -> dict[str, Any]:
        """The projected user."""
        keys = self.keys
        return {key: value for key, value in user.items() if key in keys}
