"""CSV: one row per user, one column per attribute key, with memory that stays bounded.

Columns: ``identifier, firstActive, lastActive, createdAt, updatedAt, inAppEnabled``, then
``attr.<key>`` for each attribute column, then ``attributes_json`` and ``installs``. Attribute keys
differ between users and a single pass cannot know them all, so the attribute columns are fixed up
front: the ``attribute_columns`` argument, else the sorted keys found in the first page written.
Keys outside those columns go to ``attributes_json`` (a JSON object; empty when there are none),
so no value is lost and every part of an export shares one header. Cells: strings as they are,
null as an empty cell, every other value (numbers, booleans, lists, objects) as compact JSON;
``installs`` is the JSON array of installs. Columns follow ``fields``/``include_installs``.
"""

from __future__ import annotations

import csv
import functools
import io
from collections.abc import Iterator, Sequence
from typing import IO, Any

SCALAR_FIELDS = ("firstActive", "lastActive", "createdAt", "updatedAt", "inAppEnabled")
ATTRIBUTE_PREFIX = "attr."
EXTRA_ATTRIBUTES = "attributes_json"


@functools.cache
def _encoder() -> Any:
    import msgspec

    return msgspec.json.Encoder()


def cell(value: Any) -> str:
    """One CSV cell: strings unchanged, null empty, anything else compact JSON."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return str(_encoder().encode(value).decode("utf-8"))


class CsvLayout:
    """The export's columns: shared by every part, decided once, saved for a resumed export."""

    def __init__(self, kept_fields: Sequence[str], attribute_keys: Sequence[str] | None) -> None:
        self.scalars = tuple(name for name in SCALAR_FIELDS if name in kept_fields)
        self.with_attributes = "attributes" in kept_fields
        self.with_installs = "installs" in kept_fields
        self.attribute_keys: tuple[str, ...] | None = ()
        if self.with_attributes:
            self.attribute_keys = None if attribute_keys is None else tuple(attribute_keys)

    def decide(self, users: Sequence[dict[str, Any]]) -> None:
        """Fix the attribute columns from these users' keys, unless already fixed."""
        if self.attribute_keys is None:
            keys: set[str] = set()
            for user in users:
                attributes = user.get("attributes")
                if isinstance(attributes, dict):
                    keys.update(attributes)
            self.attribute_keys = tuple(sorted(keys))

    def header(self) -> list[str]:
        """Column names."""
        columns = ["identifier", *self.scalars]
        if self.with_attributes:
            columns += [ATTRIBUTE_PREFIX + key for key in self.attribute_keys or ()]
            columns.append(EXTRA_ATTRIBUTES)
        if self.with_installs:
            columns.append("installs")
        return columns

    def row(self, user: dict[str, Any]) -> list[str]:
        """One user's cells, in :meth:`header` order."""
        row = [user["identifier"], *(cell(user.get(name)) for name in self.scalars)]
        if self.with_attributes:
            attributes = user.get("attributes") or {}
            keys = self.attribute_keys or ()
            row += [cell(attributes.get(key)) for key in keys]
            extra = {key: value for key, value in attributes.items() if key not in keys}
            row.append(cell(extra) if extra else "")
        if self.with_installs:
            row.append(cell(user.get("installs")))
        return row


class CsvWriter:
    """Writes the header, then rows batch by batch."""

    def __init__(self, stream: IO[bytes], layout: CsvLayout) -> None:
        self._stream = stream
        self._layout = layout
        self._emit(layout.header())

    def _emit(self, *rows: list[str]) -> None:
        buffer = io.StringIO()
        csv.writer(buffer).writerows(rows)
        self._stream.write(buffer.getvalue().encode("utf-8"))

    def write(self, users: Sequence[dict[str, Any]]) -> None:
        """Append one row per user."""
        if users:
            self._emit(*(self._layout.row(user) for user in users))

    def close(self) -> None:
        """Nothing to finish after the last row."""


def read_identifiers(stream: IO[bytes]) -> Iterator[str]:
    """Identifiers (first column) of a CSV export, in file order."""
    rows = csv.reader(io.TextIOWrapper(stream, encoding="utf-8", newline=""))
    next(rows, None)
    for row in rows:
        yield row[0]
