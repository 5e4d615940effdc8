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
from collections.abc import Sequence

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
        """Size the table for ``expected`` identifiers now (from ``totalUsers``), in one rehash."""
        slots = len(self._table)
        while expected > int(slots * _MAX_LOAD):
            slots *= 2
        if slots != len(self._table):
            self._resize(slots)

    def add(self, identifier: str) -> bool:
        """Remember ``identifier``; False if it was already there."""
        kept, _, _ = self.add_many([identifier], [0], None)
        return bool(kept)

    def add_many(
        self, identifiers: Sequence[str], candidates: Sequence[int], limit: int | None
    ) -> tuple[list[int], int, int]:
        """Add ``identifiers[i]`` for each candidate ``i`` until ``limit`` new ones were added.

        Returns the positions that were new, how many were duplicates, and how many candidates
        were consumed. One tight loop per page: this runs for every exported user, so the keys are
        hashed in one C-level pass first and the table is grown up front, never inside the loop.
        """
        if limit is None:
            kept, duplicates = self._add(identifiers, candidates)
            return kept, duplicates, len(candidates)
        positions: list[int] = []
        duplicates = consumed = 0
        while len(positions) < limit and consumed < len(candidates):
            # A slice of as many candidates as are still wanted can never overshoot the limit.
            chunk = candidates[consumed : consumed + limit - len(positions)]
            kept, dropped = self._add(identifiers, chunk)
            positions += kept
            duplicates += dropped
            consumed += len(chunk)
        return positions, duplicates, consumed

    def _add(self, identifiers: Sequence[str], candidates: Sequence[int]) -> tuple[list[int], int]:
        """Add every candidate; returns the new positions and the number of duplicates."""
        self.reserve(self._count + len(candidates))
        table, mask = self._table, len(self._table) - 1
        keys = [(key & _MASK64) or 1 for key in map(hash, map(identifiers.__getitem__, candidates))]
        positions: list[int] = []
        append = positions.append
        duplicates = 0
        for index, key in zip(candidates, keys, strict=True):
            slot = key & mask
            current = table[slot]
            while current:
                if current == key:
                    break
                slot = (slot + 1) & mask
                current = table[slot]
            else:
                table[slot] = key
                append(index)
                continue
            duplicates += 1
        self._count += len(positions)
        return positions, duplicates

    def _resize(self, slots: int) -> None:
        old = self._table
        table = array("Q", bytes(8 * slots))
        mask = slots - 1
        for key in filter(None, old):  # skips the empty slots in C
            slot = key & mask
            while table[slot]:
                slot = (slot + 1) & mask
            table[slot] = key
        self._table = table
        self._limit = int(slots * _MAX_LOAD)
