"""What a finished bulk write reports: the XCom summary, the task's error, the closing log lines, metrics.

Never attribute values: identifiers, counts, error classes and messages only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from airflow_provider_kumulos import _metrics
from airflow_provider_kumulos._bulk.runner import FIRST_ERRORS, BulkResult
from airflow_provider_kumulos.exceptions import KumulosError

if TYPE_CHECKING:
    import logging

    from airflow_provider_kumulos._bulk.records import Failure, Job
    from airflow_provider_kumulos._bulk.sync import SyncOutcome
    from airflow_provider_kumulos._progress import ProgressLogger


@dataclass
class BulkReport:
    """A finished run as the operator reports it: summary for XCom, error to raise (if any)."""

    what: str
    result: BulkResult
    dry_run: bool
    with_missing: bool
    failures_path: str | None
    requests: int = 0
    retries: int = 0
    sync: SyncOutcome | None = None
    summary: dict[str, Any] = field(init=False)

    def __post_init__(self) -> None:
        counts = self.result.counts
        summary: dict[str, Any] = {
            "total": counts.total,
            "succeeded": counts.succeeded,
            "failed": counts.failed,
            "skipped": counts.skipped,
            "duplicates": counts.duplicates,
        }
        if self.with_missing:
            summary["missing"] = counts.missing
        if self.sync is not None:
            summary.update(self.sync.summary(counts.unchanged))
        summary.update(
            {
                "dry_run": self.dry_run,
                "failures_path": self.failures_path,
                "first_errors": [failure.brief() for failure in self.result.first_failures],
                "duration_seconds": round(self.result.duration, 3),
                "requests": self.requests,
                "retries": self.retries,
            }
        )
        if self.dry_run:
            summary["examples"] = [_example(job) for job in self.result.examples]
        self.summary = summary

    def error(self, max_failures: int) -> KumulosError | None:
        """The error that should fail the task: the fatal one, a refused removal, or too many failures."""
        if self.result.fatal is not None:
            return self.result.fatal
        removal = self.sync.result if self.sync is not None else None
        if removal is not None and removal.fatal is not None:
            return removal.fatal
        if self.sync is not None and self.sync.refused is not None:
            return self.sync.refused
        counts = self.result.counts
        not_cleared = removal.counts.failed if removal is not None else 0
        if counts.failed + not_cleared <= max_failures:
            return None
        first_failures = self.result.first_failures + (removal.first_failures if removal is not None else [])
        problems = []
        if counts.failed:
            problems.append(f"{counts.failed:,} of {counts.total:,} records failed")
        if not_cleared:
            problems.append(f"{not_cleared:,} users absent from the source could not be cleared")
        firsts = "; ".join(_describe(failure) for failure in first_failures[:FIRST_ERRORS])
        fixes = []
        if counts.failed:
            fixes.append(
                f"Failed records are in {self.failures_path}: fix them and pass that file as source_path to retry."
                if self.failures_path
                else "Set failures_path to collect the failed records for a retry."
            )
        if not_cleared:
            fixes.append("Users not cleared stay in the sync state and are tried again next run.")
        error = KumulosError(
            f"{self.what}: {' and '.join(problems)}, more than max_failures={max_failures}. "
            f"First errors: {firsts}. {' '.join(fixes)}"
        )
        error.__cause__ = first_failures[0].error  # the typed error, for callers that branch
        return error


def _describe(failure: Failure) -> str:
    """``<where> <identifier>: <error class> (<status>)``, for the log and the task's error."""
    status = f"HTTP {failure.error.status}" if failure.error.status is not None else "not sent"
    identifier = (
        repr(failure.identifier) if isinstance(failure.identifier, str) else "(no identifier could be read)"
    )
    return f"{failure.where} {identifier}: {type(failure.error).__name__} ({status})"


def _example(job: Job) -> dict[str, Any]:
    return {"identifier": job.identifier, "attribute_keys": sorted(job.attributes or {})}


def log_report(report: BulkReport, progress: ProgressLogger, logger: logging.Logger | Any) -> None:
    """The closing progress line, what a dry run would have done, and the first failures."""
    counts = report.result.counts
    outcome: dict[str, Any] = {"total": counts.total, "succeeded": counts.succeeded}
    if report.with_missing:
        outcome["missing"] = counts.missing
    outcome.update(failed=counts.failed, skipped=counts.skipped, duplicates=counts.duplicates)
    if report.sync is not None:
        outcome.update(report.sync.summary(counts.unchanged))
    if report.dry_run:
        outcome["dry_run"] = "yes, nothing was sent"
    progress.finish(**outcome)
    if report.dry_run and report.sync is not None:
        logger.info(
            "Dry run with sync state: %d records unchanged since the last sync would be skipped%s",
            counts.unchanged,
            f", {report.sync.absent} users absent from the source would be cleared"
            if report.sync.remove_absent
            else "",
        )
    if report.dry_run:
        examples = ", ".join(
            repr(job.identifier)
            if job.attributes is None
            else f"{job.identifier!r} (keys: {', '.join(sorted(job.attributes)) or 'none'})"
            for job in report.result.examples
        )
        logger.info(
            "Dry run: %d valid records would be sent; for example %s", counts.skipped, examples or "none"
        )
    if report.result.first_failures:
        logger.warning(
            "First failures (%d of %d): %s",
            len(report.result.first_failures),
            counts.failed,
            "; ".join(_describe(failure) for failure in report.result.first_failures),
        )


def record_metrics(report: BulkReport) -> None:
    """Airflow Stats of a run that sent records: written, failed, unchanged, removed."""
    counts = report.result.counts
    operation = report.what.replace(" ", "_")
    _metrics.incr("records_written", counts.succeeded + counts.missing, operation=operation)
    _metrics.incr("records_failed", counts.failed, operation=operation)
    sync = report.sync
    if sync is not None:
        _metrics.incr("records_unchanged", counts.unchanged, operation=operation)
        if sync.result is not None:
            removal = sync.result.counts
            _metrics.incr("records_removed", removal.succeeded + removal.missing, operation=operation)
            _metrics.incr("records_failed", removal.failed, operation=operation)
