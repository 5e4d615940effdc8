"""Fixtures shared by the hook tests: a hook on the test's emulator and a view of what it received."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from airflow_provider_kumulos.hooks.kumulos import KumulosCRMHook
from airflow_provider_kumulos.testing.emulator import KumulosEmulator, RecordedRequest


@pytest.fixture
def hook(make_hook: Callable[..., KumulosCRMHook]) -> KumulosCRMHook:
    """A hook on the emulator with 2 fast retries (so exhausting them takes 3 requests)."""
    return make_hook(max_retries=2)


@pytest.fixture
def received(kumulos_emulator: KumulosEmulator) -> Callable[..., list[RecordedRequest]]:
    """``received(count=None)``: the API requests the emulator logged, waiting up to 5 s for ``count``.

    The emulator logs a slow answer when it sends it, which can be after the client gave up.
    """

    def get(count: int | None = None) -> list[RecordedRequest]:
        deadline = time.monotonic() + 5.0
        while count is not None and len(kumulos_emulator.requests) < count and time.monotonic() < deadline:
            time.sleep(0.02)
        return kumulos_emulator.requests

    return get


@pytest.fixture
def user_id(kumulos_emulator: KumulosEmulator) -> str:
    """The id of a user that exists in the emulator."""
    return kumulos_emulator.user_ids()[0]


@pytest.fixture
def undefined_conn_id() -> str:
    """A connection id nothing defines; skips where Airflow cannot say so outside a task.

    Airflow 3.1 asks the API server for connections it cannot find elsewhere, through a channel
    that only exists inside a running task (tests/sensors covers that case in a real DAG run).
    """
    from airflow.sdk import BaseHook

    conn_id = "kumulos_defined_nowhere"
    try:
        BaseHook.get_connection(conn_id)
    except ImportError:
        pytest.skip("this Airflow release looks up undefined connections only inside a task")
    except Exception:
        return conn_id
    raise AssertionError(f"connection {conn_id!r} is unexpectedly defined")
