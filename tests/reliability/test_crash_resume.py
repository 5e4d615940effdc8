"""Scenario 3, crash: SIGKILL a task mid-way in a real Airflow process, retry it, lose nothing.

The first attempt is ``airflow dags test`` in a subprocess; it is killed (SIGKILL, whole process
group) once the task has visibly progressed. The retry is ``airflow tasks test <dag> <task>
<run_id>`` on that same DAG run, i.e. the same task instance, as the scheduler's retry of a task
whose worker died would be. (A second ``airflow dags test`` cannot stand in for it: it deletes the
DAG run and with it the task's state.)

* Export with ``split_every`` parts against an emulator slowed to 0.2 s per page: after the kill no
  manifest exists and every visible part is complete; after the retry the output is line for line
  (sorted) what an uninterrupted export writes. With Airflow's task state store (3.3+) the retry
  resumes after the last finished part, so at most one part's pages are fetched twice; without it,
  the retry starts over and still publishes a complete, identical export.
* Bulk update from a JSONL file: after the retry the emulator holds exactly the intended state.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from reliability_support import Figures, Stopwatch, has_task_state_store

from airflow_provider_kumulos._export.options import DEFAULT_CONCURRENCY
from airflow_provider_kumulos._storage import TEMP_PREFIX
from airflow_provider_kumulos.operators.export import ExportUsersOperator
from airflow_provider_kumulos.testing.emulator import KumulosEmulator

CONN_ID = "kumulos_crash"
USERS = 2_000
PAGE_SIZE = 100
SPLIT_EVERY = 200  # two pages per part, ten parts
PAGES_PER_PART = SPLIT_EVERY // PAGE_SIZE
KILL_AFTER_PARTS = 3
#: Seconds the emulator adds to each answer, so the kill lands mid-part.
LATENCY = 0.2
RECORDS = 3_000
KILL_AFTER_WRITES = 1_000
#: Generous: starting an Airflow CLI process takes a while on a busy two-core machine.
PROCESS_TIMEOUT = 240.0

EXPORT_DAG = """
from datetime import datetime

from airflow.sdk import DAG
from airflow_provider_kumulos.operators.export import ExportUsersOperator

with DAG("reliability_crash_export", schedule=None, start_date=datetime(2026, 1, 1)):
    ExportUsersOperator(
        task_id="export",
        kumulos_conn_id={conn_id!r},
        output_path={output!r},
        page_size={page_size},
        split_every={split_every},
        retries=1,
    )
"""
BULK_DAG = """
from datetime import datetime

from airflow.sdk import DAG
from airflow_provider_kumulos.operators.kumulos import SetAttributesOperator

with DAG("reliability_crash_bulk", schedule=None, start_date=datetime(2026, 1, 1)):
    SetAttributesOperator(
        task_id="set", kumulos_conn_id={conn_id!r}, source_path={source!r}, max_concurrency=4, retries=1
    )
"""


class AirflowProcess:
    """An Airflow CLI command in its own process group, output to a log file."""

    def __init__(self, args: list[str], log: Path) -> None:
        self.log = log
        with log.open("wb") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "airflow", *args],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=os.environ.copy(),
                start_new_session=True,
            )

    def kill_when(self, condition: Callable[[], bool]) -> None:
        """SIGKILL the whole process group as soon as ``condition()`` holds (fail if it exits first)."""
        deadline = time.monotonic() + PROCESS_TIMEOUT
        try:
            while not condition():
                assert self.process.poll() is None, f"exited before the kill:\n{self.tail()}"
                assert time.monotonic() < deadline, f"no progress in time:\n{self.tail()}"
                time.sleep(0.02)
        finally:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def finish(self) -> str:
        """Wait for a normal exit; return the output."""
        try:
            self.process.wait(timeout=PROCESS_TIMEOUT)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
            raise
        return self.log.read_text(errors="replace")

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:]


def _task_instance(dag_id: str, task_id: str) -> tuple[str, str]:
    """``(run_id, state)`` of ``task_id`` in the latest run of ``dag_id``, read from the metadata DB."""
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session

    with create_session() as session:
        run = session.query(DagRun).filter(DagRun.dag_id == dag_id).order_by(DagRun.id.desc()).first()
        assert run is not None, f"no run of {dag_id}"
        task_instance = run.get_task_instance(task_id, session=session)
        assert task_instance is not None
        return run.run_id, str(task_instance.state)


def _pages(emulator: KumulosEmulator, start: int = 0) -> list[int]:
    return [
        int(entry.query["currentPage"][0]) for entry in emulator.requests[start:] if entry.path == "/v2/users"
    ]


def _settle(emulator: KumulosEmulator, quiet: float) -> None:
    """Wait until the log has not grown for ``quiet`` seconds.

    The emulator logs a request once it has answered it, so a request the killed process sent just
    before the kill still lands in the log up to one latency later; it belongs to the killed attempt.
    """
    deadline = time.monotonic() + PROCESS_TIMEOUT
    seen, since = len(emulator.requests), time.monotonic()
    while time.monotonic() - since < quiet:
        assert time.monotonic() < deadline, "the emulator's request log never settled"
        time.sleep(0.05)
        if (now := len(emulator.requests)) != seen:
            seen, since = now, time.monotonic()


def _published(folder: Path) -> list[str]:
    return sorted(path.name for path in folder.iterdir() if not path.name.startswith(TEMP_PREFIX))


def _lines(folder: Path, names: list[str]) -> list[bytes]:
    return sorted(line for name in names for line in (folder / name).read_bytes().splitlines())


@pytest.mark.slow
def test_killed_export_retries_to_a_complete_identical_output(
    dag_runner: Any,
    emulator_factory: Callable[..., KumulosEmulator],
    connect: Callable[..., str],
    tmp_path: Path,
    figures: Figures,
) -> None:
    watch = Stopwatch()
    emulator = emulator_factory(users=USERS, latency=LATENCY)
    connect(emulator, CONN_ID)
    output = tmp_path / "parts"
    dag = dag_runner.write(
        EXPORT_DAG.format(conn_id=CONN_ID, output=str(output), page_size=PAGE_SIZE, split_every=SPLIT_EVERY)
    )
    assert dag.exists()

    first = AirflowProcess(["dags", "test", "reliability_crash_export"], tmp_path / "attempt-1.log")
    # Killed once KILL_AFTER_PARTS parts are published, mid-way through the next one. Counted in
    # published parts, not pages served: pages fetched ahead can run a part or two past the writer.
    first.kill_when(
        lambda: (
            output.exists()
            and sum(name.startswith("part-") for name in _published(output)) >= KILL_AFTER_PARTS
        )
    )
    _settle(emulator, quiet=3 * LATENCY)
    run_id, state = _task_instance("reliability_crash_export", "export")
    assert state == "running", "the task was killed while running"
    killed_pages = _pages(emulator)
    parts_at_kill = [name for name in _published(output) if name.startswith("part-")]
    assert "_manifest.json" not in _published(output), "a manifest before the export finished"
    assert len(parts_at_kill) >= KILL_AFTER_PARTS
    for name in parts_at_kill:  # every visible part is whole: exactly its users, each one valid
        lines = (output / name).read_bytes().splitlines()
        assert len(lines) == SPLIT_EVERY
        assert all(json.loads(line)["identifier"] for line in lines)

    before_retry = len(emulator.requests)
    retry = AirflowProcess(
        ["tasks", "test", "reliability_crash_export", "export", run_id], tmp_path / "attempt-2.log"
    ).finish()
    retry_pages = _pages(emulator, before_retry)
    assert _task_instance("reliability_crash_export", "export") == (run_id, "success"), retry[-3000:]

    manifest = json.loads((output / "_manifest.json").read_text())
    names = [part["name"] for part in manifest["parts"]]
    assert _published(output) == sorted(["_manifest.json", *names])
    reference = tmp_path / "uninterrupted"
    ExportUsersOperator(
        task_id="reference",
        kumulos_conn_id=CONN_ID,
        output_path=str(reference),
        page_size=PAGE_SIZE,
        split_every=SPLIT_EVERY,
    ).execute({})  # type: ignore[arg-type]
    reference_names = [
        part["name"] for part in json.loads((reference / "_manifest.json").read_text())["parts"]
    ]
    crashed_lines = _lines(output, names)
    assert crashed_lines == _lines(reference, reference_names)
    assert len(crashed_lines) == len(set(crashed_lines)) == USERS

    refetched = sorted(set(killed_pages) & set(retry_pages))
    summary = dag_runner.xcom(SimpleNamespace(dag_id="reliability_crash_export", run_id=run_id), "export")
    if has_task_state_store():
        assert "Resuming the export after" in retry
        # The checkpoint follows each published part, so it may lag the visible parts by one.
        assert len(parts_at_kill) - 1 <= summary["resumed_parts"] <= len(parts_at_kill)
        # Fetched twice: at most the unfinished part and the pages already fetched ahead of it.
        assert len(refetched) <= PAGES_PER_PART + DEFAULT_CONCURRENCY, (
            f"too many pages fetched twice: {refetched}"
        )
        assert retry_pages[0] == summary["resumed_parts"] * PAGES_PER_PART + 1
    else:  # no task state store before Airflow 3.3: the retry starts over, cleanly
        assert summary["resumed_parts"] == 0
        # Every page once; pages fetched ahead arrive in the log in the order their answers came.
        assert sorted(retry_pages) == list(range(1, USERS // PAGE_SIZE + 1))
    figures.record(
        "3 crash, export",
        users=USERS,
        parts=len(names),
        parts_published_at_kill=len(parts_at_kill),
        pages_before_kill=len(killed_pages),
        pages_on_retry=len(retry_pages),
        pages_fetched_twice=len(refetched),
        resumed_parts=summary["resumed_parts"],
        stale_temporaries=len([path for path in output.iterdir() if path.name.startswith(TEMP_PREFIX)]),
        duration_s=watch.seconds,
    )


@pytest.mark.slow
def test_killed_bulk_update_converges_on_retry(
    dag_runner: Any,
    emulator_factory: Callable[..., KumulosEmulator],
    connect: Callable[..., str],
    tmp_path: Path,
    figures: Figures,
) -> None:
    watch = Stopwatch()
    emulator = emulator_factory(users=RECORDS, latency=0.01)
    connect(emulator, CONN_ID)
    intended = {
        identifier: {"crash": "test", "n": n, "even": n % 2 == 0}
        for n, identifier in enumerate(emulator.user_ids())
    }
    source = tmp_path / "updates.jsonl"
    source.write_text(
        "".join(
            json.dumps({"identifier": ident, "attributes": attrs}) + "\n" for ident, attrs in intended.items()
        )
    )
    dag_runner.write(BULK_DAG.format(conn_id=CONN_ID, source=str(source)))

    def writes() -> int:
        return sum(1 for entry in emulator.requests if entry.method == "PUT")

    first = AirflowProcess(["dags", "test", "reliability_crash_bulk"], tmp_path / "attempt-1.log")
    first.kill_when(lambda: writes() >= KILL_AFTER_WRITES)
    run_id, state = _task_instance("reliability_crash_bulk", "set")
    assert state == "running"
    written_before_kill = writes()
    off_target_at_kill = sum(emulator.get_attributes(ident) != attrs for ident, attrs in intended.items())
    assert 0 < off_target_at_kill < RECORDS, "the kill came mid-way"

    retry = AirflowProcess(
        ["tasks", "test", "reliability_crash_bulk", "set", run_id], tmp_path / "attempt-2.log"
    ).finish()
    assert _task_instance("reliability_crash_bulk", "set") == (run_id, "success"), retry[-3000:]
    summary = dag_runner.xcom(SimpleNamespace(dag_id="reliability_crash_bulk", run_id=run_id), "set")
    assert (summary["total"], summary["succeeded"], summary["failed"]) == (RECORDS, RECORDS, 0)
    assert {ident: emulator.get_attributes(ident) for ident in intended} == intended
    figures.record(
        "3 crash, bulk update",
        records=RECORDS,
        writes_before_kill=written_before_kill,
        off_target_at_kill=off_target_at_kill,
        writes_on_retry=writes() - written_before_kill,
        records_checked=len(intended),
        duration_s=watch.seconds,
    )
