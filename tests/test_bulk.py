"""The bulk runner: per-identifier ordering, bounded memory, fatal stops, dry runs, duplicates, failures file."""

from __future__ import annotations

import gzip
import json
import logging
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_kumulos._bulk.failures import check_failures_path, failures_file
from airflow_provider_kumulos._bulk.records import MISSING, SUCCEEDED, Failure, Job, SourceRecord
from airflow_provider_kumulos._bulk.run import run_bulk
from airflow_provider_kumulos._bulk.runner import BulkRunner
from airflow_provider_kumulos._dedupe import DuplicateCounter
from airflow_provider_kumulos._progress import ProgressLogger
from airflow_provider_kumulos.exceptions import (
    KumulosAuthError,
    KumulosInputError,
    KumulosServerError,
    KumulosValidationError,
)

log = logging.getLogger("test_bulk")


def records(pairs: list[tuple[object, object]]) -> list[SourceRecord]:
    return [SourceRecord(f"records[{i}]", ident, attrs) for i, (ident, attrs) in enumerate(pairs)]


def runner(
    send: Callable[[Job], str] | None, *, concurrency: int = 4, sink: list[Failure] | None = None
) -> BulkRunner:
    collected = sink if sink is not None else []
    return BulkRunner(
        send,
        with_attributes=True,
        max_concurrency=concurrency,
        on_failure=collected.append,
        progress=ProgressLogger("test", logger=log),
    )


def test_same_identifier_records_never_overlap_and_keep_input_order() -> None:
    lock = threading.Lock()
    in_flight: set[str] = set()
    overlaps: list[str] = []
    sent: dict[str, list[int]] = defaultdict(list)

    def send(job: Job) -> str:
        with lock:
            if job.identifier in in_flight:
                overlaps.append(job.identifier)
            in_flight.add(job.identifier)
        assert job.attributes is not None
        time.sleep(0.004 if job.attributes["n"] % 3 == 0 else 0.0005)  # early records are slower
        with lock:
            sent[job.identifier].append(job.attributes["n"])
            in_flight.discard(job.identifier)
        return SUCCEEDED

    pairs: list[tuple[object, object]] = [(f"u{n % 7}", {"n": n}) for n in range(210)]
    result = runner(send, concurrency=8).run(records(pairs))
    assert overlaps == []
    assert dict(sent) == {f"u{k}": list(range(k, 210, 7)) for k in range(7)}
    assert (result.counts.total, result.counts.succeeded, result.counts.duplicates) == (210, 210, 203)


def test_records_are_read_only_as_fast_as_slots_free_up() -> None:
    release = threading.Event()
    started = threading.Semaphore(0)
    pulled = 0

    def source() -> Iterator[SourceRecord]:
        nonlocal pulled
        for n in range(10_000):
            pulled += 1
            yield SourceRecord(f"line {n}", f"u{n}", {})

    def send(job: Job) -> str:
        started.release()
        release.wait(10)
        return SUCCEEDED

    bulk = runner(send, concurrency=3)
    outcome: list[Any] = []
    thread = threading.Thread(target=lambda: outcome.append(bulk.run(source())))
    thread.start()
    for _ in range(3):
        assert started.acquire(timeout=10)
    deadline = time.monotonic() + 10
    while pulled < 7 and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.3)
    assert pulled == 7  # 2 x 3 held, plus the one waiting for a slot
    release.set()
    thread.join(30)
    assert outcome[0].counts.succeeded == 10_000


def test_an_auth_error_stops_the_run_and_counts_what_was_not_sent() -> None:
    pulled = 0

    def source() -> Iterator[SourceRecord]:
        nonlocal pulled
        for n in range(100_000):
            pulled += 1
            yield SourceRecord(f"line {n}", f"u{n % 3}", {})

    def send(job: Job) -> str:
        time.sleep(0.01)
        raise KumulosAuthError("Kumulos set attributes: authentication failed.", status=401)

    failures: list[Failure] = []
    result = runner(send, concurrency=2, sink=failures).run(source())
    counts = result.counts
    assert isinstance(result.fatal, KumulosAuthError)
    assert pulled < 20
    assert counts.total == counts.failed + counts.skipped
    assert counts.failed == len(failures) >= 1
    assert counts.skipped >= 1  # the records queued behind the failed ones were dropped, not sent


def test_a_defect_in_send_is_raised_not_recorded_as_a_failure() -> None:
    def send(job: Job) -> str:
        raise RuntimeError("bug")

    with pytest.raises(RuntimeError, match="bug"):
        runner(send).run(records([("a", {}), ("b", {})]))


def test_a_source_that_breaks_midway_stops_the_run_and_propagates() -> None:
    def source() -> Iterator[SourceRecord]:
        yield SourceRecord("line 1", "a", {})
        raise KumulosInputError("source_path", "it cannot be read after line 1", "Fix it.")

    with pytest.raises(KumulosInputError, match="cannot be read after line 1"):
        runner(lambda job: SUCCEEDED).run(source())


def test_outcomes_are_counted_per_record() -> None:
    def send(job: Job) -> str:
        if job.identifier == "gone":
            return MISSING
        if job.identifier == "bad":
            raise KumulosValidationError("rejected", status=422)
        return SUCCEEDED

    failures: list[Failure] = []
    result = runner(send, sink=failures).run(
        records([("a", {}), ("gone", {}), ("bad", {"k": 1}), ("", {}), ("c", [1]), ("a", {})])
    )
    counts = result.counts
    assert (
        counts.total,
        counts.succeeded,
        counts.missing,
        counts.failed,
        counts.skipped,
        counts.duplicates,
    ) == (
        6,
        2,
        1,
        3,
        0,
        1,
    )
    assert sorted((f.where, type(f.error).__name__) for f in failures) == [
        ("records[2]", "KumulosValidationError"),
        ("records[3]", "KumulosInputError"),
        ("records[4]", "KumulosInputError"),
    ]


def test_a_dry_run_validates_everything_and_sends_nothing() -> None:
    result = runner(None).run(
        records([("a", {"x": 1, "y": 2}), ("b", {}), ("", {}), ("d", float("nan")), ("a", {})])
    )
    counts = result.counts
    assert (counts.total, counts.succeeded, counts.failed, counts.skipped, counts.duplicates) == (
        5,
        0,
        2,
        3,
        1,
    )
    assert [(job.identifier, sorted(job.attributes or {})) for job in result.examples] == [
        ("a", ["x", "y"]),
        ("b", []),
        ("a", []),
    ]


def test_duplicate_counter_is_exact_across_batches() -> None:
    counter = DuplicateCounter()
    try:
        for n in range(DuplicateCounter.BATCH * 2 + 10):
            counter.add(f"user-{n}")
        for n in range(0, DuplicateCounter.BATCH * 2 + 10, 3):
            counter.add(f"user-{n}")
        counter.add("user-0")
        assert counter.duplicates == len(range(0, DuplicateCounter.BATCH * 2 + 10, 3)) + 1
    finally:
        counter.close()


# --- failures file ----------------------------------------------------------------------------------


def failure(identifier: object, attributes: object, error: Exception | None = None) -> Failure:
    return Failure("line 3", identifier, attributes, error or KumulosServerError("boom", status=503))


def test_failure_lines_read_like_input_records_plus_an_error() -> None:
    line = json.loads(failure("u1", {"a": 1}).line(with_attributes=True))
    assert line == {
        "identifier": "u1",
        "attributes": {"a": 1},
        "error": {"type": "KumulosServerError", "status": 503, "message": "boom", "where": "line 3"},
    }
    assert "attributes" not in json.loads(failure("u1", None).line(with_attributes=False))


def test_failure_lines_survive_values_json_cannot_carry() -> None:
    circular: dict[str, Any] = {}
    circular["self"] = circular
    when = datetime(2024, 5, 1, 12, 0)
    assert json.loads(failure("u1", {"when": when}).line(True))["attributes"] == {
        "when": "2024-05-01 12:00:00"
    }
    assert json.loads(failure("u1", circular).line(True))["attributes"] is None


def test_the_summary_view_of_a_failure_has_no_attribute_values() -> None:
    brief = failure(42, {"secret-ish": "value"}, KumulosValidationError("rejected", status=422)).brief()
    assert brief == {
        "identifier": "42",
        "where": "line 3",
        "status": 422,
        "error": "KumulosValidationError",
        "message": "rejected",
    }


def test_failures_file_is_published_even_when_empty_and_can_be_gzipped(tmp_path: Path) -> None:
    empty = check_failures_path(str(tmp_path / "none.jsonl"))
    with failures_file(empty, with_attributes=True):
        pass
    assert (tmp_path / "none.jsonl").read_bytes() == b""
    zipped = check_failures_path(str(tmp_path / "out" / "failed.jsonl.gz"))
    with failures_file(zipped, with_attributes=True) as write:
        write(failure("u1", {"a": 1}))
    lines = gzip.decompress((tmp_path / "out" / "failed.jsonl.gz").read_bytes()).splitlines()
    assert [json.loads(line)["identifier"] for line in lines] == ["u1"]


def test_failures_file_is_not_published_when_the_run_breaks(tmp_path: Path) -> None:
    path = check_failures_path(str(tmp_path / "failed.jsonl"))
    with pytest.raises(RuntimeError), failures_file(path, with_attributes=True) as write:
        write(failure("u1", {}))
        raise RuntimeError("killed")
    assert list(tmp_path.iterdir()) == []


def test_failures_path_must_be_jsonl_so_it_can_be_fed_back() -> None:
    assert check_failures_path(None) is None
    with pytest.raises(KumulosInputError, match=r"'failed\.csv' does not end in \.jsonl") as caught:
        check_failures_path("/tmp/failed.csv")
    assert caught.value.parameter == "failures_path"


def test_run_bulk_reports_and_writes_failures(tmp_path: Path) -> None:
    def send(job: Job) -> str:
        if job.identifier == "bad":
            raise KumulosValidationError("rejected", status=422)
        return SUCCEEDED

    path = check_failures_path(str(tmp_path / "failed.jsonl"))
    report = run_bulk(
        records([("a", {"k": 1}), ("bad", {"k": 2})]),
        send,
        what="set attributes",
        with_attributes=True,
        with_missing=False,
        max_concurrency=2,
        failures_path=path,
        logger=log,
        total=2,
    )
    assert report.summary["failures_path"] == f"file://{tmp_path}/failed.jsonl"
    assert (report.summary["total"], report.summary["failed"], report.summary["dry_run"]) == (2, 1, False)
    assert "missing" not in report.summary and "examples" not in report.summary
    assert [
        json.loads(line)["attributes"] for line in (tmp_path / "failed.jsonl").read_text().splitlines()
    ] == [{"k": 2}]
    assert report.error(max_failures=1) is None
    error = report.error(max_failures=0)
    assert error is not None
    assert str(error) == (
        "set attributes: 1 of 2 records failed, more than max_failures=0. First errors: records[1] 'bad': "
        f"KumulosValidationError (HTTP 422). Failed records are in file://{tmp_path}/failed.jsonl: fix them and "
        "pass that file as source_path to retry."
    )
