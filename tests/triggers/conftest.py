"""Fixtures for the trigger tests."""

from __future__ import annotations

import asyncio

import pytest


@pytest.fixture
def undefined_conn_id() -> str:
    """A connection id nothing defines; skips where Airflow cannot say so outside a triggerer.

    Airflow 3.1 asks the API server for connections it cannot find elsewhere, through a channel
    that only exists inside a running task or triggerer.
    """
    from airflow.sdk import BaseHook

    conn_id = "kumulos_defined_nowhere"
    try:
        asyncio.run(BaseHook.aget_connection(conn_id))
    except ImportError:
        pytest.skip("this Airflow release looks up undefined connections only inside a triggerer")
    except Exception:
        return conn_id
    raise AssertionError(f"connection {conn_id!r} is unexpectedly defined")
