"""Test helpers shipped with the provider: a local Kumulos CRM API emulator and its pytest plugin.

``KumulosEmulator`` is imported on first use, so importing this package (as pytest does for the
plugin) stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from airflow_provider_kumulos.testing.emulator import KumulosEmulator

__all__ = ["KumulosEmulator"]


def __getattr__(name: str) -> Any:
    if name == "KumulosEmulator":
        from airflow_provider_kumulos.testing.emulator import KumulosEmulator

        return KumulosEmulator
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
