"""The export loop: pages from the hook -> filter and dedupe -> projection -> format writer -> output.

One page is held at a time, so memory does not grow with the number of users (apart from the
dedupe table, 12-23 bytes per user). Parts close exactly every ``split_every`` users, each
followed by a checkpoint when a state store is available. After the last page the counts are
compared with ``totalUsers``; a mismatch is logged or, with ``on_count_mismatch="fail"``, raised
before anything is published.

Also here, each serving the loop: the running counts, page batches (identifiers and the filter's
timestamps beside the users), the ``updated_since`` filter, the projection to the kept keys, the
dedupe table, the selection of the users written, and the checkpoints a resumed export continues from.
"""

from __future__ import annotations

import bisect
import contextlib
import functools
import time
from array import array
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime
from typing import TYPE_CHECKING, Any

from airflow_provider_kumulos import _metrics
from airflow_provider_kumulos._export.formats import ExportFormat, read_identifiers
from airflow_provider_kumulos._export.manifest import MANIFEST_NAME, PartInfo
from airflow_provider_kumulos._export.options import ExportOptions, parse_timestamp
from airflow_provider_kumulos._export.sinks import FileOutput, PartedOutput, XComOutput, stored_digest
from airflow_provider_kumulos._progress import ProgressLogger
from airflow_provider_kumulos._storage import check_writable, shown_path, sweep_leftovers
from airflow_provider_kumulos.exceptions import KumulosCountMismatchError

if TYPE_CHECKING:
    import logging

    from airflow.sdk import ObjectStoragePath

    from airflow_provider_kumulos._policy import UsersPage
    from airflow_provider_kumulos.hooks.kumulos import KumulosCRMHook


# --- Counts -------------------------------------------------------------------------------------------------
#
# What an export saw and wrote, and whether that agrees with the server's ``totalUsers``.
#
# Offset pagination over a changing user set can skip or repeat users; comparing the unique users
# scanned with ``totalUsers`` at the start and the end is how a drifted export is noticed.


@dataclass
class ExportCounts:
    """Running totals of one export (restored from resume state when a retry continues)."""

    pages_fetched: int = 0
    users_scanned: int = 0
    users_written: int = 0
    duplicates_dropped: int = 0
    users_filtered_out: int = 0
    total_users_start: int | None = None
    total_users_end: int | None = None

    def saw_page(self, total_users: int) -> None:
        """One more page fetched; ``total_users`` is its ``totalUsers``."""
        self.pages_fetched += 1
        if self.total_users_start is None:
            self.total_users_start = total_users
        self.total_users_end = total_users

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe copy (resume state, summaries)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ExportCounts:
        """Counts saved by :meth:`to_dict`; unknown keys are ignored."""
        names = {field.name for field in fields(cls)}
        return cls(**{key: value for key, value in data.items() if key in names})

    def expected_users(self, start_page: int, end_page: int | None, page_size: int) -> int:
        """Users the page window should hold according to the last ``totalUsers``."""
        total = self.total_users_end or 0
        upper = total if end_page is None else min(total, end_page * page_size)
        return max(0, upper - (start_page - 1) * page_size)

    def mismatch(self, start_page: int, end_page: int | None, page_size: int) -> str | None:
        """Why the counts disagree with ``totalUsers``, or None when they agree."""
        unique = self.users_scanned - self.duplicates_dropped
        expected = self.expected_users(start_page, end_page, page_size)
        problems = []
        if self.total_users_start != self.total_users_end:
            problems.append(f"totalUsers changed from {self.total_users_start} to {self.total_users_end}")
        if unique != expected:
            problems.append(f"{unique} unique users were scanned where totalUsers implies {expected}")
        if self.duplicates_dropped:
            problems.append(f"{self.duplicates_dropped} repeated users were dropped")
        return "; ".join(problems) or None


# --- Page batches -------------------------------------------------------------------------------------------
#
# A fetched page as the export sees it: identifiers (and the filter's timestamps) beside the users.
#
# Pass-through exports keep each user as the exact bytes Kumulos sent (``msgspec.Raw``, one line
# each); the hook has already read their identifiers. Only the ``updated_since`` filter needs more:
# the timestamps, decoded with a small struct in one decoder call per page. Other exports get dicts.


@dataclass(frozen=True)
class PageBatch:
    """One page: ``users`` (Raw or dict), their ``identifiers`` and, when filtering, ``stamps``."""

    page: int
    users: Sequence[Any]
    identifiers: list[str]
    stamps: list[str | None] | None

    def __len__(self) -> int:
        return len(self.users)

    def pick(self, positions: Sequence[int], projection: Projection | None) -> list[Any]:
        """The users at ``positions``, projected when asked."""
        users = self.users
        if projection is None:
            if len(positions) == len(users):  # every user of the page kept
                return list(users)
            return [users[i] for i in positions]
        return [projection.apply(users[i]) for i in positions]


@functools.cache
def _stamp_decoder(field: str) -> Any:
    """Decoder of ``[user, ...]`` keeping only the timestamp ``field`` the filter reads."""
    import msgspec

    return msgspec.json.Decoder(list[msgspec.defstruct("UserStamp", [(field, Any, None)])])  # type: ignore[misc]


def _stamps(values: Iterable[Any]) -> list[str | None]:
    """Timestamps as the filter takes them: a value that is not a string counts as missing."""
    return [value if isinstance(value, str) else None for value in values]


def batch_from_raw(page: UsersPage, stamp_field: str | None) -> PageBatch:
    """Batch of ``msgspec.Raw`` users, decoding the timestamps only when filtering on them."""
    users = page.users
    if stamp_field is None or not users:
        return PageBatch(page.page, users, page.identifiers, None if stamp_field is None else [])
    decoded = _stamp_decoder(stamp_field).decode(b"[" + b",".join(users) + b"]")
    return PageBatch(
        page.page, users, page.identifiers, _stamps(getattr(user, stamp_field) for user in decoded)
    )


def batch_from_dicts(page: UsersPage, stamp_field: str | None) -> PageBatch:
    """Batch of decoded users."""
    stamps = None if stamp_field is None else _stamps(user.get(stamp_field) for user in page.users)
    return PageBatch(page.page, page.users, page.identifiers, stamps)


# --- The updated_since filter -------------------------------------------------------------------------------
#
# Keep users changed at or after ``updated_since``: Kumulos has no server-side filter, so it runs here.
#
# Timestamps are compared as instants (offsets honoured). A user whose field is null or not an
# ISO-8601 time cannot be placed after the cut-off, so it is left out and counted as filtered.


class UpdatedSinceFilter:
    """``keep(value)`` is True when the timestamp string ``value`` is at or after ``since``."""

    def __init__(self, since: datetime, field: str) -> None:
        self.since = since
        self.field = field

    def keep(self, value: str | None) -> bool:
        """Whether a user whose ``field`` holds ``value`` belongs in the export."""
        if not value:
            return False
        try:
            return parse_timestamp(value) >= self.since
        except ValueError:
            return False


# --- Projection ---------------------------------------------------------------------------------------------
#
# Keep only the user keys asked for (``fields``, ``include_installs``); ``identifier`` always stays.


class Projection:
    """Copy of a user dict restricted to ``keys`` (in the order the API sent them)."""

    def __init__(self, keys: tuple[str, ...]) -> None:
        self.keys = frozenset(keys)

    def apply(self, user: dict[str, Any]) -> dict[str, Any]:
        """The projected user."""
        keys = self.keys
        return {key: value for key, value in user.items() if key in keys}


# --- Dedupe -------------------------------------------------------------------------------------------------
#
# Drop users seen earlier in the export: offset pagination repeats users when the set shifts.
#
# Kumulos pages by offset, so a user inserted before the current page pushes a user already written
# onto the next page. Remembering every identifier would cost ~100 bytes per user in a Python set;
# instead each identifier becomes a 64-bit hash (Python's keyed SipHash of the string) stored in an
# open-addressing table backed by one ``array('Q')``: 8 bytes per slot, at most 70% full, so
# 11.5-23 bytes per unique user. The table is sized from ``totalUsers`` up front, so it only doubles
# (briefly holding old and new) if the user set grows during the export. Two different
# identifiers share a hash with probability about n²/2⁶⁵ (under 1 in 300,000 for ten million
# users); the second would be dropped as a duplicate. Hashes are compared within one process only.

_INITIAL_SLOTS = 1 << 12
_MAX_LOAD = 0.7
_MASK64 = (1 << 64) - 1


class SeenIdentifiers:
    """A compact set of identifiers: adding answers which ones are new.

    Kept over a plain ``set`` of the same hashes for memory: ``bench/export_machinery.py`` measured
    16.8 against 79.6 bytes per user (4.7x less; 2,000,000 identifiers, median of 3 runs), and no
    slower to fill (3.1 s against 3.7 s). At 500,000 users a set would add about 36 MB to a ~150 MB
    export, past the 1.10 memory goal of ``bench/export_memory.py``.
    """

    def __init__(self) -> None:
        self._table = array("Q", bytes(8 * _INITIAL_SLOTS))
        self._count = 0

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


# --- Selection ----------------------------------------------------------------------------------------------
#
# Decide which users of a page are written: the ``updated_since`` filter first, then dedupe.
#
# Selection stops after ``limit`` kept users so that a part file can close exactly at ``split_every``
# users; it reports where it stopped, so the rest of the page goes to the next part (and a resumed
# export knows where inside the page to continue).


@dataclass
class Selection:
    """Positions kept from ``start`` up to ``stop`` (exclusive) and why the others were not."""

    stop: int
    positions: list[int] = field(default_factory=list)
    duplicates: int = 0
    filtered: int = 0

    def count_into(self, counts: ExportCounts, start: int) -> None:
        """Add this selection to the running totals."""
        counts.users_scanned += self.stop - start
        counts.users_written += len(self.positions)
        counts.duplicates_dropped += self.duplicates
        counts.users_filtered_out += self.filtered


class Selector:
    """Applies the filter (if any) and the dedupe set to a page, in order."""

    def __init__(self, seen: SeenIdentifiers, updated_since: UpdatedSinceFilter | None) -> None:
        self.seen = seen
        self.updated_since = updated_since
        self._batch: PageBatch | None = None
        self._candidates: Sequence[int] = ()

    def _passing(self, batch: PageBatch) -> Sequence[int]:
        """Positions of the page that pass the filter, computed once per page."""
        if batch is not self._batch:
            self._batch, stamps = batch, batch.stamps
            self._candidates = range(len(batch))
            if self.updated_since is not None and stamps is not None:
                keep = self.updated_since.keep
                self._candidates = [index for index in self._candidates if keep(stamps[index])]
        return self._candidates

    def select(self, batch: PageBatch, start: int, limit: int | None) -> Selection:
        """Walk users from ``start`` until the page ends or ``limit`` users were kept."""
        candidates = self._passing(batch)
        first = bisect.bisect_left(candidates, start)
        positions, duplicates, consumed = self.seen.add_many(batch.identifiers, candidates[first:], limit)
        after = first + consumed
        stop = candidates[after] if after < len(candidates) else len(batch)
        return Selection(stop, positions, duplicates, filtered=(stop - start) - consumed)


# --- Resume -------------------------------------------------------------------------------------------------
#
# Resume a partitioned export after a crash, from Airflow's task state store (Airflow >= 3.3).
#
# After each published part the export saves a checkpoint: the parts so far (name, users, size,
# SHA-256), the page and position inside it where the next part starts, the running counts, the csv
# columns, and a fingerprint of the options. A retry with the same options verifies those parts
# (size and SHA-256 of the stored bytes) and replays their identifiers into the dedupe set, which
# is rebuilt exactly rather than stored, then continues at the saved page: at most the part that
# was in progress is fetched twice. Anything that does not match starts the export over. The
# checkpoint is removed once the export succeeds, so a later rerun of the task starts fresh.

STATE_KEY = "kumulos_export_checkpoint"


@dataclass
class Checkpoint:
    """Where a partitioned export stands after its last published part."""

    fingerprint: str
    parts: list[PartInfo]
    next_page: int
    skip: int
    counts: ExportCounts
    attribute_keys: list[str] | None

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form for the state store."""
        return {
            "fingerprint": self.fingerprint,
            "parts": [part.to_dict() for part in self.parts],
            "next_page": self.next_page,
            "skip": self.skip,
            "counts": self.counts.to_dict(),
            "attribute_keys": self.attribute_keys,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Checkpoint:
        """Inverse of :meth:`to_dict`."""
        return cls(
            fingerprint=str(data["fingerprint"]),
            parts=[PartInfo.from_dict(part) for part in data["parts"]],
            next_page=int(data["next_page"]),
            skip=int(data["skip"]),
            counts=ExportCounts.from_dict(data["counts"]),
            attribute_keys=data.get("attribute_keys"),
        )


class ResumeState:
    """Load, save and clear this task's checkpoint; does nothing without a state store."""

    def __init__(self, store: Any | None, fingerprint: str) -> None:
        self.store = store
        self.fingerprint = fingerprint

    @property
    def enabled(self) -> bool:
        """Whether checkpoints are kept (a state store exists)."""
        return self.store is not None

    def load(self) -> Checkpoint | None:
        """The saved checkpoint of an identical export, if any."""
        if self.store is None:
            return None
        data = self.store.get(STATE_KEY)
        if not isinstance(data, dict) or data.get("fingerprint") != self.fingerprint:
            return None
        try:
            return Checkpoint.from_dict(data)
        except (KeyError, TypeError, ValueError):
            return None

    def save(self, checkpoint: Checkpoint) -> None:
        """Record a checkpoint (after a part was published)."""
        if self.store is not None:
            self.store.set(STATE_KEY, checkpoint.to_dict())

    def clear(self) -> None:
        """Forget the checkpoint (export finished, or its parts were discarded)."""
        if self.store is not None:
            self.store.delete(STATE_KEY)


def replay_parts(
    parts: list[PartInfo], directory: Any, fmt: ExportFormat, seen: SeenIdentifiers
) -> str | None:
    """Verify stored parts and add their identifiers to ``seen``; returns why they cannot be used, or None."""
    for part in parts:
        path = directory / part.name
        try:
            nbytes, sha256 = stored_digest(path)
        except FileNotFoundError:
            return f"{part.name} is missing"
        if (nbytes, sha256) != (part.bytes, part.sha256):
            return f"{part.name} changed since it was written"
        for identifier in read_identifiers(path, fmt.name, fmt.compression):
            seen.add(identifier)
    return None


# --- The loop -----------------------------------------------------------------------------------------------

Output = XComOutput | FileOutput | PartedOutput


class ExportRun:
    """One attempt at an export; :meth:`run` returns the users (XCom) or the summary dict."""

    def __init__(
        self,
        hook: KumulosCRMHook,
        options: ExportOptions,
        log: logging.Logger | Any,
        state_store: Any | None = None,
        progress_interval: float = 10.0,
    ) -> None:
        self.hook = hook
        self.options = options
        self.log = log
        self.started = time.monotonic()
        self.counts = ExportCounts()
        self.seen = SeenIdentifiers()
        self.resume = ResumeState(state_store if options.split_every else None, options.fingerprint())
        self.start_page, self.skip = options.start_page, 0
        self.fmt = ExportFormat(options)
        self.output: Output = self._prepare_output()
        filtering = options.updated_since is not None
        self.selector = Selector(
            self.seen,
            UpdatedSinceFilter(options.updated_since, options.updated_since_field)  # type: ignore[arg-type]
            if filtering
            else None,
        )
        self.stamp_field = options.updated_since_field if filtering else None
        self.projection = Projection(options.kept_fields()) if options.projecting else None
        self.mismatch: str | None = None
        self.progress = ProgressLogger(
            "Kumulos export",
            logger=log,
            interval=progress_interval,
            request_stats=hook.stats,
            resumed=self.counts.users_scanned,
        )

    # --- set-up ---------------------------------------------------------------------------

    def _prepare_output(self) -> Output:
        options = self.options
        if options.output_path is None:
            return XComOutput(options.max_xcom_users)
        if options.split_every is None:
            check_writable(options.output_path)
            self._sweep_leftovers(options.output_path)
            return FileOutput(options.output_path, self.fmt)
        check_writable(options.output_path / MANIFEST_NAME)
        self._sweep_leftovers(options.output_path)
        checkpoint = self.resume.load()
        if checkpoint is not None:
            resumed = self._resume_from(checkpoint)
            if resumed is not None:
                return resumed
        self.resume.clear()
        output = PartedOutput(options.output_path, self.fmt, options.split_every)
        output.clear_previous()
        return output

    def _sweep_leftovers(self, path: ObjectStoragePath) -> None:
        """Clear what an earlier, killed run of this export left at its own names: stale temporaries
        next to its output (local disks), incomplete multipart uploads (S3)."""
        owns: Callable[[str], bool]
        if self.options.split_every is None:
            folder, owns = path.parent, path.name.__eq__
        else:
            folder, owns = path, PartedOutput.owns(self.fmt)
        removed = sweep_leftovers(folder, owns)
        if removed:
            self.log.info(
                "Removed %d temporary file(s) or unfinished upload(s) left in %s by an earlier export "
                "that was killed.",
                removed,
                folder,
            )

    def _resume_from(self, checkpoint: Checkpoint) -> PartedOutput | None:
        assert self.options.output_path is not None and self.options.split_every is not None
        fmt = ExportFormat(self.options, checkpoint.attribute_keys)
        problem = replay_parts(checkpoint.parts, self.options.output_path, fmt, self.seen)
        if problem is not None:
            self.log.warning("Cannot resume the export (%s); starting over from the first page.", problem)
            self.seen = SeenIdentifiers()
            return None
        self.fmt, self.counts = fmt, checkpoint.counts
        self.start_page, self.skip = checkpoint.next_page, checkpoint.skip
        self.log.info(
            "Resuming the export after %d finished parts (%d users) at page %d.",
            len(checkpoint.parts),
            self.counts.users_written,
            self.start_page,
        )
        return PartedOutput(self.options.output_path, fmt, self.options.split_every, checkpoint.parts)

    # --- the loop -------------------------------------------------------------------------

    def run(self) -> Any:
        """Export every page; publish on success, leave nothing at the final path on failure."""
        try:
            with self.progress.ticking():
                self._export_pages()
            self._check_counts()
            result = self._publish()
        except BaseException as error:
            try:
                self._abort(error)
            except Exception as cleanup:  # the export's own error is the one to raise
                self.log.warning(
                    "Cleaning up after the failed export failed too (%s: %s).",
                    type(cleanup).__name__,
                    cleanup,
                )
            raise
        self.resume.clear()
        self._report()
        return result

    def _export_pages(self) -> None:
        options = self.options
        raw = not self.fmt.needs_dicts and self.projection is None and not isinstance(self.output, XComOutput)
        # XCom exports are small by definition and must stop at the first page: no requests ahead.
        ahead = 0 if isinstance(self.output, XComOutput) else options.max_concurrency
        pages = self.hook.iter_pages(
            options.page_size, self.start_page, options.end_page, raw=raw, ahead=ahead
        )
        with contextlib.closing(pages):
            for page in pages:
                self._export_page(page, raw)

    def _export_page(self, page: UsersPage, raw: bool) -> None:
        """Select, write and count one page, closing parts (and saving checkpoints) on the way."""
        options, output = self.options, self.output
        self.counts.saw_page(page.total_users)
        expected = self.counts.expected_users(options.start_page, options.end_page, options.page_size)
        self.seen.reserve(expected)
        if isinstance(output, XComOutput):
            output.check_total(page.total_users, filtering=self.stamp_field is not None)
        make_batch = batch_from_raw if raw else batch_from_dicts
        batch = make_batch(page, self.stamp_field)
        self.fmt.prepare(batch.users)
        position, self.skip = self.skip, 0
        while position < len(batch):
            selection = self.selector.select(batch, position, output.room())
            output.write(batch.pick(selection.positions, self.projection))
            selection.count_into(self.counts, position)
            position = selection.stop
            if isinstance(output, PartedOutput) and output.room() == 0:
                self._close_part(page.page, position, len(batch))
        self.progress.update(self.counts.users_scanned, total=expected)

    def _close_part(self, page: int, position: int, page_length: int) -> None:
        assert isinstance(self.output, PartedOutput)
        self.output.close_part()
        next_page, skip = (page, position) if position < page_length else (page + 1, 0)
        self.resume.save(
            Checkpoint(
                fingerprint=self.resume.fingerprint,
                parts=list(self.output.parts),
                next_page=next_page,
                skip=skip,
                counts=ExportCounts.from_dict(self.counts.to_dict()),
                attribute_keys=self.fmt.attribute_keys,
            )
        )

    def _check_counts(self) -> None:
        options = self.options
        problem = self.mismatch = self.counts.mismatch(
            options.start_page, options.end_page, options.page_size
        )
        if problem is None:
            return
        if options.on_count_mismatch == "fail":
            raise KumulosCountMismatchError(
                f"Kumulos export: the user set changed while paging ({problem}). Nothing was published; "
                'rerun the export, or set on_count_mismatch="warn" to accept it.'
            )
        self.log.warning("Kumulos export: the user set changed while paging (%s).", problem)

    # --- finishing ------------------------------------------------------------------------

    def _publish(self) -> Any:
        output = self.output
        if isinstance(output, XComOutput):
            return output.users
        if isinstance(output, FileOutput):
            output.finish()
            return self._summary(nbytes=output.nbytes, sha256=output.sha256)
        output.close_part()
        summary = self._summary(
            nbytes=sum(part.bytes for part in output.parts),
            manifest=shown_path(output.manifest_path, self.options.output_given),
            parts=len(output.parts),
            resumed_parts=output.resumed_parts,
        )
        output.finish(summary, self.options.describe())
        return summary

    def _summary(self, nbytes: int, **extra: Any) -> dict[str, Any]:
        counts, options = self.counts, self.options
        assert options.output_path is not None  # summaries are for file exports
        summary = {
            "path": shown_path(options.output_path, options.output_given),
            "format": options.format,
            "compression": options.compression,
            "users_written": counts.users_written,
            "pages_fetched": counts.pages_fetched,
            "users_scanned": counts.users_scanned,
            "users_filtered_out": counts.users_filtered_out,
            "duplicates_dropped": counts.duplicates_dropped,
            "total_users_start": counts.total_users_start,
            "total_users_end": counts.total_users_end,
            "count_mismatch": self.mismatch,
            "start_page": options.start_page,
            "end_page": options.end_page,
            "bytes": nbytes,
            "duration_seconds": round(time.monotonic() - self.started, 3),
        }
        summary.update(extra)
        return summary

    def _abort(self, error: BaseException) -> None:
        output = self.output
        if isinstance(output, FileOutput):
            output.abort(error)
        elif isinstance(output, PartedOutput):
            keep = self.resume.enabled and not isinstance(error, KumulosCountMismatchError)
            output.abort(error, keep_finished=keep)
            if not keep:
                self.resume.clear()

    def _report(self) -> None:
        counts = self.counts
        self.progress.finish(
            users_written=counts.users_written,
            users_scanned=counts.users_scanned,
            filtered_out=counts.users_filtered_out,
            duplicates_dropped=counts.duplicates_dropped,
            pages=counts.pages_fetched,
        )
        _metrics.incr("users_exported", counts.users_written, format=self.options.format)
