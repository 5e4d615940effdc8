"""Scenario 5, secrets: the server key appears nowhere Airflow keeps or shows anything.

One real DAG run drives every operator and the sensor (poking and deferred to its trigger) with a
distinctive server key, through success and through 401, 422, 5xx and timeout failures. Then
everything is searched for the key, for its base64 form inside a Basic ``Authorization`` header,
and for its random part alone: the task logs (in ``dag.test()`` they go to the process output; any
file under ``AIRFLOW_HOME`` is searched too), every byte of the metadata database (XCom, rendered
template fields, triggers, task instances), the exceptions tasks failed with, and the trigger's
serialised form.
"""

from __future__ import annotations

import base64
import json
import logging
import subprocess
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from reliability_support import (
    RECORDED_OPERATORS,
    Figures,
    Stopwatch,
    appear_after_first_look,
    failed_tasks,
    recording_dag,
)

from airflow_provider_kumulos.testing.emulator import Fault, KumulosEmulator
from airflow_provider_kumulos.triggers.kumulos import KumulosUserTrigger

API_KEY = "reliability-api-key"
UNIQUE = uuid.uuid4().hex
SECRET = f"SeCrEt-kumulos-{UNIQUE}"
FAST = {"max_retries": 1, "backoff_base": 0.01, "backoff_max": 0.02}

DAG = (
    RECORDED_OPERATORS
    + """

with DAG(
    "reliability_secrets",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    params={{"uid": {existing!r}, "out": {folder!r}}},
):
    for kind in ("ok", "401", "5xx", "timeout"):
        conn = "kumulos_secret_" + kind
        Export(
            task_id="export_" + kind, kumulos_conn_id=conn, output_path="{{{{ params.out }}}}/" + kind + ".jsonl"
        )
        Set(
            task_id="set_" + kind, kumulos_conn_id=conn, user_id="{{{{ params.uid }}}}", attributes={{"tier": "gold"}}
        )
        Delete(task_id="delete_" + kind, kumulos_conn_id=conn, user_ids=["{{{{ params.uid }}}}"])
        Sensor(
            task_id="poke_" + kind, kumulos_conn_id=conn, user_id="{{{{ params.uid }}}}", poke_interval=0.2, timeout=2
        )
    Export(task_id="export_to_xcom", kumulos_conn_id="kumulos_secret_ok", max_xcom_users=100)
    Set(
        task_id="set_422",
        kumulos_conn_id="kumulos_secret_ok",
        records=[{{"identifier": "reject-me", "attributes": {{"a": 1}}}}, {{"identifier": "fine", "attributes": {{"a": 2}}}}],
        failures_path="{{{{ params.out }}}}/set-422-failures.jsonl",
    )
    Sensor(
        task_id="defer_ok",
        kumulos_conn_id="kumulos_secret_ok",
        user_id="appears-later",
        deferrable=True,
        poke_interval=0.2,
        timeout=60,
    )
    Sensor(
        task_id="defer_401",
        kumulos_conn_id="kumulos_secret_defer_401",
        user_id="never",
        deferrable=True,
        poke_interval=0.2,
        timeout=60,
    )
    Sensor(
        task_id="defer_timeout",
        kumulos_conn_id="kumulos_secret_ok",
        user_id="never",
        deferrable=True,
        poke_interval=0.2,
        timeout=1,
    )
"""
)


def _read_from_another_process(path: Path) -> bytes:
    """The file's bytes, read by a child process.

    This process holds SQLite connections to the metadata DB, and closing any descriptor of that file
    here would drop SQLite's POSIX locks for the whole process, letting another process corrupt it.
    """
    return subprocess.run(["cat", str(path)], check=True, capture_output=True).stdout


def forbidden() -> dict[str, str]:
    """Every form of the key a leak could take: as is, its random part, Basic-auth encodings."""
    return {
        "server key": SECRET,
        "random part of the key": UNIQUE,
        "Basic credentials": base64.b64encode(f"{API_KEY}:{SECRET}".encode()).decode(),
        "base64 of the key": base64.b64encode(SECRET.encode()).decode(),
        "credentials pair": f"{API_KEY}:{SECRET}",
    }


def leaks(where: str, text: str | bytes) -> list[str]:
    """``where: form`` for each forbidden form found in ``text``."""
    data = text.encode("utf-8", "replace") if isinstance(text, str) else text
    return [f"{where}: {name}" for name, form in forbidden().items() if form.encode() in data]


def _table_rows(table: str) -> int:
    from airflow.utils.session import create_session
    from sqlalchemy import text

    with create_session() as session:
        return int(session.execute(text(f"SELECT COUNT(*) FROM {table}")).scalar_one())


@pytest.mark.slow
def test_the_server_key_appears_nowhere(
    dag_runner: Any,
    airflow_home: Path,
    emulator_factory: Callable[..., KumulosEmulator],
    connect: Callable[..., str],
    tmp_path: Path,
    capfd: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
    figures: Figures,
) -> None:
    watch = Stopwatch()
    caplog.set_level(logging.DEBUG)
    ok = emulator_factory(users=20, api_key=API_KEY, server_key=SECRET)
    ok.reject_users({"reject-me": (422, {"errors": {"attributes": ["is invalid"]}})})
    wrong_key = emulator_factory(users=20, api_key=API_KEY, server_key="a-different-key")
    failing = emulator_factory(users=20, api_key=API_KEY, server_key=SECRET)
    failing.set_fault_rates(error_5xx=1.0)
    slow = emulator_factory(users=20, api_key=API_KEY, server_key=SECRET, latency=1.0)
    defer_401 = emulator_factory(users=20, api_key=API_KEY, server_key=SECRET)
    defer_401.script_faults([Fault.status_code(404), Fault.status_code(401)])
    connect(ok, "kumulos_secret_ok", **FAST)
    connect(wrong_key, "kumulos_secret_401", password=SECRET, **FAST)  # the server expects another key
    connect(failing, "kumulos_secret_5xx", **FAST)
    connect(slow, "kumulos_secret_timeout", **FAST, timeout=0.2)
    connect(defer_401, "kumulos_secret_defer_401", **FAST)
    existing = ok.user_ids()[0]
    for emulator in (wrong_key, failing, slow):
        assert existing in emulator.user_ids()  # same seed: the same users everywhere
    failures = tmp_path / "failures.jsonl"
    waiter = appear_after_first_look(ok, "appears-later", {"appeared": True})

    run = dag_runner.run(
        recording_dag(failures, DAG.format(existing=existing, folder=str(tmp_path))), "reliability_secrets"
    )
    waiter.join(timeout=5)

    states = dag_runner.states(run)
    # Every failure path fails its task: a sensor waits through 5xx and timeouts, then times out.
    expected_failures = {
        f"{op}_{kind}" for op in ("export", "set", "delete", "poke") for kind in ("401", "5xx", "timeout")
    }
    expected_failures |= {"set_422", "defer_401", "defer_timeout"}
    assert {task for task, state in states.items() if state == "failed"} == expected_failures
    rows = list(failed_tasks(failures).values())
    assert {row["task"] for row in rows} == expected_failures
    assert {row["type"] for row in rows} >= {
        "KumulosAuthError",
        "KumulosServerError",
        "KumulosTransportError",
    }
    assert dag_runner.xcom(run, "defer_ok") == {"appeared": True}
    assert len(dag_runner.xcom(run, "export_to_xcom")) >= 20  # plus users other tasks created first

    # The search itself works: the key does travel on the wire, Basic-encoded, and is recognised there.
    wire = next(entry.headers["Authorization"] for entry in ok.requests)
    assert leaks("wire", wire) == ["wire: Basic credentials"]
    found: list[str] = []
    output = capfd.readouterr()
    task_log = output.out + output.err
    assert "Kumulos export finished" in task_log and "returned HTTP 401" in task_log, (
        "the task log was captured"
    )
    found += leaks("task log (process output)", task_log)
    found += leaks("Python log records", caplog.text)
    found += leaks("task exceptions", failures.read_text())
    for path in sorted(airflow_home.rglob("*")):
        if path.is_file():  # logs, the metadata DB (with any WAL), configuration, DAG files
            found += leaks(str(path.relative_to(airflow_home)), _read_from_another_process(path))
    for path in sorted(tmp_path.rglob("*")):
        if path.is_file():  # exports and failures files
            found += leaks(path.name, path.read_bytes())
    serialized = KumulosUserTrigger("someone", "kumulos_secret_ok", attributes_match={"a": 1}).serialize()
    found += leaks("trigger.serialize()", json.dumps(serialized))
    assert found == []
    tables = ("xcom", "rendered_task_instance_fields", "task_instance", "trigger")
    searched = {table: _table_rows(table) for table in tables}
    assert all(searched.values()), f"the searched tables hold this run's data: {searched}"
    figures.record(
        "5 secrets",
        tasks=len(states),
        failure_paths=len(expected_failures),
        task_log_bytes=len(task_log),
        files_searched=sum(1 for path in airflow_home.rglob("*") if path.is_file()),
        db_rows_searched=sum(searched.values()),
        leaks=len(found),
        duration_s=watch.seconds,
    )
