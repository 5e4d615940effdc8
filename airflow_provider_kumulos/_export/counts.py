"""What an export saw and wrote, and whether that agrees with the server's ``totalUsers``.

Offset pagination over a changing user set can skip or repeat users; comparing the unique users
scanned with ``totalUsers`` at the start and the end is how a drifted export is noticed. The counts
are summed by the selection, saved in resume checkpoints and reported by the run.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any


@dataclass
class ExportCounts:
    """Running totals of one export (restored from resume state when a retry continues)."""

    pages_fetched: int = 0
    users_scanned: int = 0
    users_written: int = 0
    duplicates_dropped: int = 0
    users_filtered_out: int = 0
    total_users_start: int | None = None
    total_users_end: int | None = None

    def saw_page(self, total_users: int) -> None:
        """One more page fetched; ``total_users`` is its ``totalUsers``."""
        self.pages_fetched += 1
        if self.total_users_start is None:
            self.total_users_start = total_users
        self.total_users_end = total_users

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe copy (resume state, summaries)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ExportCounts:
        """Counts saved by :meth:`to_dict`; unknown keys are ignored."""
        names = {field.name for field in fields(cls)}
        return cls(**{key: value for key, value in data.items() if key in names})

    def expected_users(self, start_page: int, end_page: int | None, page_size: int) -> int:
        """Users the page window should hold according to the last ``totalUsers``."""
        total = self.total_users_end or 0
        upper = total if end_page is None else min(total, end_page * page_size)
        return max(0, upper - (start_page - 1) * page_size)

    def mismatch(self, start_page: int, end_page: int | None, page_size: int) -> str | None:
        """Why the counts disagree with ``totalUsers``, or None when they agree."""
        unique = self.users_scanned - self.duplicates_dropped
        expected = self.expected_users(start_page, end_page, page_size)
        problems = []
        if self.total_users_start != self.total_users_end:
            problems.append(f"totalUsers changed from {self.total_users_start} to {self.total_users_end}")
        if unique != expected:
            problems.append(f"{unique} unique users were scanned where totalUsers implies {expected}")
        if self.duplicates_dropped:
            problems.append(f"{self.duplicates_dropped} repeated users were dropped")
        return "; ".join(problems) or None
