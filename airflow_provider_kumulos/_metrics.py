"""Metrics through Airflow's own ``Stats``, so statsd, Datadog or OpenTelemetry work as the deployment set them.

Every name starts with ``kumulos.``; tags carry the dimensions (operation, status...). Plain StatsD
drops tags, so, like Airflow's own metrics while ``[metrics] legacy_names_on`` is true (the
default), each tagged metric is also sent once more under a name that carries its tag values,
e.g. ``kumulos.requests.list_users.429``. ``Stats`` and the configuration are looked up on first
use, so importing this module costs nothing at DAG-parse time. docs/observability.md lists them all.
"""

from __future__ import annotations

import functools
import re

from airflow_provider_kumulos import _compat

_NOT_IN_NAME = re.compile(r"[^A-Za-z0-9_-]+")


@functools.cache
def _names_with_tag_values() -> bool:
    """Whether tagged metrics are also sent under names that carry their tag values."""
    # Airflow < 3.2 has no legacy_names_on option and always sends both: the fallback.
    return bool(_compat.conf().getboolean("metrics", "legacy_names_on", fallback=True))


def _segment(value: str) -> str:
    """A tag value as one segment of a metric name (dots would split it into two)."""
    return _NOT_IN_NAME.sub("_", value) or "_"


def _name(metric: str) -> str:
    return f"kumulos.{metric}"


def _named_variant(metric: str, tags: dict[str, str]) -> str | None:
    if not tags or not _names_with_tag_values():
        return None
    return ".".join([_name(metric), *(_segment(value) for value in tags.values())])


def incr(metric: str, count: int = 1, **tags: str) -> None:
    """Add ``count`` to the counter ``kumulos.<metric>``, tagged with ``tags`` (in the order given)."""
    stats = _compat.stats()
    stats.incr(_name(metric), count, tags=tags or None)
    variant = _named_variant(metric, tags)
    if variant is not None:
        stats.incr(variant, count)


def timing(metric: str, seconds: float, **tags: str) -> None:
    """Record a duration for the timer ``kumulos.<metric>``, in milliseconds as Airflow's timers are."""
    stats = _compat.stats()
    milliseconds = seconds * 1000.0
    stats.timing(_name(metric), milliseconds, tags=tags or None)
    variant = _named_variant(metric, tags)
    if variant is not None:
        stats.timing(variant, milliseconds)


def _operation(text: str) -> str:
    """``list users`` -> ``list_users``: the operation tag as it appears in every metric."""
    return text.replace(" ", "_")


def request(operation: str, status: int | str) -> None:
    """One HTTP exchange ended with ``status``: an HTTP status, or ``timeout``/``connection_error``/``tls_error``."""
    incr("requests", operation=_operation(operation), status=str(status))


def retry(operation: str, reason: str) -> None:
    """A failed attempt is about to be retried; ``reason`` is its status or error class."""
    incr("retries", operation=_operation(operation), reason=reason)


def rate_limit_wait(operation: str, seconds: float) -> None:
    """A 429 made the caller pause for ``seconds`` before retrying."""
    incr("rate_limit_waits", operation=_operation(operation))
    timing("rate_limit_wait", seconds, operation=_operation(operation))
