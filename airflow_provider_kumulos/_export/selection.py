"""Decide which users of a page are written: the ``updated_since`` filter first, then dedupe.

Selection stops after ``limit`` kept users so that a part file can close exactly at ``split_every``
users; it reports where it stopped, so the rest of the page goes to the next part (and a resumed
export knows where inside the page to continue).
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass, field

from airflow_provider_kumulos._export.counts import ExportCounts
from airflow_provider_kumulos._export.dedupe import SeenIdentifiers
from airflow_provider_kumulos._export.filtering import UpdatedSinceFilter
from airflow_provider_kumulos._export.records import PageBatch


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
