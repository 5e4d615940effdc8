"""pytest fixtures for the Kumulos CRM emulator (registered as the ``kumulos_emulator`` plugin).

``kumulos_emulator`` is a fresh, started emulator with 50 users per test; ``kumulos_connection``
also points Airflow's ``kumulos_default`` connection at it. The emulator module is imported inside
the fixtures so merely loading the plugin costs nothing.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from airflow_provider_kumulos.testing.emulator import KumulosEmulator


@pytest.fixture
def kumulos_emulator() -> Iterator[KumulosEmulator]:
    """A running emulator with 50 generated users, stopped after the test."""
    from airflow_provider_kumulos.testing.emulator import KumulosEmulator

    with KumulosEmulator(users=50) as emulator:
        yield emulator


@pytest.fixture
def kumulos_connection(kumulos_emulator: KumulosEmulator, monkeypatch: pytest.MonkeyPatch) -> KumulosEmulator:
    """The emulator, with ``AIRFLOW_CONN_KUMULOS_DEFAULT`` pointing at it for this test."""
    monkeypatch.setenv("AIRFLOW_CONN_KUMULOS_DEFAULT", kumulos_emulator.connection_uri())
    return kumulos_emulator
