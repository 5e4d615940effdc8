"""Fixtures for the sensor tests: the default connection on the emulator, and users that appear later."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from airflow_provider_kumulos.testing.emulator import KumulosEmulator

FAST_RETRIES = {"max_retries": 1, "backoff_base": 0.01, "backoff_max": 0.05}


@pytest.fixture
def connect(
    kumulos_emulator: KumulosEmulator, monkeypatch: pytest.MonkeyPatch
) -> Callable[..., KumulosEmulator]:
    """``connect(password=None, **extra)``: point ``kumulos_default`` at the emulator (fast retries)."""

    def define(password: str | None = None, **extra: Any) -> KumulosEmulator:
        conn = json.loads(kumulos_emulator.connection_uri(**{**FAST_RETRIES, **extra}))
        if password is not None:
            conn["password"] = password
        monkeypatch.setenv("AIRFLOW_CONN_KUMULOS_DEFAULT", json.dumps(conn))
        return kumulos_emulator

    return define


@pytest.fixture
def emulator(connect: Callable[..., KumulosEmulator]) -> KumulosEmulator:
    """The emulator, reachable as ``kumulos_default``."""
    return connect()


@pytest.fixture
def appear_later(emulator: KumulosEmulator) -> Iterator[Callable[..., None]]:
    """``appear_later(user_id, attributes, delay=0.5, after=1)``: create the user ``delay`` seconds after
    the ``after``-th request that looked for it, from another thread (as the app would)."""
    threads: list[threading.Thread] = []

    def schedule(user_id: str, attributes: dict[str, Any], delay: float = 0.5, after: int = 1) -> None:
        def run() -> None:
            deadline = time.monotonic() + 60
            while (
                sum(r.identifier == user_id for r in emulator.requests) < after
                and time.monotonic() < deadline
            ):
                time.sleep(0.02)
            time.sleep(delay)
            emulator.set_attributes(user_id, attributes)

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        threads.append(thread)

    yield schedule
    for thread in threads:
        thread.join(timeout=61)
