"""A bulk write from records to report: the stages of ``_bulk`` put in order.

records -> which need sending (:func:`classify_stage`: the reconcile's or the sync state's) -> the runner
(with the failures file open) -> the sync's removals and state -> the report, its log lines and
metrics. A new stage that decides which records must be sent plugs in at :func:`classify_stage`;
the runner needs no change.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

from airflow_provider_kumulos._bulk.failures import failures_file
from airflow_provider_kumulos._bulk.reconcile import Reconciler, finish_reconcile
from airflow_provider_kumulos._bulk.records import UNCHANGED
from airflow_provider_kumulos._bulk.report import BulkReport, log_report, record_metrics
from airflow_provider_kumulos._bulk.runner import BulkRunner, Classify
from airflow_provider_kumulos._bulk.sync import finish_sync
from airflow_provider_kumulos._progress import DEFAULT_INTERVAL, ProgressLogger

if TYPE_CHECKING:
    import logging

    from airflow.sdk import ObjectStoragePath

    from airflow_provider_kumulos._bulk.records import Job, Remover, SourceRecord
    from airflow_provider_kumulos._bulk.sync import SyncState
    from airflow_provider_kumulos._stats import RequestStats


def _unchanged_since_last_sync(state: SyncState, jobs: Sequence[Job]) -> list[str | None]:
    """A state's verdicts as the runner takes them: unchanged records are counted, the others sent."""
    return [UNCHANGED if same else None for same in state.classify(jobs)]


def classify_stage(state: SyncState | None, reconciler: Reconciler | None) -> Classify | None:
    """What decides, before the runner, which valid records need not be sent (None: send them all):
    the reconcile (which consults the state itself), else the sync state."""
    if reconciler is not None:
        return reconciler.classify
    if state is not None:
        return functools.partial(_unchanged_since_last_sync, state)
    return None


def _settled_stage(
    state: SyncState | None, reconciler: Reconciler | None, *, dry_run: bool
) -> Callable[[Job, bool], None] | None:
    """What hears each record's outcome: the reconcile (which tells the state), else the state of a
    run that sends."""
    if reconciler is not None:
        return reconciler.settled
    return None if state is None or dry_run else state.settled


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
    reconciler: Reconciler | None = None,
    remove_absent: bool = False,
    remove: Remover | None = None,
    managed_keys: Iterable[str] = (),
    max_removal_fraction: float = 0.5,
) -> BulkReport:
    """Run ``records`` through ``send`` (None: dry run), write the failures file, log; return the report.

    With a sync ``state``, unchanged records are counted and not sent, and outcomes update the state,
    which checkpoints itself while the runner goes on.
    With a ``reconciler``, records Kumulos already holds are counted and not sent instead. With
    ``remove_absent``, users absent from the source then go through ``remove`` (a dry run only
    counts them), unless they are more than ``max_removal_fraction`` of the users they are counted
    from (see :func:`~airflow_provider_kumulos._bulk.sync.finish_sync` and
    :func:`~airflow_provider_kumulos._bulk.reconcile.finish_reconcile`).
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
            classify=classify_stage(state, reconciler),
            settled=_settled_stage(state, reconciler, dry_run=send is None),
            drifted=None if reconciler is None or state is None else lambda: reconciler.drifted,
            tick=None if state is None else state.tick,
        )
        result = runner.run(records)
    finishing: dict[str, Any] = {
        "remove_absent": remove_absent,
        "remove": remove,
        "managed_keys": managed_keys,
        "max_removal_fraction": max_removal_fraction,
        "max_concurrency": max_concurrency,
        "logger": logger,
        "request_stats": request_stats,
        "progress_interval": progress_interval,
    }
    sync = None
    if reconciler is not None:
        sync = finish_reconcile(reconciler, result, **finishing)
    elif state is not None:
        sync = finish_sync(state, result, **finishing)
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
