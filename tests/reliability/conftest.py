"""Reliability suite fixtures: the figures collector and its end-of-run report, emulators, connections.

Every scenario records its figures with the session ``figures`` fixture. At the end of the run they
are printed in the terminal summary, whatever the capture mode, and appended to a JSON file
(``$KUMULOS_RELIABILITY_FIGURES``, default ``build/reliability-figures.json``); docs/reliability.md
quotes the latest run.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from reliability_support import DEFAULT_FIGURES_PATH, FIGURES_ENV, Figures

from airflow_provider_kumulos.testing.emulator import KumulosEmulator

FIGURES_KEY = pytest.StashKey[Figures]()


@pytest.fixture(scope="session")
def figures(request: pytest.FixtureRequest) -> Figures:
    """The run's figures collector (reported once at the end of the session)."""
    return request.config.stash.setdefault(FIGURES_KEY, Figures())


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    """Print every recorded figure and append the run to the figures file."""
    collected = config.stash.get(FIGURES_KEY, None)
    if collected is None or not collected.scenarios:
        return
    path = Path(os.environ.get(FIGURES_ENV) or DEFAULT_FIGURES_PATH)
    collected.append_to(path, int(exitstatus))
    terminalreporter.section("Kumulos reliability figures")
    for line in collected.lines():
        terminalreporter.write_line(line)
    terminalreporter.write_line(f"(appended to {path})")


@pytest.fixture
def connect(monkeypatch: pytest.MonkeyPatch) -> Callable[..., str]:
    """``connect(emulator, conn_id="kumulos_default", password=None, **extra)``: define an Airflow
    connection to ``emulator`` for this test (``password`` overrides the emulator's server key)."""

    def define(
        emulator: KumulosEmulator, conn_id: str = "kumulos_default", password: str | None = None, **extra: Any
    ) -> str:
        conn = json.loads(emulator.connection_uri(**extra))
        if password is not None:
            conn["password"] = password
        monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(conn))
        return conn_id

    return define


@pytest.fixture
def emulator_factory() -> Iterator[Callable[..., KumulosEmulator]]:
    """``emulator_factory(**kwargs)``: start a ``KumulosEmulator``, stopped after the test."""
    started: list[KumulosEmulator] = []

    def start(**kwargs: Any) -> KumulosEmulator:
        emulator = KumulosEmulator(**kwargs).start()
        started.append(emulator)
        return emulator

    yield start
    for emulator in started:
        emulator.stop()
