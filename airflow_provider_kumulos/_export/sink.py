"""Byte streams of an export file: atomic publishing, optional gzip, size and SHA-256 of what is stored.

The writer of a format writes to :attr:`Sink.stream`; underneath, the bytes are (optionally)
gzip-compressed, counted and hashed exactly as stored, and written to a temporary object that
:func:`~airflow_provider_kumulos._storage.atomic_write` publishes only if the block completes.
Compression and remote stores get a writer thread, so that their slow work overlaps with the
next pages; an uncompressed local file is written inline, where hashing and writing a page take
well under a millisecond and handing them to a thread would cost more than it saves.
Reading a file back (a resumed export checking its earlier parts, a manifest merge looking for
duplicates) decompresses the same way, and :func:`stored_digest` hashes the stored bytes again.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING, Any

from airflow_provider_kumulos._storage import atomic_write, is_local

if TYPE_CHECKING:
    from airflow.sdk import ObjectStoragePath


class _HashingWriter(io.RawIOBase):
    """Pass writes through to ``target`` while counting and hashing them."""

    def __init__(self, target: IO[bytes]) -> None:
        super().__init__()
        self._target = target
        self.sha256 = hashlib.sha256()
        self.nbytes = 0

    def writable(self) -> bool:
        """Always: this stream only writes."""
        return True

    def write(self, data: Any) -> int:
        """Write all of ``data`` to the target, counting and hashing it."""
        view = memoryview(data)
        self._target.write(view)
        self.sha256.update(view)
        self.nbytes += view.nbytes
        return view.nbytes

    def tell(self) -> int:
        """Bytes written so far (pyarrow asks for the position)."""
        return self.nbytes


@dataclass
class Sink:
    """Where a format writer writes; ``nbytes`` and ``sha256`` describe the stored object once closed."""

    stream: IO[bytes]
    nbytes: int = 0
    sha256: str = ""


class _WriterThread(io.RawIOBase):
    """Hands writes to a thread that compresses, hashes and stores them.

    zlib, SHA-256 and file writes release the GIL, so that work overlaps with encoding the next
    page instead of adding to it. At most ``depth`` chunks wait in the queue (bounded memory). A
    failure in the thread is raised by the next ``write`` or by ``close``.
    """

    def __init__(self, target: IO[bytes], depth: int = 4) -> None:
        super().__init__()
        self._target = target
        self._queue: queue.Queue[bytes | None] = queue.Queue(maxsize=depth)
        self._error: BaseException | None = None
        self._abandoned = False
        self._accepted = 0
        self._thread = threading.Thread(target=self._run, name="kumulos-export-writer", daemon=True)
        self._thread.start()

    def writable(self) -> bool:
        """Always: this stream only writes."""
        return True

    def write(self, data: Any) -> int:
        """Queue ``data`` (copied unless it is immutable bytes: the caller may reuse its buffer)."""
        if self._error is not None:
            raise self._error
        chunk = data if type(data) is bytes else bytes(data)
        self._queue.put(chunk)
        self._accepted += len(chunk)
        return len(chunk)

    def tell(self) -> int:
        """Bytes accepted so far (pyarrow asks for the position)."""
        return self._accepted

    def _run(self) -> None:
        while (chunk := self._queue.get()) is not None:
            if self._error is None and not self._abandoned:
                try:
                    self._target.write(chunk)
                except BaseException as error:
                    self._error = error

    def close(self) -> None:
        """Wait until every queued chunk is stored; raise what the thread met, if anything."""
        if not self.closed:
            self._queue.put(None)
            self._thread.join()
            super().close()
        if self._error is not None and not self._abandoned:
            raise self._error

    def abandon(self) -> None:
        """Stop storing (the file is being discarded) and wait for the thread to finish."""
        self._abandoned = True
        self.close()


@contextlib.contextmanager
def open_sink(path: ObjectStoragePath, compression: str | None) -> Iterator[Sink]:
    """Write ``path`` atomically, gzip-compressed when asked; the object exists only after a clean exit."""
    with atomic_write(path, "wb") as raw:
        hashing = _HashingWriter(raw)
        encoded: IO[bytes] = (
            gzip.GzipFile(filename="", fileobj=hashing, mode="wb", mtime=0)  # type: ignore[assignment]
            if compression == "gzip"
            else hashing
        )
        writer = _WriterThread(encoded) if compression or not is_local(path) else None
        sink = Sink(io.BufferedWriter(writer or encoded, buffer_size=1 << 20))
        try:
            yield sink
        except BaseException:
            if writer is not None:
                writer.abandon()
            else:  # the temporary object is about to be discarded: flush into it, quietly
                with contextlib.suppress(Exception):
                    sink.stream.close()
            raise
        sink.stream.close()
        encoded.close()
        sink.nbytes, sink.sha256 = hashing.nbytes, hashing.sha256.hexdigest()


def stored_digest(path: ObjectStoragePath) -> tuple[int, str]:
    """Size and SHA-256 of the object stored at ``path`` (as :func:`open_sink` reported them)."""
    digest = hashlib.sha256()
    nbytes = 0
    with path.fs.open(path.path, "rb") as raw:
        while chunk := raw.read(1 << 20):
            digest.update(chunk)
            nbytes += len(chunk)
    return nbytes, digest.hexdigest()


@contextlib.contextmanager
def open_decompressed(path: ObjectStoragePath, compression: str | None) -> Iterator[IO[bytes]]:
    """Read ``path``, decompressing gzip; uncompressed files stay seekable (parquet needs that)."""
    with path.fs.open(path.path, "rb") as raw:
        yield gzip.GzipFile(fileobj=raw, mode="rb") if compression == "gzip" else raw  # type: ignore[misc]
