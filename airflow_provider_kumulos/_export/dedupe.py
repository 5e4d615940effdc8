"""Drop users seen earlier in the export: offset pagination repeats users when the set shifts.

Kumulos pages by offset, so a user inserted before the current page pushes a user already written
onto the next page. Remembering every identifier would cost ~100 bytes per user in a Python set;
instead each identifier becomes a 64-bit BLAKE2b digest stored in an open-addressing table backed
by one ``array('Q')``: 8 bytes per slot, at most 70% full, so 11.5-23 bytes per unique user (plus
a transient copy while the table doubles). Two different identifiers share a digest with
probability about n²/2⁶⁵ (under 1 in 300,000 for ten million users); the second would be dropped
as a duplicate.
"""

from __future__ import annotations

import hashlib
from array import array

_INITIAL_SLOTS = 1 << 12
_MAX_LOAD = 0.7


def digest(identifier: str) -> int:
    """Nonzero 64-bit digest of ``identifier`` (zero marks an empty slot)."""
    value = int.from_bytes(hashlib.blake2b(identifier.encode("utf-8"), digest_size=8).digest(), "little")
    return value or 1


class SeenIdentifiers:
    """A compact set of identifiers: ``add`` answers whether the identifier is new."""

    def __init__(self) -> None:
        self._table = array("Q", bytes(8 * _INITIAL_SLOTS))
        self._mask = _INITIAL_SLOTS - 1
        self._count = 0
        self._limit = int(_INITIAL_SLOTS * _MAX_LOAD)

    def __len__(self) -> int:
        return self._count

    @property
    def nbytes(self) -> int:
        """Bytes held by the table."""
        return self._table.itemsize * len(self._table)

    def add(self, identifier: str) -> bool:
        """Remember ``identifier``; False if it was already there."""
        return self._insert(digest(identifier))

    def _insert(self, key: int) -> bool:
        table, mask = self._table, self._mask
        slot = key & mask
        while True:
            current = table[slot]
            if current == 0:
                table[slot] = key
                self._count += 1
                if self._count > self._limit:
                    self._grow()
                return True
            if current == key:
                return False
            slot = (slot + 1) & mask

    def _grow(self) -> None:
        old = self._table
        slots = len(old) * 2
        self._table = array("Q", bytes(8 * slots))
        self._mask = slots - 1
        self._limit = int(slots * _MAX_LOAD)
        self._count = 0
        for key in old:
            if key:
                self._insert(key)
