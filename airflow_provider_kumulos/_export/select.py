"""Which users of a page an export writes: page batches, the ``updated_since`` filter, dedupe, projection.

A fetched page becomes a :class:`PageBatch` (identifiers, and the filter's timestamps, beside the
users); the :class:`Selector` keeps the users that pass the filter and were not seen before, up to
a limit so that a part file can close exactly at ``split_every`` users; :class:`Projection` keeps
only the user keys asked for.
"""

from __future__ import annotations

import bisect
import functools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from airflow_provider_kumulos._export.options import parse_timestamp

if TYPE_CHECKING:
    from airflow_provider_kumulos._dedupe import SeenIdentifiers
    from airflow_provider_kumulos._export.counts import ExportCounts
    from airflow_provider_kumulos._policy import UsersPage


# --- Page batches -------------------------------------------------------------------------------------------
#
# A fetched page as the export sees it: identifiers (and the filter's timestamps) beside the users.
#
# Pass-through exports keep each user as the exact bytes Kumulos sent (``msgspec.Raw``, one line
# each); the hook has already read their identifiers. Only the ``updated_since`` filter needs more:
# the timestamps, decoded with a small struct in one decoder call per page. Other exports get dicts.


@dataclass(frozen=True)
class PageBatch:
    """One page: ``users`` (Raw or dict), their ``identifiers`` and, when filtering, ``stamps``."""

    page: int
    users: Sequence[Any]
    identifiers: list[str]
    stamps: list[str | None] | None

    def __len__(self) -> int:
        return len(self.users)

    def pick(self, positions: Sequence[int], projection: Projection | None) -> list[Any]:
        """The users at ``positions``, projected when asked."""
        users = self.users
        if projection is None:
            if len(positions) == len(users):  # every user of the page kept
                return list(users)
            return [users[i] for i in positions]
        return [projection.apply(users[i]) for i in positions]


@functools.cache
def _stamp_decoder(field: str) -> Any:
    """Decoder of ``[user, ...]`` keeping only the timestamp ``field`` the filter reads."""
    import msgspec

    return msgspec.json.Decoder(list[msgspec.defstruct("UserStamp", [(field, Any, None)])])  # type: ignore[misc]


def _stamps(values: Iterable[Any]) -> list[str | None]:
    """Timestamps as the filter takes them: a value that is not a string counts as missing."""
    return [value if isinstance(value, str) else None for value in values]


def batch_from_raw(page: UsersPage, stamp_field: str | None) -> PageBatch:
    """Batch of ``msgspec.Raw`` users, decoding the timestamps only when filtering on them."""
    users = page.users
    if stamp_field is None or not users:
        return PageBatch(page.page, users, page.identifiers, None if stamp_field is None else [])
    decoded = _stamp_decoder(stamp_field).decode(b"[" + b",".join(users) + b"]")
    return PageBatch(
        page.page, users, page.identifiers, _stamps(getattr(user, stamp_field) for user in decoded)
    )


def batch_from_dicts(page: UsersPage, stamp_field: str | None) -> PageBatch:
    """Batch of decoded users."""
    stamps = None if stamp_field is None else _stamps(user.get(stamp_field) for user in page.users)
    return PageBatch(page.page, page.users, page.identifiers, stamps)


# --- The updated_since filter -------------------------------------------------------------------------------
#
# Keep users changed at or after ``updated_since``: Kumulos has no server-side filter, so it runs here.
#
# Timestamps are compared as instants (offsets honoured). A user whose field is null or not an
# ISO-8601 time cannot be placed after the cut-off, so it is left out and counted as filtered.


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


# --- Projection ---------------------------------------------------------------------------------------------
#
# Keep only the user keys asked for (``fields``, ``include_installs``); ``identifier`` always stays.


class Projection:
    """Copy of a user dict restricted to ``keys`` (in the order the API sent them)."""

    def __init__(self, keys: tuple[str, ...]) -> None:
        self.keys = frozenset(keys)

    def apply(self, user: dict[str, Any]) -> dict[str, Any]:
        """The projected user."""
        keys = self.keys
        return {key: value for key, value in user.items() if key in keys}


# --- Selection ----------------------------------------------------------------------------------------------
#
# Decide which users of a page are written: the ``updated_since`` filter first, then dedupe.
#
# Selection stops after ``limit`` kept users so that a part file can close exactly at ``split_every``
# users; it reports where it stopped, so the rest of the page goes to the next part (and a resumed
# export knows where inside the page to continue).


@dataclass
class Selection:
    """Positions kept from ``start`` up to ``stop`` (exclusive) and why the others were not."""

    stop: int
    positions: list[int] = field(default_factory=list)
    duplicates: int = 0
    filtered: int = 0

    def count_into(self, counts: ExportCounts, start: int) -> None:
        """Add this selection to the running totals."""
        counts.users_scanned += self.stop - start
        counts.users_written += len(self.positions)
        counts.duplicates_dropped += self.duplicates
        counts.users_filtered_out += self.filtered


class Selector:
    """Applies the filter (if any) and the dedupe set to a page, in order."""

    def __init__(self, seen: SeenIdentifiers, updated_since: UpdatedSinceFilter | None) -> None:
        self.seen = seen
        self.updated_since = updated_since
        self._batch: PageBatch | None = None
        self._candidates: Sequence[int] = ()

    def _passing(self, batch: PageBatch) -> Sequence[int]:
        """Positions of the page that pass the filter, computed once per page."""
        if batch is not self._batch:
            self._batch, stamps = batch, batch.stamps
            self._candidates = range(len(batch))
            if self.updated_since is not None and stamps is not None:
                keep = self.updated_since.keep
                self._candidates = [index for index in self._candidates if keep(stamps[index])]
        return self._candidates

    def select(self, batch: PageBatch, start: int, limit: int | None) -> Selection:
        """Walk users from ``start`` until the page ends or ``limit`` users were kept."""
        candidates = self._passing(batch)
        first = bisect.bisect_left(candidates, start)
        positions, duplicates, consumed = self.seen.add_many(batch.identifiers, candidates[first:], limit)
        after = first + consumed
        stop = candidates[after] if after < len(candidates) else len(batch)
        return Selection(stop, positions, duplicates, filtered=(stop - start) - consumed)
