"""A bulk write from records to report: the stages of ``_bulk`` put in order.

records -> which need sending (:func:`classify_stage`: the sync state's lookup today) -> the runner
(with the failures file open) -> the sync's removals and state -> the report, its log lines and
metrics. A new stage that decides which records must be sent plugs in at :func:`classify_stage`;
the runner needs no change.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from airflow_provider_kumulos._bulk.failures import failures_file
from airflow_provider_kumulos._bulk.report import BulkReport, log_report, record_metrics
from airflow_provider_kumulos._bulk.runner import BulkRunner, Classify
from airflow_provider_kumulos._bulk.sync import finish_sync
from airflow_provider_kumulos._progress import DEFAULT_INTERVAL, ProgressLogger

if TYPE_CHECKING:
    import logging

    from airflow.sdk import ObjectStoragePath

    from airflow_provider_kumulos._bulk.records import Job, SourceRecord
    from airflow_provider_kumulos._bulk.sync import SyncState
    from airflow_provider_kumulos._stats import RequestStats


def classify_stage(state: SyncState | None) -> Classify | None:
    """What decides, before the runner, which valid records need not be sent (None: send them all)."""
    return None if state is None else state.classify


def run_bulk(
    records: Iterable[SourceRecord],
    send: Callable[[Job], str] | None,
    *,
    what: str,
    with_attributes: bool,
    with_missing: bool,
    max_concurrency: int,
    failures_path: ObjectStoragePath | None,
    logger: logging.Logger | Any,
    total: int | None = None,
    request_stats: RequestStats | None = None,
    progress_interval: float = DEFAULT_INTERVAL,
    state: SyncState | None = None,
    remove_absent: bool = False,
    remove: Callable[[Job], str] | None = None,
    max_removal_fraction: float = 0.5,
) -> BulkReport:
    """Run ``records`` through ``send`` (None: dry run), write the failures file, log; return the report.

    With a sync ``state``, unchanged records are counted and not sent, and outcomes update the state.
    With ``remove_absent``, users the state lists but the source did not hold then go through
    ``remove`` (a dry run only counts them), unless they are more than ``max_removal_fraction`` of those synced.
    """
    progress = ProgressLogger(
        what,
        logger=logger,
        total=total,
        interval=progress_interval,
        request_stats=request_stats,
        counts_failures=True,
    )
    with failures_file(failures_path, with_attributes) as on_failure:
        runner = BulkRunner(
            send,
            with_attributes=with_attributes,
            max_concurrency=max_concurrency,
            on_failure=on_failure,
            progress=progress,
            classify=classify_stage(state),
            settled=None if state is None or send is None else state.settled,
        )
        result = runner.run(records)
    sync = (
        None
        if state is None
        else finish_sync(
            state,
            result,
            remove_absent=remove_absent,
            remove=remove,
            max_removal_fraction=max_removal_fraction,
            max_concurrency=max_concurrency,
            logger=logger,
            request_stats=request_stats,
            progress_interval=progress_interval,
        )
    )
    dry_run = send is None
    report = BulkReport(
        what,
        result,
        dry_run,
        with_missing,
        None if failures_path is None else str(failures_path),
        requests=request_stats.total_requests if request_stats else 0,
        retries=request_stats.retries if request_stats else 0,
        sync=sync,
    )
    log_report(report, progress, logger)
    if not dry_run:
        record_metrics(report)
    return report
