"""Where exported users go: XCom, one file, or part files; each file through an atomic, hashing sink.

The three outputs take batches through ``write`` and say how many more users the current file may
take (``room``), so the export loop is the same for each. Files are written through sinks: a format
writer writes to :attr:`Sink.stream`; underneath, the bytes are (optionally) gzip-compressed,
counted and hashed exactly as stored, and written through
:func:`~airflow_provider_kumulos._storage.atomic_write`, which publishes only if the block completes
(``finish`` publishes, ``abort`` discards whatever is unfinished). :func:`stored_digest` hashes
stored bytes again (a resumed export checking its earlier parts).
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING, Any

from airflow_provider_kumulos._export.formats import ExportFormat, FormatWriter
from airflow_provider_kumulos._export.manifest import MANIFEST_NAME, PartInfo, build_manifest, write_json
from airflow_provider_kumulos._storage import atomic_write, remove_quietly
from airflow_provider_kumulos.exceptions import KumulosInputError

if TYPE_CHECKING:
    from airflow.sdk import ObjectStoragePath


# --- Sinks --------------------------------------------------------------------------------------------------
#
# Byte streams of an export file: atomic publishing, optional gzip, size and SHA-256 of what is stored.
#
# The writer of a format writes to :attr:`Sink.stream`; underneath, the bytes are (optionally)
# gzip-compressed, counted and hashed exactly as stored, and written through
# :func:`~airflow_provider_kumulos._storage.atomic_write`, which publishes only if the block completes.
# Writes happen inline, in the export's thread (a writer thread overlapping gzip with the next
# page made gzip exports no faster).
# Reading a file back (a resumed export checking its earlier parts, a manifest merge looking for
# duplicates) decompresses the same way, and :func:`stored_digest` hashes the stored bytes again.


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
        sink = Sink(io.BufferedWriter(encoded, buffer_size=1 << 20))
        try:
            yield sink
        except BaseException:
            with contextlib.suppress(Exception):  # what was written is about to be discarded
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


# --- Outputs ------------------------------------------------------------------------------------------------


class XComOutput:
    """Collects users in memory, refusing to hold more than ``limit`` of them."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.users: list[Any] = []

    def check_total(self, total_users: int, filtering: bool) -> None:
        """Fail on the first page when the app holds more users than may be returned (unfiltered)."""
        if not filtering and total_users > self.limit:
            raise self._too_many(f"the app has {total_users:,} users")

    def _too_many(self, problem: str) -> KumulosInputError:
        return KumulosInputError(
            "max_xcom_users",
            f"{problem}, more than max_xcom_users={self.limit:,} may be returned through XCom",
            "Set output_path to write the users to a file (XCom then gets a small summary), "
            "or raise max_xcom_users.",
        )

    def room(self) -> int | None:
        """Unlimited: the check happens in :meth:`write`."""
        return None

    def write(self, users: Sequence[Any]) -> None:
        """Keep users, failing as soon as the limit is passed."""
        if len(self.users) + len(users) > self.limit:
            raise self._too_many(f"more than {self.limit:,} users matched")
        self.users.extend(users)


class _OpenFile:
    """One file being written: its sink (unpublished until :meth:`publish`) and its format writer."""

    def __init__(self, path: ObjectStoragePath, fmt: ExportFormat) -> None:
        self.path = path
        self._stack = contextlib.ExitStack()
        self._sink: Sink = self._stack.enter_context(open_sink(path, fmt.compression))
        self._writer: FormatWriter = fmt.open(self._sink.stream)
        self.users = 0

    def write(self, users: Sequence[Any]) -> None:
        """Hand users to the format writer."""
        self._writer.write(users)
        self.users += len(users)

    def publish(self) -> tuple[int, str]:
        """Finish the document and publish the file; returns its size and SHA-256."""
        self._writer.close()
        self._stack.close()
        return self._sink.nbytes, self._sink.sha256

    def discard(self, error: BaseException) -> None:
        """Drop what was written (the upload or the temporary); nothing appears at :attr:`path`."""
        with contextlib.suppress(Exception):
            self._writer.close()
        self._stack.__exit__(type(error), error, error.__traceback__)


class FileOutput:
    """All users in one file at ``path``, published when the export finishes."""

    def __init__(self, path: ObjectStoragePath, fmt: ExportFormat) -> None:
        self.path = path
        self.fmt = fmt
        self._file: _OpenFile | None = None
        self.nbytes = 0
        self.sha256 = ""

    def room(self) -> int | None:
        """Unlimited."""
        return None

    def write(self, users: Sequence[Any]) -> None:
        """Append users (the file is opened on the first write, once csv columns are known)."""
        if self._file is None:
            self._file = _OpenFile(self.path, self.fmt)
        self._file.write(users)

    def finish(self) -> None:
        """Publish the file (an empty but valid document when no user was written)."""
        if self._file is None:
            self._file = _OpenFile(self.path, self.fmt)
        self.nbytes, self.sha256 = self._file.publish()

    def abort(self, error: BaseException) -> None:
        """Leave nothing at :attr:`path`."""
        if self._file is not None:
            self._file.discard(error)


class PartedOutput:
    """Part files of ``split_every`` users under ``directory``, then ``_manifest.json`` last."""

    def __init__(
        self,
        directory: ObjectStoragePath,
        fmt: ExportFormat,
        split_every: int,
        finished: Sequence[PartInfo] = (),
    ) -> None:
        self.directory = directory
        self.fmt = fmt
        self.split_every = split_every
        self.parts: list[PartInfo] = list(finished)
        self.resumed_parts = len(self.parts)
        self._file: _OpenFile | None = None

    @property
    def manifest_path(self) -> ObjectStoragePath:
        """Where the manifest goes."""
        return self.directory / MANIFEST_NAME

    def part_name(self, index: int) -> str:
        """``part-00000.jsonl`` (``.gz`` appended for gzip)."""
        return f"part-{index:05d}.{self.fmt.extension}"

    def part_path(self, index: int) -> ObjectStoragePath:
        """Full path of part ``index``."""
        return self.directory / self.part_name(index)

    @staticmethod
    def owns(fmt: ExportFormat) -> Callable[[str], bool]:
        """Whether a name in the folder is one this export writes: a part file of ``fmt`` or the manifest."""
        part = re.compile(r"part-\d{5,}\." + re.escape(fmt.extension))
        return lambda name: name == MANIFEST_NAME or part.fullmatch(name) is not None

    def clear_previous(self) -> None:
        """A fresh export first removes the old manifest (it must not vouch for parts about to change),
        then the old part files, so a failure can never leave a mix of two exports behind."""
        remove_quietly(self.manifest_path)
        owns = self.owns(self.fmt)
        fs = self.directory.fs
        for found in fs.glob(f"{self.directory.path.rstrip('/')}/part-*"):
            if owns(found.rsplit("/", 1)[-1]):
                fs.rm(found)

    def room(self) -> int:
        """Users the current part may still take."""
        return self.split_every - (self._file.users if self._file is not None else 0)

    def write(self, users: Sequence[Any]) -> None:
        """Append users to the current part (opened on demand)."""
        if not users:
            return
        if self._file is None:
            self._file = _OpenFile(self.part_path(len(self.parts)), self.fmt)
        self._file.write(users)

    def close_part(self) -> PartInfo | None:
        """Publish the current part, if any; returns what the manifest will say about it."""
        if self._file is None:
            return None
        open_file, self._file = self._file, None
        nbytes, sha256 = open_file.publish()
        index = len(self.parts)
        part = PartInfo(index, self.part_name(index), open_file.users, nbytes, sha256)
        self.parts.append(part)
        return part

    def finish(self, summary: dict[str, Any], options: dict[str, Any]) -> None:
        """Publish the last part, then the manifest."""
        self.close_part()
        write_json(self.manifest_path, build_manifest(self.parts, summary, options, self.fmt.attribute_keys))

    def abort(self, error: BaseException, keep_finished: bool) -> None:
        """Discard the unfinished part; keep the finished ones only when a retry will resume from them."""
        if self._file is not None:
            self._file.discard(error)
            self._file = None
        if not keep_finished:
            for part in self.parts:
                remove_quietly(self.directory / part.name)
