"""Decide which users of a page are written: the ``updated_since`` filter first, then dedupe.

Selection stops after ``limit`` kept users so that a part file can close exactly at ``split_every``
users; it reports where it stopped, so the rest of the page goes to the next part (and a resumed
export knows where inside the page to continue).
"""

from __future__ import annotations

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

    def select(self, batch: PageBatch, start: int, limit: int | None) -> Selection:
        """Walk users from ``start`` until the page ends or ``limit`` users were kept."""
        identifiers, stamps = batch.identifiers, batch.stamps
        keep = self.updated_since.keep if self.updated_since is not None and stamps is not None else None
        add = self.seen.add
        selection = Selection(stop=len(identifiers))
        positions = selection.positions
        for index in range(start, len(identifiers)):
            if limit is not None and len(positions) >= limit:
                selection.stop = index
                break
            if keep is not None and not keep(stamps[index]):  # type: ignore[index]
                selection.filtered += 1
            elif not add(identifiers[index]):
                selection.duplicates += 1
            else:
                positions.append(index)
        return selection
