"""Metrics through Airflow's own ``Stats``, so statsd or OpenTelemetry work as the deployment set them.

Names all start with ``kumulos.``; tags carry the operation and status. ``Stats`` is resolved on
first use, so importing this module costs nothing at DAG-parse time.
"""

from __future__ import annotations

import functools
from typing import Any


@functools.cache
def _stats() -> Any:
    """Airflow's Stats facade; its home moved between Airflow 3 releases."""
    try:
        from airflow.sdk.observability.stats import Stats
    except ImportError:  # Airflow < 3.2
        from airflow.stats import Stats
    return Stats


def incr(metric: str, count: int = 1, **tags: str) -> None:
    """Increment ``kumulos.<metric>`` (tagged where the backend supports tags)."""
    _stats().incr(f"kumulos.{metric}", count, tags=tags or None)


def timing(metric: str, seconds: float, **tags: str) -> None:
    """Record a duration for ``kumulos.<metric>`` in milliseconds."""
    _stats().timing(f"kumulos.{metric}", seconds * 1000.0, tags=tags or None)


def request(operation: str, status: int | str) -> None:
    """One HTTP request finished with ``status`` (or a transport error name)."""
    incr("requests", operation=operation.replace(" ", "_"), status=str(status))


def retry(operation: str, reason: str) -> None:
    """A request is about to be retried."""
    incr("retries", operation=operation.replace(" ", "_"), reason=reason)


def rate_limit_wait(seconds: float) -> None:
    """A 429 made us pause."""
    incr("rate_limit_waits")
    timing("rate_limit_wait", seconds)
