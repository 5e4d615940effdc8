"""JSON: one array of user objects, streamed page by page.

Layout: ``[`` on the first line, one compact user per line separated by ``,``, ``]`` on the last
line. It is a single valid JSON document, and it can still be read back line by line.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import IO, Any

from airflow_provider_kumulos._export.jsonl import encode_lines
from airflow_provider_kumulos._export.jsonl import read_identifiers as _read_line_identifiers


class JsonArrayWriter:
    """Writes ``[``, then users separated by ``,\\n``, and ``]`` on close."""

    def __init__(self, stream: IO[bytes]) -> None:
        self._stream = stream
        self._first = True
        stream.write(b"[\n")

    def write(self, users: Sequence[Any]) -> None:
        """Append users to the array."""
        if not users:
            return
        lines = encode_lines(users)[:-1].replace(b"\n", b",\n")
        self._stream.write(lines if self._first else b",\n" + lines)
        self._first = False

    def close(self) -> None:
        """Close the array."""
        self._stream.write(b"]\n" if self._first else b"\n]\n")


def _user_lines(stream: IO[bytes]) -> Iterator[bytes]:
    for line in stream:
        body = line.strip()
        if body in (b"[", b"]", b"[]", b""):
            continue
        yield body[:-1] if body.endswith(b",") else body


def read_identifiers(stream: IO[bytes]) -> Iterator[str]:
    """Identifiers of a JSON export written by :class:`JsonArrayWriter`, in file order."""
    return _read_line_identifiers(_user_lines(stream))
