"""KumulosUserSensor in real DAG runs (``dag.test()``): poke, reschedule and deferrable modes.

In this Airflow version ``dag.test()`` runs a deferred task's trigger in-process and resumes the
task with its event, so the deferrable path is exercised end to end. A failure callback in each
DAG records the exception a task failed with, so tests can check its class.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_kumulos.testing.emulator import Fault, KumulosEmulator

DAG_TEMPLATE = """
import json
from datetime import datetime

from airflow.sdk import DAG
from airflow_provider_kumulos.sensors.kumulos import KumulosUserSensor


def record_failure(context):
    with open({failures!r}, "a") as out:
        error = context["exception"]
        out.write(json.dumps({{"task": context["ti"].task_id, "error": type(error).__name__}}) + "\\n")


with DAG(
    {dag_id!r},
    schedule=None,
    start_date=datetime(2026, 1, 1),
    params={params!r},
    default_args={{"on_failure_callback": record_failure}},
):
{tasks}
"""


@pytest.fixture
def failures(tmp_path: Path) -> Path:
    """Where the DAG's failure callback writes one JSON line per failed task."""
    return tmp_path / "failures.jsonl"


def dag_source(dag_id: str, failures: Path, tasks: list[str], params: dict[str, Any] | None = None) -> str:
    body = "\n".join(f"    KumulosUserSensor({task})" for task in tasks)
    return DAG_TEMPLATE.format(dag_id=dag_id, failures=str(failures), params=params or {}, tasks=body)


def failed_with(failures: Path) -> dict[str, str]:
    """``task_id -> exception class name`` for every task that failed."""
    if not failures.exists():
        return {}
    return {row["task"]: row["error"] for row in map(json.loads, failures.read_text().splitlines())}


def test_poke_mode_with_templated_fields(
    dag_runner: Any, emulator: KumulosEmulator, appear_later: Callable[..., None], failures: Path
) -> None:
    appear_later("templated-user", {"tier": "gold", "n": 1})
    source = dag_source(
        "kumulos_sensor_poke",
        failures,
        [
            "task_id='wait', user_id='{{ params.uid }}', attributes_match={'tier': '{{ params.tier }}'}, "
            "kumulos_conn_id='{{ params.conn }}', poke_interval=0.2, timeout=60"
        ],
        params={"uid": "templated-user", "tier": "gold", "conn": "kumulos_default"},
    )
    run = dag_runner.run(source, "kumulos_sensor_poke")
    assert dag_runner.states(run) == {"wait": "success"}
    assert dag_runner.xcom(run, "wait") == {"tier": "gold", "n": 1}
    assert {r.identifier for r in emulator.requests} == {"templated-user"}
    assert [r.status for r in emulator.requests][-1] == 200 and len(emulator.requests) >= 2


def test_reschedule_mode(
    dag_runner: Any, emulator: KumulosEmulator, appear_later: Callable[..., None], failures: Path
) -> None:
    from airflow.models.taskreschedule import TaskReschedule
    from airflow.utils.session import create_session

    appear_later("rescheduled-user", {"ready": True}, delay=1.0)
    source = dag_source(
        "kumulos_sensor_reschedule",
        failures,
        ["task_id='wait', user_id='rescheduled-user', poke_interval=1, timeout=60, mode='reschedule'"],
    )
    run = dag_runner.run(source, "kumulos_sensor_reschedule")
    assert dag_runner.states(run) == {"wait": "success"}
    assert dag_runner.xcom(run, "wait") == {"ready": True}
    (ti,) = run.get_task_instances()
    with create_session() as session:
        reschedules = session.query(TaskReschedule).filter(TaskReschedule.ti_id == ti.id).count()
    assert reschedules >= 1
    statuses = [r.status for r in emulator.requests]
    assert statuses[-1] == 200 and set(statuses[:-1]) == {404}


def test_deferrable_mode_completes_through_the_trigger(
    dag_runner: Any, emulator: KumulosEmulator, appear_later: Callable[..., None], failures: Path
) -> None:
    appear_later("deferred-user", {"onboarded": True}, after=2)  # after the trigger's first check
    source = dag_source(
        "kumulos_sensor_deferrable",
        failures,
        [
            "task_id='wait', user_id='deferred-user', attributes_match={'onboarded': True}, "
            "poke_interval=0.2, timeout=60, deferrable=True"
        ],
    )
    run = dag_runner.run(source, "kumulos_sensor_deferrable")
    assert dag_runner.states(run) == {"wait": "success"}
    assert dag_runner.xcom(run, "wait") == {"onboarded": True}
    agents = [r.headers["User-Agent"].split("/")[0] for r in emulator.requests]
    # One poke by the worker (requests), the trigger's polls (httpx) until the user appeared, then
    # the resumed task reads the attributes it returns (the trigger's event carries none).
    assert agents[0] == agents[-1] == "python-requests"
    assert set(agents[1:-1]) == {"python-httpx"} and len(agents) >= 4


def test_deferrable_timeout_fails_with_a_sensor_timeout(
    dag_runner: Any, emulator: KumulosEmulator, failures: Path
) -> None:
    source = dag_source(
        "kumulos_sensor_deferrable_timeout",
        failures,
        ["task_id='wait', user_id='never', poke_interval=0.2, timeout=1.5, deferrable=True"],
    )
    started = time.monotonic()
    run = dag_runner.run(source, "kumulos_sensor_deferrable_timeout")
    assert dag_runner.states(run) == {"wait": "failed"}
    assert failed_with(failures) == {"wait": "AirflowSensorTimeout"}
    assert time.monotonic() - started < 60
    assert {r.status for r in emulator.requests} == {404}


def test_bad_credentials_fail_fast_in_every_mode(
    dag_runner: Any, connect: Callable[..., KumulosEmulator], failures: Path
) -> None:
    emulator = connect(password="revoked-server-key")
    common = "user_id='anyone', poke_interval=120, timeout=600"
    source = dag_source(
        "kumulos_sensor_bad_credentials",
        failures,
        [
            f"task_id='poke', {common}",
            f"task_id='reschedule', {common}, mode='reschedule'",
            f"task_id='deferrable', {common}, deferrable=True",
        ],
    )
    started = time.monotonic()
    run = dag_runner.run(source, "kumulos_sensor_bad_credentials")
    # Far below one poke interval (and the timeout): nobody waited for a second look.
    assert time.monotonic() - started < 60
    assert dag_runner.states(run) == {"poke": "failed", "reschedule": "failed", "deferrable": "failed"}
    assert failed_with(failures) == {
        "poke": "KumulosAuthError",
        "reschedule": "KumulosAuthError",
        "deferrable": "KumulosAuthError",
    }
    assert [r.status for r in emulator.requests] == [401, 401, 401]


def test_auth_failure_inside_the_trigger_fails_the_task_with_the_same_error(
    dag_runner: Any, emulator: KumulosEmulator, failures: Path
) -> None:
    emulator.script_faults([Fault.status_code(404), Fault.status_code(401)])
    source = dag_source(
        "kumulos_sensor_trigger_auth",
        failures,
        ["task_id='wait', user_id='anyone', poke_interval=0.2, timeout=600, deferrable=True"],
    )
    run = dag_runner.run(source, "kumulos_sensor_trigger_auth")
    assert dag_runner.states(run) == {"wait": "failed"}
    assert failed_with(failures) == {"wait": "KumulosAuthError"}
    assert [r.headers["User-Agent"].split("/")[0] for r in emulator.requests] == [
        "python-requests",
        "python-httpx",
    ]


def test_undefined_connection_fails_fast_with_a_config_error(
    dag_runner: Any, emulator: KumulosEmulator, failures: Path
) -> None:
    common = "user_id='anyone', kumulos_conn_id='kumulos_defined_nowhere', poke_interval=120, timeout=600"
    source = dag_source(
        "kumulos_sensor_undefined_connection",
        failures,
        [f"task_id='poke', {common}", f"task_id='deferrable', {common}, deferrable=True"],
    )
    started = time.monotonic()
    run = dag_runner.run(source, "kumulos_sensor_undefined_connection")
    assert time.monotonic() - started < 60
    assert dag_runner.states(run) == {"poke": "failed", "deferrable": "failed"}
    assert failed_with(failures) == {"poke": "KumulosConfigError", "deferrable": "KumulosConfigError"}
    assert emulator.requests == []
