"""The bounded concurrent runner of a bulk write: one outcome per record, in memory that does not grow.

Records flow: source -> validation (``records.prepare``) -> a bounded pool of workers sharing one
hook (one session, one backoff gate, so a 429 pauses every worker) -> per-record outcome and counts.
At most ``2 x max_concurrency`` records are held at any time, so memory does not grow with the input.
Records for the same identifier are sent one after another, in input order, so the last one wins
even though workers race each other. An optional ``classify`` stage (the sync state's or the
reconcile's) marks records that need not be sent before they reach a worker.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from airflow_provider_kumulos._bulk.records import MISSING, UNCHANGED, Failure, Job, SourceRecord, prepare
from airflow_provider_kumulos._dedupe import DuplicateCounter
from airflow_provider_kumulos._progress import ProgressLogger
from airflow_provider_kumulos.exceptions import (
    KumulosAuthError,
    KumulosConfigError,
    KumulosError,
    KumulosInputError,
)

#: Errors that would fail every record alike: the run stops at the first one.
FATAL_ERRORS = (KumulosAuthError, KumulosConfigError)
#: How many failures the summary, the log and the task error quote.
FIRST_ERRORS = 5
#: How many records a dry run describes (identifiers and attribute keys, never values).
DRY_RUN_EXAMPLES = 3
#: Seconds between progress checks while the producer waits for a free slot.
TICK = 1.0
#: Valid records a ``classify`` stage looks at once.
CLASSIFY_BATCH = 1000
#: Decides, for a batch of valid jobs, which need not be sent: per job the outcome it is counted as
#: instead (:data:`UNCHANGED`, :data:`MISSING`), or None to send it.
Classify = Callable[[Sequence[Job]], list[str | None]]


@dataclass
class BulkCounts:
    """Per-record outcome counts; ``total`` counts records read."""

    total: int = 0
    succeeded: int = 0
    missing: int = 0
    failed: int = 0
    skipped: int = 0
    duplicates: int = 0
    unchanged: int = 0

    @property
    def done(self) -> int:
        """Records with a final outcome."""
        return self.succeeded + self.missing + self.failed + self.skipped + self.unchanged


@dataclass
class BulkResult:
    """What a run did: counts, the first failures, the fatal error that stopped it (if any)."""

    counts: BulkCounts
    first_failures: list[Failure]
    fatal: KumulosError | None
    examples: list[Job]
    duration: float


class BulkRunner:
    """Send records through ``send`` on a bounded thread pool, one outcome per record.

    ``send=None`` is a dry run: every record is validated and counted as skipped, nothing is sent.
    ``send(job)`` returns :data:`SUCCEEDED`, :data:`MISSING` or :data:`UNCHANGED`, or raises a ``KumulosError`` (the
    record's failure). Records wait for a free slot before they are read further, so at most
    ``2 x max_concurrency`` are held. A record whose identifier is still in flight is queued behind
    it and sent by the same worker once it finishes: same-identifier records never overlap and keep
    their input order. An auth or configuration error stops the run: records not yet sent are
    counted as skipped and the source is not read further.

    With a ``classify`` stage (a sync state's or a reconcile's), valid records are looked up
    :data:`CLASSIFY_BATCH` at a time (so up to that many more are held) and those it gives an
    outcome are counted, not sent; ``settled`` hears the outcome of every record sent; ``drifted``
    (a reconcile with a state) gives the count the progress lines show. ``tick`` is called on the
    reading thread after each record and while it waits (the sync state checkpoints itself there).
    """

    def __init__(
        self,
        send: Callable[[Job], str] | None,
        *,
        with_attributes: bool,
        max_concurrency: int,
        on_failure: Callable[[Failure], object],
        progress: ProgressLogger,
        classify: Classify | None = None,
        settled: Callable[[Job, bool], None] | None = None,
        drifted: Callable[[], int] | None = None,
        tick: Callable[[], None] | None = None,
    ) -> None:
        self._send = send
        self._tick = tick
        self._drifted = drifted
        self._classify = classify
        self._settled = settled
        self._with_attributes = with_attributes
        self._max_concurrency = max_concurrency
        self._window = 2 * max_concurrency
        self._on_failure = on_failure
        self._progress = progress
        self._changed = threading.Condition()
        self._outstanding = 0
        self._waiting: dict[str, deque[Job]] = {}
        self._stop = threading.Event()
        self._crash: Exception | None = None
        self.counts = BulkCounts()
        self.first_failures: list[Failure] = []
        self.fatal: KumulosError | None = None
        self.examples: list[Job] = []

    def run(self, records: Iterable[SourceRecord]) -> BulkResult:
        """Process every record (or until a fatal error) and wait for the last one to finish."""
        started = time.monotonic()
        seen = DuplicateCounter() if self._classify is None else None
        batch: list[Job] = []
        pool = ThreadPoolExecutor(max_workers=self._max_concurrency, thread_name_prefix="kumulos-bulk")
        try:
            for record in records:
                if self._stop.is_set():
                    break
                job = self._prepare(record)
                if job is None:
                    continue
                if seen is not None:
                    seen.add(job.identifier)
                    self._admit(job, pool)
                    continue
                batch.append(job)
                if len(batch) >= CLASSIFY_BATCH:
                    self._admit_batch(batch, pool)
                    batch = []
            self._admit_batch(batch, pool)
            self._wait_until(lambda: self._outstanding == 0)
        except BaseException:
            self._stop.set()
            raise
        finally:
            # On the normal path nothing is pending any more; after an error, queued jobs are dropped.
            pool.shutdown(wait=True, cancel_futures=True)
            if seen is not None:
                self.counts.duplicates = seen.duplicates
                seen.close()
        if self._crash is not None:
            raise self._crash
        return BulkResult(
            self.counts, self.first_failures, self.fatal, self.examples, time.monotonic() - started
        )

    # --- producer side (the calling thread) --------------------------------------------------

    def _prepare(self, record: SourceRecord) -> Job | None:
        """Count and validate one record; an invalid one is a failure and gives no job."""
        self.counts.total += 1
        try:
            return prepare(record, self._with_attributes)
        except KumulosInputError as error:
            with self._changed:
                self._fail(Failure(record.where, record.identifier, record.attributes, error, record.source))
                if self._settled is not None and isinstance(record.identifier, str):
                    self._settled(Job(record.where, record.identifier, None), False)
            return None

    def _admit_batch(self, batch: list[Job], pool: ThreadPoolExecutor) -> None:
        """Send the records of ``batch`` that ``classify`` gives no outcome; count the others."""
        if not batch or self._classify is None:
            return
        for job, outcome in zip(batch, self._classify(batch), strict=True):
            if self._stop.is_set():
                with self._changed:
                    self.counts.skipped += 1
            elif outcome is not None:
                with self._changed:
                    self._count(outcome)
                self._report()
            else:
                self._admit(job, pool)

    def _admit(self, job: Job, pool: ThreadPoolExecutor) -> None:
        if self._send is None:
            with self._changed:
                self.counts.skipped += 1
            if len(self.examples) < DRY_RUN_EXAMPLES:
                self.examples.append(job)
            self._report()
            return
        self._wait_until(lambda: self._outstanding < self._window)
        with self._changed:
            self._outstanding += 1
            queue = self._waiting.get(job.identifier)
            if queue is not None:
                queue.append(job)
                return
            self._waiting[job.identifier] = deque()
        pool.submit(self._work, job)
        self._report()

    def _wait_until(self, predicate: Callable[[], bool]) -> None:
        """Block until ``predicate`` holds, logging progress while waiting."""
        while True:
            with self._changed:
                if self._changed.wait_for(predicate, timeout=TICK):
                    return
            self._report()

    def _report(self) -> None:
        if self._tick is not None:
            self._tick()
        counts = self.counts
        self._progress.update(
            counts.done,
            failed=counts.failed,
            unchanged=None if self._classify is None else counts.unchanged,
            drifted=None if self._drifted is None else self._drifted(),
        )

    # --- worker side --------------------------------------------------------------------------

    def _work(self, first: Job) -> None:
        """Send ``first``, then any records queued behind it for the same identifier."""
        job: Job | None = first
        while job is not None:
            try:
                if self._stop.is_set():
                    with self._changed:
                        self.counts.skipped += 1
                else:
                    self._attempt(job)
            except Exception as exc:  # a defect, not an API answer: stop the run and surface it
                with self._changed:
                    self._crash = self._crash or exc
                self._stop.set()
            job = self._next(job.identifier)

    def _attempt(self, job: Job) -> None:
        assert self._send is not None, "dry runs never reach a worker"
        try:
            outcome = self._send(job)
        except KumulosError as error:
            with self._changed:
                self._fail(Failure(job.where, job.identifier, job.attributes, error))
                if isinstance(error, FATAL_ERRORS) and self.fatal is None:
                    self.fatal = error
                    self._stop.set()
                if self._settled is not None:
                    self._settled(job, False)
            return
        with self._changed:
            self._count(outcome)
            if self._settled is not None:
                self._settled(job, True)

    def _count(self, outcome: str) -> None:
        """Count a record that did not fail (caller holds the lock)."""
        if outcome == MISSING:
            self.counts.missing += 1
        elif outcome == UNCHANGED:
            self.counts.unchanged += 1
        else:
            self.counts.succeeded += 1

    def _next(self, identifier: str) -> Job | None:
        """Release the finished record's slot; hand over the next one queued for ``identifier``."""
        with self._changed:
            self._outstanding -= 1
            self._changed.notify_all()
            queue = self._waiting[identifier]
            if queue:
                return queue.popleft()
            del self._waiting[identifier]
            return None

    def _fail(self, failure: Failure) -> None:
        """Record one failure (caller holds the lock, which also serialises the failures file)."""
        self.counts.failed += 1
        if len(self.first_failures) < FIRST_ERRORS:
            self.first_failures.append(failure)
        self._on_failure(failure)
