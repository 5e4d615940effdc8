"""Where files live: any Airflow object-storage URL or a local path, and writes that publish atomically.

Exports and bulk writes read and write through :class:`~airflow.sdk.ObjectStoragePath`, so the same
code serves ``file://``, ``s3://conn_id@bucket/key``, ``gs://`` and any other fsspec backend.
:func:`atomic_write` guarantees an object appears at its final path only once its writer finished:
on S3 the file is opened with fsspec's ``autocommit=False`` (the multipart upload completes only on
``commit()``); elsewhere the data goes to a uniquely named temporary sibling, moved into place on
success. :func:`sweep_leftovers` clears what a killed writer left of either.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import io
import logging
import os
import re
import time
import uuid
from collections.abc import Callable, Iterator
from typing import IO, TYPE_CHECKING, Any

from airflow_provider_kumulos import _compat
from airflow_provider_kumulos.exceptions import KumulosInputError

if TYPE_CHECKING:
    from airflow.sdk import ObjectStoragePath
    from fsspec import AbstractFileSystem

log = logging.getLogger(__name__)

#: Prefix of temporary objects; the leading dot keeps them out of most readers' globs.
TEMP_PREFIX = ".kumulos-tmp-"
#: Age after which a local temporary is a killed writer's leftover: a live writer touches its file
#: with every page, and no wait of the hook (Retry-After is capped at two minutes) comes close.
STALE_TEMPORARY_SECONDS = 3600.0
#: A temporary's name: the prefix, a unique hex token, a dash, then the final name it stands for.
_TEMPORARY_NAME = re.compile(re.escape(TEMP_PREFIX) + r"[0-9a-f]+-(.+)")
#: Filesystems whose files opened with ``autocommit=False`` publish nothing until ``commit()`` and
#: leave nothing after ``discard()``: s3fs completes its multipart upload on commit and aborts it on
#: discard. Not every backend honours the flag (adlfs commits its blocks on close whatever it says),
#: so the others keep the temporary sibling, and only backends tested to defer are listed here.
DEFERRED_COMMIT_PROTOCOLS = frozenset({"s3", "s3a"})


def resolve_path(
    value: str | os.PathLike[str] | ObjectStoragePath, parameter: str = "path"
) -> ObjectStoragePath:
    """Turn an object-storage URL (``s3://conn_id@bucket/key``, ``file://``...) or a local path into a path.

    Local paths become absolute ``file://`` paths so that they mean the same thing in every worker
    process. Nothing is read or written here; an unknown scheme fails with a clear input error.
    """
    from airflow.sdk import ObjectStoragePath

    if isinstance(value, ObjectStoragePath):
        return value
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    if not isinstance(value, str) or not value.strip():
        raise KumulosInputError(
            parameter,
            f"expected a non-empty path or URL, got {value!r}",
            "Pass a local path such as /data/users.jsonl or a URL such as s3://aws_default@bucket/users.jsonl.",
        )
    text = value.strip()
    if "://" not in text:
        text = "file://" + os.path.abspath(os.path.expanduser(text))
    try:
        path = ObjectStoragePath(text)
        # Airflow 3.1 resolves the filesystem lazily: meet an unknown scheme here, before any request.
        path.fs  # noqa: B018
    except ValueError as exc:
        raise KumulosInputError(
            parameter,
            f"{text!r} cannot be opened ({exc})",
            "Use a scheme Airflow's ObjectStoragePath supports (file, s3, gs, abfs...) and install its provider.",
        ) from None
    return path


def shown_path(path: ObjectStoragePath, given: object) -> str:
    """``path`` in the form ``given`` had: a plain local path (ready for ``open``) or a URL."""
    return path.path if is_local(path) and "://" not in str(given) else str(path)


def temp_sibling(path: ObjectStoragePath) -> ObjectStoragePath:
    """A temporary path next to ``path``, unique per call so concurrent writers never collide."""
    return path.parent / f"{TEMP_PREFIX}{uuid.uuid4().hex}-{path.name}"


def is_local(path: ObjectStoragePath) -> bool:
    """Whether ``path`` is on the local filesystem (not an object store)."""
    from fsspec.implementations.local import LocalFileSystem

    return isinstance(path.fs, LocalFileSystem)


def defers_commit(fs: AbstractFileSystem) -> bool:
    """Whether files of ``fs`` opened with ``autocommit=False`` stay unpublished until ``commit()``."""
    protocols = (fs.protocol,) if isinstance(fs.protocol, str) else fs.protocol
    return not DEFERRED_COMMIT_PROTOCOLS.isdisjoint(protocols)


def sweep_leftovers(folder: ObjectStoragePath, owns: Callable[[str], bool]) -> int:
    """Clear what killed writers of the files named ``owns`` in ``folder`` left behind; returns how many.

    Local disks: temporaries standing for such a name, once untouched for
    :data:`STALE_TEMPORARY_SECONDS` (a live writer touches its file with every page). S3: every
    incomplete multipart upload at such a name, whatever its age (see :func:`abort_unfinished_uploads`).
    Uploads and objects under any other name, or in a subfolder, are never touched.
    """
    if defers_commit(folder.fs):
        return abort_unfinished_uploads(folder, owns)
    if not is_local(folder) or not folder.fs.isdir(folder.path):
        return 0
    cutoff = time.time() - STALE_TEMPORARY_SECONDS
    removed = 0
    for entry in folder.fs.ls(folder.path, detail=True):
        name = os.path.basename(entry["name"])
        temporary = _TEMPORARY_NAME.fullmatch(name)
        if temporary and owns(temporary.group(1)) and entry.get("mtime", cutoff) < cutoff:
            remove_quietly(folder / name)
            removed += 1
    return removed


def abort_unfinished_uploads(folder: ObjectStoragePath, owns: Callable[[str], bool]) -> int:
    """Abort the incomplete S3 multipart uploads at ``folder/<name>`` for names ``owns`` accepts.

    Such an upload is what a writer killed outright leaves of :func:`atomic_write` (billed storage,
    never an object). All of them go, however recent: a file is written by one task try at a time
    (Airflow runs one try of a task instance at a time), so an upload found when a try starts was
    left by an earlier one. The listing is narrowed to the folder's key prefix; uploads at any
    other key (another export's, another application's) are left alone.
    """
    fs = folder.fs
    bucket = _compat.bucket(folder)
    prefix = folder.key.rstrip("/") + "/" if folder.key.strip("/") else ""
    aborted = 0
    markers: dict[str, str] = {}
    while True:
        page = fs.call_s3("list_multipart_uploads", Bucket=bucket, Prefix=prefix, **markers)
        for upload in page.get("Uploads", []):
            name = upload["Key"][len(prefix) :]
            if "/" not in name and owns(name):
                with contextlib.suppress(FileNotFoundError):  # aborted meanwhile
                    fs.abort_mpu(bucket, upload["Key"], upload["UploadId"])
                aborted += 1
        if not page.get("IsTruncated"):
            return aborted
        markers = {"KeyMarker": page["NextKeyMarker"], "UploadIdMarker": page["NextUploadIdMarker"]}


def make_folders(folder: ObjectStoragePath) -> list[str]:
    """Create the local ``folder`` and its missing parents; return those it created, outermost first.

    Object stores have no folders to create: nothing is done there and the list is empty.
    """
    if not is_local(folder):
        return []
    missing: list[str] = []
    current = folder.path
    while not os.path.exists(current):
        missing.append(current)
        parent = os.path.dirname(current)
        if parent == current:
            break
        current = parent
    folder.fs.makedirs(folder.path, exist_ok=True)
    return missing[::-1]


def remove_created_folders(folders: list[str]) -> None:
    """Remove the folders :func:`make_folders` created, innermost first, while they are empty.

    A failed write leaves no empty folder it made behind; a folder that existed before, or that
    holds anything (another writer's file), is never removed.
    """
    for folder in reversed(folders):
        try:
            os.rmdir(folder)
        except FileNotFoundError:
            continue
        except OSError:
            return


def check_writable(
    path: ObjectStoragePath, parameter: str = "output_path", given: ObjectStoragePath | None = None
) -> list[str]:
    """Fail before any work when nothing can be written at ``path``; nothing is left behind.

    Object stores: the bucket (container) must exist, one request (``head_bucket`` on S3); a
    missing bucket is the common mistake and otherwise surfaces only when the file is uploaded,
    at the very end. Local disks: the folder is created if needed and a temporary file is created
    in it and removed at once, which also catches a read-only folder. Returns the folders it
    created, for :func:`remove_created_folders` should the write fail later. Errors name ``given``
    (default ``path``): the path as the user chose it, a folder of part files, say.
    """
    fix = "Create the bucket or folder, or fix the path, and check the connection may write there."
    if is_local(path):
        return _check_local_writable(path, parameter, given or path)
    try:
        bucket = _compat.bucket(path)
        if bucket and not path.fs.exists(bucket):
            raise KumulosInputError(
                parameter,
                f"{path} cannot be written: the bucket {bucket!r} does not exist "
                "(or this connection may not see it)",
                fix,
            )
    except OSError as exc:
        raise KumulosInputError(
            parameter, f"{path} cannot be written ({type(exc).__name__}: {exc})", fix
        ) from None
    return []


def _check_local_writable(path: ObjectStoragePath, parameter: str, given: ObjectStoragePath) -> list[str]:
    """:func:`check_writable` on a local disk: the error names the user's path and its folder."""
    created: list[str] = []
    try:
        created = make_folders(path.parent)
        probe = temp_sibling(path)
        path.fs.touch(probe.path)
        path.fs.rm(probe.path)
    except OSError as exc:
        remove_created_folders(created)
        problem, fix = unwritable_folder(path, exc)
        raise KumulosInputError(parameter, f"{given.path} cannot be written: {problem}", fix) from None
    return created


def unwritable_folder(path: ObjectStoragePath, error: OSError) -> tuple[str, str]:
    """Why nothing can be written at the local ``path``, and the fix, naming its folder (never a
    temporary file the user did not choose)."""
    folder = path.parent.path
    existing = folder
    while not os.path.exists(existing) and os.path.dirname(existing) != existing:
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        return f"{existing} is a file, not a folder", "Fix the path."
    # "No such file or directory" about a folder that exists names the temporary file; say nothing.
    reason = "" if error.errno == errno.ENOENT else f" ({error.strerror or type(error).__name__})"
    problem = f"the folder {existing} is not writable{reason}"
    if existing != folder:
        problem = f"the folder {folder} cannot be created: {problem}"
    return problem, "Write to a folder this task's user may write to, or give it write access to this one."


def discard_quietly(discard: Callable[[], object], what: str, error: BaseException) -> None:
    """Call ``discard`` (dropping ``what``) after ``error``; a failure to do so is logged, never raised over ``error``."""
    try:
        discard()
    except FileNotFoundError:  # already gone: nothing is left
        pass
    except Exception as cleanup:
        log.warning(
            "Could not remove %s after %s (%s: %s); it may need deleting by hand.",
            what,
            type(error).__name__,
            type(cleanup).__name__,
            cleanup,
        )


def remove_quietly(path: ObjectStoragePath) -> None:
    """Delete ``path`` if it exists; a missing object is not an error."""
    with contextlib.suppress(FileNotFoundError):
        path.fs.rm(path.path)


@contextlib.contextmanager
def atomic_write(
    path: str | os.PathLike[str] | ObjectStoragePath,
    mode: str = "wb",
    *,
    encoding: str = "utf-8",
    newline: str | None = None,
) -> Iterator[IO[Any]]:
    """Open ``path`` for writing; the object is published there only if the block completes.

    On S3 the file is opened at ``path`` with ``autocommit=False``: its multipart upload is completed
    after a clean exit and aborted on any exception, including task termination, with no copy of
    the data. Elsewhere the data goes to a temporary sibling, moved onto ``path`` after a clean exit
    (an atomic rename on local disks) and deleted on any exception, with the local folders this call
    created for it. ``mode`` is ``"wb"`` or ``"w"`` (text, with ``encoding`` and ``newline``). A
    process killed outright leaves at most an incomplete upload or the temporary (see
    :func:`sweep_leftovers`), never a partial object at ``path``.
    """
    if mode not in ("wb", "w"):
        raise KumulosInputError("mode", f"{mode!r} is not supported", 'Use "wb" (bytes) or "w" (text).')
    target = resolve_path(path)
    fs = target.fs
    deferred = defers_commit(fs)
    temp = None if deferred else temp_sibling(target)
    created = make_folders(target.parent)
    try:
        raw = fs.open(target.path, "wb", autocommit=False) if temp is None else fs.open(temp.path, "wb")
    except OSError as error:
        remove_created_folders(created)
        if not is_local(target):
            raise
        problem, fix = unwritable_folder(target, error)
        raise type(error)(error.errno, f"{target.path} cannot be written: {problem}. {fix}") from None
    publish: Callable[[], object]
    discard: Callable[[], object]
    if temp is None:
        publish, discard, pending = raw.commit, raw.discard, f"the unfinished upload to {target}"
    else:
        publish = functools.partial(fs.mv, temp.path, target.path)
        discard, pending = functools.partial(remove_quietly, temp), f"the temporary {temp}"
    stream: IO[Any] = (
        io.TextIOWrapper(raw, encoding=encoding, newline=newline, write_through=True) if mode == "w" else raw
    )
    try:
        yield stream
        stream.close()
        publish()
    except BaseException as error:
        with contextlib.suppress(Exception):  # fsspec's order: close, then discard
            stream.close()
        discard_quietly(discard, pending, error)
        remove_created_folders(created)
        raise
    finally:
        if deferred:
            # fsspec also queues the file for a filesystem-wide transaction, never run here, on a
            # filesystem cached per process: drop it, or the queue keeps every file ever published.
            with contextlib.suppress(ValueError):
                fs.transaction.files.remove(raw)
