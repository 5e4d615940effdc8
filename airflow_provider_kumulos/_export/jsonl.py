"""JSON Lines: one user per line, the API's user object unchanged (the default format).

Users decoded raw are written as the exact bytes Kumulos sent; only a user that spans several
lines (pretty-printed by the server) is re-encoded compactly when the page is read, which keeps
its content identical.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Iterator, Sequence
from typing import IO, Any


@functools.cache
def _encoder() -> Any:
    import msgspec

    return msgspec.json.Encoder()


@functools.cache
def _identifier_decoder() -> Any:
    """Decoder of a user that keeps only its identifier."""
    import msgspec

    return msgspec.json.Decoder(msgspec.defstruct("Identified", [("identifier", str)]))


def encode_lines(users: Sequence[Any]) -> bytes:
    """Users as newline-terminated JSON, one per line: dicts encoded compactly, ``msgspec.Raw``
    users (already one line each, see ``records.batch_from_raw``) copied as they are."""
    return _encoder().encode_lines(users)


class JsonLinesWriter:
    """Appends each batch of users to ``stream`` as lines."""

    def __init__(self, stream: IO[bytes]) -> None:
        self._stream = stream

    def write(self, users: Sequence[Any]) -> None:
        """Write users, one line each."""
        if users:
            self._stream.write(encode_lines(users))

    def close(self) -> None:
        """Nothing to finish: a JSON Lines file is complete after any line."""


def read_identifiers(lines: Iterable[bytes]) -> Iterator[str]:
    """Identifiers of a JSON Lines export (a binary stream or any iterable of lines), in file order."""
    decoder = _identifier_decoder()
    for line in lines:
        if line.strip():
            yield decoder.decode(line).identifier
