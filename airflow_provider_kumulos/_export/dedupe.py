"""Drop users seen earlier in the export: offset pagination repeats users when the set shifts.

Kumulos pages by offset, so a user inserted before the current page pushes a user already written
onto the next page. Remembering every identifier would cost ~100 bytes per user in a Python set;
instead each identifier becomes a 64-bit hash (Python's keyed SipHash of the string) stored in an
open-addressing table backed by one ``array('Q')``: 8 bytes per slot, at most 70% full, so
11.5-23 bytes per unique user. The table is sized from ``totalUsers`` up front, so it only doubles
(briefly holding old and new) if the user set grows during the export. Two different
identifiers share a hash with probability about n²/2⁶⁵ (under 1 in 300,000 for ten million
users); the second would be dropped as a duplicate. Hashes are compared within one process only.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterable, Sequence

_INITIAL_SLOTS = 1 << 12
_MAX_LOAD = 0.7
_MASK64 = (1 << 64) - 1


class SeenIdentifiers:
    """A compact set of identifiers: adding answers which ones are new."""

    def __init__(self) -> None:
        self._table = array("Q", bytes(8 * _INITIAL_SLOTS))
        self._count = 0
        self._limit = int(_INITIAL_SLOTS * _MAX_LOAD)

    def __len__(self) -> int:
        return self._count

    @property
    def nbytes(self) -> int:
        """Bytes held by the table."""
        return self._table.itemsize * len(self._table)

    def reserve(self, expected: int) -> None:
        """Size the table for ``expected`` identifiers now (from ``totalUsers``), sparing later doublings."""
        while expected > self._limit:
            self._grow()

    def add(self, identifier: str) -> bool:
        """Remember ``identifier``; False if it was already there."""
        kept, _, _ = self.add_many([identifier], [0], None)
        return bool(kept)

    def add_many(
        self, identifiers: Sequence[str], candidates: Iterable[int], limit: int | None
    ) -> tuple[list[int], int, int]:
        """Add ``identifiers[i]`` for each candidate ``i`` until ``limit`` new ones were added.

        Returns the positions that were new, how many were duplicates, and how many candidates
        were consumed. One tight loop per page: this runs for every exported user.
        """
        table, mask = self._table, len(self._table) - 1
        count, grow_at = self._count, self._limit
        positions: list[int] = []
        append = positions.append
        kept = duplicates = consumed = 0
        for index in candidates:
            if kept == limit:
                break
            consumed += 1
            key = (hash(identifiers[index]) & _MASK64) or 1
            slot = key & mask
            current = table[slot]
            while current and current != key:
                slot = (slot + 1) & mask
                current = table[slot]
            if current:
                duplicates += 1
                continue
            table[slot] = key
            append(index)
            kept += 1
            count += 1
            if count > grow_at:
                self._count = count
                self._grow()
                table, mask, grow_at = self._table, len(self._table) - 1, self._limit
        self._count = count
        return positions, duplicates, consumed

    def _grow(self) -> None:
        old = self._table
        slots = len(old) * 2
        table = array("Q", bytes(8 * slots))
        mask = slots - 1
        for key in old:
            if key:
                slot = key & mask
                while table[slot]:
                    slot = (slot + 1) & mask
                table[slot] = key
        self._table = table
        self._limit = int(slots * _MAX_LOAD)
