"""The failures file of a bulk write: every record not applied, as JSONL that can be fed back as a source.

Published atomically, and only when the run completes (even empty), so a retry reads a whole file.
What a killed run left of its file (an incomplete S3 upload, a stale local temporary) goes first.
"""

from __future__ import annotations

import contextlib
import gzip
import logging
from collections.abc import Callable, Iterator
from typing import IO, TYPE_CHECKING, cast

from airflow_provider_kumulos._storage import atomic_write, resolve_path, sweep_leftovers
from airflow_provider_kumulos.exceptions import KumulosInputError

if TYPE_CHECKING:
    from airflow.sdk import ObjectStoragePath

    from airflow_provider_kumulos._bulk.records import Failure

log = logging.getLogger(__name__)

#: Suffixes a failures file may have, so that it can be read back as a JSONL ``source_path``.
FAILURES_SUFFIXES = (".jsonl", ".ndjson", ".jsonl.gz", ".ndjson.gz")


def check_failures_path(value: object) -> ObjectStoragePath | None:
    """Resolve ``failures_path`` (None = no file); it must be JSONL so it can be fed back as a source."""
    if value is None:
        return None
    path = resolve_path(cast("str", value), "failures_path")
    if not path.name.lower().endswith(FAILURES_SUFFIXES):
        raise KumulosInputError(
            "failures_path",
            f"{path.name!r} does not end in .jsonl or .jsonl.gz",
            "Name it like failed.jsonl so that it can be passed back as source_path.",
        )
    return path


@contextlib.contextmanager
def failures_file(
    path: ObjectStoragePath | None, with_attributes: bool
) -> Iterator[Callable[[Failure], object]]:
    """Yield a writer for failed records; the file is published (even empty) only if the block completes."""
    if path is None:
        yield lambda failure: None
        return
    removed = sweep_leftovers(path.parent, path.name.__eq__)
    if removed:
        log.info(
            "Removed %d unfinished upload(s) or temporary file(s) of %s left by a killed run.", removed, path
        )
    with atomic_write(path, "wb") as raw:
        gzipped = path.name.lower().endswith(".gz")
        compressor = gzip.GzipFile(fileobj=raw, mode="wb") if gzipped else contextlib.nullcontext(raw)
        with compressor as stream:
            sink = cast("IO[bytes]", stream)
            yield lambda failure: sink.write(failure.line(with_attributes))
