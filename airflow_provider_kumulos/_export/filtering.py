"""Keep users changed at or after ``updated_since``: Kumulos has no server-side filter, so it runs here.

Timestamps are compared as instants (offsets honoured). A user whose field is null or not an
ISO-8601 time cannot be placed after the cut-off, so it is left out and counted as filtered.
"""

from __future__ import annotations

from datetime import datetime

from airflow_provider_kumulos._export.options import parse_timestamp


class UpdatedSinceFilter:
    """``keep(value)`` is True when the timestamp string ``value`` is at or after ``since``."""

    def __init__(self, since: datetime, field: str) -> None:
        self.since = since
        self.field = field

    def keep(self, value: str | None) -> bool:
        """Whether a user whose ``field`` holds ``value`` belongs in the export."""
        if not value:
            return False
        try:
            return parse_timestamp(value) >= self.since
        except ValueError:
            return False
