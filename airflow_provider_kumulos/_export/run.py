"""The export loop: pages from the hook -> selection (``select``) -> format writer -> output.

One page is held at a time, so memory does not grow with the number of users (apart from the
dedupe table, 12-23 bytes per user). Parts close exactly every ``split_every`` users, each
followed by a checkpoint (``resume``) when a state store is available. After the last page the
counts (``counts``) are compared with ``totalUsers``; a mismatch is logged or, with
``on_count_mismatch="fail"``, raised before anything is published.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from airflow_provider_kumulos import _metrics
from airflow_provider_kumulos._dedupe import SeenIdentifiers
from airflow_provider_kumulos._export.counts import ExportCounts
from airflow_provider_kumulos._export.formats import ExportFormat
from airflow_provider_kumulos._export.manifest import MANIFEST_NAME
from airflow_provider_kumulos._export.resume import Checkpoint, ResumeState, replay_parts
from airflow_provider_kumulos._export.select import (
    Projection,
    Selector,
    UpdatedSinceFilter,
    batch_from_dicts,
    batch_from_raw,
)
from airflow_provider_kumulos._export.sinks import FileOutput, PartedOutput, XComOutput
from airflow_provider_kumulos._progress import ProgressLogger
from airflow_provider_kumulos._storage import (
    check_writable,
    remove_created_folders,
    shown_path,
    sweep_leftovers,
)
from airflow_provider_kumulos.exceptions import KumulosCountMismatchError

if TYPE_CHECKING:
    import logging

    from airflow.sdk import ObjectStoragePath

    from airflow_provider_kumulos._export.options import ExportOptions
    from airflow_provider_kumulos._policy import UsersPage
    from airflow_provider_kumulos.hooks.kumulos import KumulosCRMHook


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
        #: Local folders this export created for its output, removed again if it fails (when empty).
        self.created_folders: list[str] = []
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
        try:
            return self._open_output()
        except BaseException:
            remove_created_folders(self.created_folders)
            raise

    def _open_output(self) -> Output:
        options = self.options
        if options.output_path is None:
            return XComOutput(options.max_xcom_users)
        if options.split_every is None:
            self.created_folders = check_writable(options.output_path)
            self._sweep_leftovers(options.output_path)
            return FileOutput(options.output_path, self.fmt)
        self.created_folders = check_writable(options.output_path / MANIFEST_NAME, given=options.output_path)
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
        remove_created_folders(self.created_folders)

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
