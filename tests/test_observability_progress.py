"""Progress lines and summaries in the task log: a time cadence, growing counts, totals that match the output.

The export and bulk tests run real DAGs (``dag.test()``) and read what the task logged, as it
would appear in the task log; the cadence rules are checked on :class:`ProgressLogger` itself with
a clock the test moves.
"""

from __future__ import annotations

import itertools
import json
import logging
import re
import time
from collections import Counter
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_kumulos._progress import ProgressLogger, check_interval
from airflow_provider_kumulos.exceptions import KumulosInputError
from airflow_provider_kumulos.operators.attributes import DeleteAttributesOperator, SetAttributesOperator
from airflow_provider_kumulos.operators.export import ExportUsersOperator
from airflow_provider_kumulos.testing.emulator import Fault, KumulosEmulator

INTERVAL = 0.1
#: Colour codes, which some Airflow releases put around parts of console log lines.
ANSI = re.compile(r"\x1b\[[0-9;]*m")
#: ``2026-01-01T12:00:00.123456Z [info     ] <message> [logger] ...``: how a task log line starts.
STAMP = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+)Z? \[(\w+)\s*\]")
EXPORT_LINE = re.compile(
    r"Kumulos export: ([\d,]+)/([\d,]+) \(([\d.]+)%\), ([\d,]+)/s(?:, ETA (\w+))?, requests ([\d,]+), "
    r"retries ([\d,]+), rate-limit waits ([\d,]+)(?: \([\d.]+s\))?, elapsed \w+"
)
EXPORT_SUMMARY = re.compile(
    r"Kumulos export finished: users written ([\d,]+), users scanned ([\d,]+), filtered out ([\d,]+), "
    r"duplicates dropped ([\d,]+), pages ([\d,]+), requests ([\d,]+), retries ([\d,]+), "
    r"rate-limit waits ([\d,]+) \([\d.]+s\), duration \w+"
)
BULK_LINE = re.compile(
    r"set attributes: ([\d,]+)/([\d,]+) \(([\d.]+)%\), failed ([\d,]+), ([\d,]+)/s(?:, ETA \w+)?, "
    r"requests ([\d,]+), retries ([\d,]+), rate-limit waits ([\d,]+), elapsed \w+"
)
BULK_SUMMARY = re.compile(
    r"set attributes finished: total ([\d,]+), succeeded ([\d,]+), failed ([\d,]+), skipped ([\d,]+), "
    r"duplicates ([\d,]+), requests ([\d,]+), retries ([\d,]+), rate-limit waits ([\d,]+), duration \w+"
)


def _ints(match: re.Match[str], *groups: int) -> tuple[int, ...]:
    return tuple(int(match.group(group).replace(",", "")) for group in groups)


def _logged(out: str, pattern: re.Pattern[str]) -> list[tuple[datetime, str, re.Match[str]]]:
    """(time, level, match) of every task-log line that ``pattern`` matches."""
    found = []
    for line in ANSI.sub("", out).splitlines():
        stamp, match = STAMP.match(line), pattern.search(line)
        if stamp and match:
            found.append((datetime.fromisoformat(stamp.group(1)), stamp.group(2), match))
    return found


def _gaps(lines: list[tuple[datetime, str, re.Match[str]]]) -> list[float]:
    return [(later[0] - earlier[0]).total_seconds() for earlier, later in itertools.pairwise(lines)]


@pytest.fixture
def big_emulator(monkeypatch: pytest.MonkeyPatch) -> Iterator[KumulosEmulator]:
    """20,000 users, each page answered after 40 ms, behind ``kumulos_default`` with quick retries."""
    with KumulosEmulator(users=20_000, seed=3, latency=0.04) as emulator:
        monkeypatch.setenv(
            "AIRFLOW_CONN_KUMULOS_DEFAULT",
            emulator.connection_uri(backoff_base=0.01, backoff_max=0.05, max_retry_after=0.05),
        )
        yield emulator


EXPORT_DAG = """
import pendulum
from airflow.sdk import DAG
from airflow_provider_kumulos.operators.export import ExportUsersOperator

with DAG("observability_export_progress", schedule=None, start_date=pendulum.datetime(2026, 1, 1)):
    ExportUsersOperator(task_id="export", output_path={out!r}, page_size=500, progress_interval={interval})
"""


def test_a_20000_user_export_logs_timed_progress_and_a_summary_matching_the_file(
    dag_runner: Any,
    big_emulator: KumulosEmulator,
    tmp_path: Path,
    capfd: pytest.CaptureFixture[str],
) -> None:
    passing, slow_page = [Fault("slow", delay=0)] * 5, Fault("slow", delay=6 * INTERVAL)
    big_emulator.script_faults(
        [
            passing[0],
            Fault("status", status=503),
            Fault("status", status=429, retry_after=1),
            *passing,
            slow_page,
        ],
        method="GET",
        path_prefix="/v2/users",
    )
    out = tmp_path / "users.jsonl"
    started = time.monotonic()
    run = dag_runner.run(EXPORT_DAG.format(out=str(out), interval=INTERVAL), "observability_export_progress")
    duration = time.monotonic() - started
    assert dag_runner.states(run) == {"export": "success"}
    logged = capfd.readouterr().out
    written = len(out.read_bytes().splitlines())
    summary = dag_runner.xcom(run, "export")
    assert written == summary["users_written"] == 20_000 and summary["pages_fetched"] == 40

    progress = _logged(logged, EXPORT_LINE)
    assert 5 <= len(progress) < summary["pages_fetched"], "progress is time-based, not one line per page"
    assert len(progress) <= duration / INTERVAL + 1
    assert all(gap >= INTERVAL / 2 for gap in _gaps(progress))
    counts = [_ints(match, 1, 2, 6, 7, 8) for _, _, match in progress]
    done = [count[0] for count in counts]
    assert done == sorted(done)
    stalled = max(Counter(done).values())
    assert stalled >= 3, "lines keep coming at the cadence while a slow page holds the export up"
    assert {count[1] for count in counts} == {20_000}, "the total comes from totalUsers"
    for _, level, match in progress:
        assert level == "info"
        assert float(match.group(3)) == pytest.approx(100 * _ints(match, 1)[0] / 20_000, abs=0.05)
        assert (match.group(5) is not None) == (_ints(match, 1)[0] < 20_000), "an ETA until the end"
    for column in (2, 3, 4):  # requests, retries, rate-limit waits so far: they only grow
        assert [count[column] for count in counts] == sorted(count[column] for count in counts)

    (final,) = _logged(logged, EXPORT_SUMMARY)
    users, scanned, filtered, duplicates, pages, requests, retries, waits = _ints(final[2], *range(1, 9))
    assert (users, scanned, filtered, duplicates, pages) == (written, 20_000, 0, 0, summary["pages_fetched"])
    answered = [request.status for request in big_emulator.requests]
    assert (requests, retries, waits) == (len(answered), answered.count(503) + answered.count(429), 1)
    assert (requests, retries) == (42, 2) and counts[-1][2:] <= (requests, retries, waits)
    assert final[0] >= progress[-1][0]
    identifiers = big_emulator.user_ids()[:50]
    assert not any(identifier in logged for identifier in identifiers), "no identifier in the task log"


BULK_DAG = """
import json
import pendulum
from airflow.sdk import DAG
from airflow_provider_kumulos.operators.attributes import SetAttributesOperator

RECORDS = json.loads({records!r})

with DAG("observability_bulk_progress", schedule=None, start_date=pendulum.datetime(2026, 1, 1)):
    SetAttributesOperator(
        task_id="set", records=RECORDS, max_concurrency=4, max_failures=10, progress_interval={interval}
    )
"""


def test_a_bulk_write_logs_done_failed_total_and_a_summary_matching_its_outcome(
    dag_runner: Any, kumulos_connection: KumulosEmulator, capfd: pytest.CaptureFixture[str]
) -> None:
    kumulos_connection.set_latency(0.01)
    rejected = {f"bulk-{n}": (422, {"errors": {"tier": ["invalid"]}}) for n in (3, 150, 299, 410, 555, 598)}
    kumulos_connection.reject_users(rejected)
    records = [{"identifier": f"bulk-{n}", "attributes": {"tier": f"value-{n}"}} for n in range(600)]
    run = dag_runner.run(
        BULK_DAG.format(records=json.dumps(records), interval=INTERVAL), "observability_bulk_progress"
    )
    assert dag_runner.states(run) == {"set": "success"}
    logged = capfd.readouterr().out
    summary = dag_runner.xcom(run, "set")

    progress = _logged(logged, BULK_LINE)
    assert 2 <= len(progress) < 100, "a line per interval, not per record"
    assert all(gap >= INTERVAL / 2 for gap in _gaps(progress))
    counts = [_ints(match, 1, 2, 4) for _, _, match in progress]
    done, failed = [count[0] for count in counts], [count[2] for count in counts]
    assert done == sorted(done) and failed == sorted(failed) and failed[-1] <= len(rejected)
    assert {count[1] for count in counts} == {600}, "the total is the number of records given"

    (final,) = _logged(logged, BULK_SUMMARY)
    total, succeeded, failures, skipped, duplicates, requests, retries, waits = _ints(final[2], *range(1, 9))
    assert (total, succeeded, failures, skipped, duplicates) == (600, 594, 6, 0, 0)
    assert (summary["total"], summary["succeeded"], summary["failed"]) == (total, succeeded, failures)
    assert (requests, retries, waits) == (600, 0, 0) == (len(kumulos_connection.requests), 0, 0)
    logged = ANSI.sub("", logged)
    failure_lines = [line for line in logged.splitlines() if "First failures" in line]
    assert len(failure_lines) == 1 and "[warning" in failure_lines[0]
    assert failure_lines[0].count("'bulk-") == 5, "identifiers only in the failure list, cut to five"
    info_lines = [line for line in logged.splitlines() if "[info" in line]
    assert not any("value-" in line for line in logged.splitlines()), "never an attribute value"
    assert not any("'bulk-" in line or "bulk-1 " in line for line in info_lines)


def test_a_file_of_unknown_length_shows_counts_and_rate_without_a_percentage(
    kumulos_connection: KumulosEmulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    kumulos_connection.set_latency(0.01)
    source = tmp_path / "ids.txt"
    source.write_text("".join(f"{identifier}\n" for identifier in kumulos_connection.user_ids()))
    operator = DeleteAttributesOperator(
        task_id="delete", source_path=str(source), max_concurrency=2, progress_interval=0.05
    )
    summary = operator.execute({})
    logged = capsys.readouterr().out
    progress = _logged(
        logged, re.compile(r"delete attributes: [\d,]+, failed 0, [\d,]+/s, requests [\d,]+, retries 0, ")
    )
    assert len(progress) >= 2
    assert not any("%" in match.string or "ETA" in match.string for _, _, match in progress)
    assert (
        "delete attributes finished: total 50, succeeded 50, missing 0, failed 0, skipped 0, duplicates 0, "
        "requests 50, retries 0, rate-limit waits 0, duration "
    ) in logged
    assert summary["succeeded"] == 50


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class FakeStats:
    """The three request counters a progress line reads from the hook."""

    total_requests = 12
    retries = 3
    rate_limit_waits = 2
    rate_limit_wait_seconds = 4.25


def _progress(caplog: pytest.LogCaptureFixture, **kwargs: Any) -> tuple[ProgressLogger, FakeClock]:
    clock = FakeClock()
    logger = logging.getLogger("kumulos.test.progress")
    caplog.set_level(logging.INFO, logger=logger.name)
    return ProgressLogger("Kumulos export", logger=logger, interval=10.0, clock=clock, **kwargs), clock


def test_lines_come_at_most_once_per_interval_however_often_progress_is_reported(
    caplog: pytest.LogCaptureFixture,
) -> None:
    progress, clock = _progress(caplog, total=1_000)
    for step in range(1, 241):  # one update every 0.125 s for 30 s
        clock.now += 0.125
        progress.update(step)
    assert [record.getMessage().split(", ")[0] for record in caplog.records] == [
        "Kumulos export: 80/1,000 (8.0%)",
        "Kumulos export: 160/1,000 (16.0%)",
        "Kumulos export: 240/1,000 (24.0%)",
    ]
    assert progress.lines == 3


def test_a_line_carries_rate_eta_retries_and_rate_limit_waits(caplog: pytest.LogCaptureFixture) -> None:
    progress, clock = _progress(caplog, total=20_000, request_stats=FakeStats())
    clock.now += 125.0
    progress.update(5_000)
    assert caplog.records[-1].getMessage() == (
        "Kumulos export: 5,000/20,000 (25.0%), 40/s, ETA 6m15s, requests 12, retries 3, "
        "rate-limit waits 2 (4.2s), elapsed 2m05s"
    )


def test_a_resumed_run_counts_inherited_work_but_not_in_its_rate(caplog: pytest.LogCaptureFixture) -> None:
    progress, clock = _progress(caplog, total=10_000, resumed=6_000)
    clock.now += 10.0
    progress.update(7_000)
    assert caplog.records[-1].getMessage() == (
        "Kumulos export: 7,000/10,000 (70.0%), 100/s, ETA 30s, elapsed 10s"
    )


def test_bulk_lines_always_show_failures_and_the_summary_every_count(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = FakeClock()
    logger = logging.getLogger("kumulos.test.bulk")
    caplog.set_level(logging.INFO, logger=logger.name)
    progress = ProgressLogger(
        "set attributes", logger=logger, total=None, interval=5.0, counts_failures=True, clock=clock
    )
    clock.now += 5.0
    progress.update(500)
    clock.now += 3_600.0
    line = progress.finish(total=1_000, succeeded=990, failed=10, dry_run="no")
    assert [record.getMessage() for record in caplog.records] == [
        "set attributes: 500, failed 0, 100/s, elapsed 5s",
        line,
    ]
    assert (
        line
        == "set attributes finished: total 1,000, succeeded 990, failed 10, dry run no, duration 1h00m05s"
    )


@pytest.mark.parametrize("value", [-1, "10", None, True, float("nan")])
def test_a_bad_progress_interval_is_refused_before_anything_runs(value: object) -> None:
    with pytest.raises(
        KumulosInputError, match=r"^Invalid progress_interval: .* is not a number of seconds >= 0"
    ):
        ExportUsersOperator(task_id="export", progress_interval=value)  # type: ignore[arg-type]
    with pytest.raises(KumulosInputError, match="progress_interval"):
        SetAttributesOperator(
            task_id="set",
            user_id="u",
            attributes={},
            progress_interval=value,  # type: ignore[arg-type]
        )
    assert check_interval(0) == 0.0 and check_interval(2) == 2.0


def test_ticking_keeps_the_cadence_while_no_update_arrives(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("kumulos.test.ticking")
    caplog.set_level(logging.INFO, logger=logger.name)
    progress = ProgressLogger("Kumulos export", logger=logger, total=100, interval=0.05)
    with progress.ticking():
        progress.update(10)
        time.sleep(0.32)
    lines = len(caplog.records)
    assert 4 <= lines <= 7 and progress.lines == lines
    assert all(record.getMessage().startswith("Kumulos export: 10/100 (10.0%)") for record in caplog.records)
    time.sleep(0.15)
    assert len(caplog.records) == lines, "the thread stops with the block"


def test_without_an_interval_only_updates_log(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("kumulos.test.untimed")
    caplog.set_level(logging.INFO, logger=logger.name)
    progress = ProgressLogger("Kumulos export", logger=logger, interval=0)
    with progress.ticking():
        time.sleep(0.1)
        progress.update(1)
        progress.update(2)
    assert [record.getMessage().split(", ")[0] for record in caplog.records] == [
        "Kumulos export: 1",
        "Kumulos export: 2",
    ]
