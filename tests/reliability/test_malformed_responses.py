"""Scenario 7, malformed responses: each is a typed, retried error, never a crash or a silent wrong answer.

Page 3 of an export is answered with a truncated body, an HTML error page with status 200, a page
without ``users`` or ``totalUsers``, or fields of the wrong type (``totalUsers`` as a string,
``users`` not a list, users that are not objects). In one real DAG run, each case runs twice, each
against its own emulator: once for a single bad answer, which is retried and the export completes
exactly; once for a bad answer on every attempt, which fails the task with ``KumulosResponseError``
after ``max_retries + 1`` attempts (counted in the emulator's log) and publishes nothing. The
attribute endpoints get the same treatment through the hook and the bulk operator.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from reliability_support import Figures, Stopwatch, failed_tasks, has_task_state_store, recording_dag

from airflow_provider_kumulos._storage import TEMP_PREFIX
from airflow_provider_kumulos.exceptions import KumulosResponseError
from airflow_provider_kumulos.hooks.kumulos import KumulosCRMHook
from airflow_provider_kumulos.testing.emulator import Fault, KumulosEmulator

MAX_RETRIES = 2
RETRIES = {"max_retries": MAX_RETRIES, "backoff_base": 0.01, "backoff_max": 0.05}
PASS = Fault.slow(0)  # answers normally: used to let the first pages through
BAD_PAGE = 3
CASES: dict[str, Fault] = {
    "truncated": Fault.truncated(),
    "html_200": Fault.non_json(),
    "no_users": Fault.missing_field("users"),
    "no_total": Fault.missing_field("totalUsers"),
    "total_as_string": Fault.replaced_field("totalUsers", "50"),
    "users_not_a_list": Fault.replaced_field("users", {"identifier": "x"}),
    "users_not_objects": Fault.replaced_field("users", ["user-1", 2]),
}

DAG = """
from datetime import datetime

from airflow.sdk import DAG
from airflow_provider_kumulos.operators.kumulos import ExportUsersOperator, SetAttributesOperator

Export, Set = recorded(ExportUsersOperator), recorded(SetAttributesOperator)

with DAG("reliability_malformed", schedule=None, start_date=datetime(2026, 1, 1)):
    # One request at a time, so that the third request and its retries are page 3.
    for task in {exports!r}:
        Export(
            task_id=task,
            kumulos_conn_id="kumulos_" + task,
            output_path={folder!r} + "/" + task + ".jsonl",
            page_size=10,
            max_concurrency=1,
        )
    Export(
        task_id="parts_always",
        kumulos_conn_id="kumulos_parts_always",
        output_path={folder!r} + "/parts",
        page_size=10,
        split_every=10,
        max_concurrency=1,
    )
    Set(
        task_id="set_bad_answer",
        kumulos_conn_id="kumulos_set_bad_answer",
        records={records!r},
        max_concurrency=1,
        max_failures=1,
        failures_path={folder!r} + "/set-failures.jsonl",
    )
"""


def _page_attempts(emulator: KumulosEmulator) -> dict[int, int]:
    attempts: dict[int, int] = {}
    for entry in emulator.requests:
        if entry.path == "/v2/users":
            page = int(entry.query["currentPage"][0])
            attempts[page] = attempts.get(page, 0) + 1
    return attempts


@pytest.mark.slow
def test_malformed_pages_are_retried_then_fail_without_publishing(
    dag_runner: Any,
    emulator_factory: Callable[..., KumulosEmulator],
    connect: Callable[..., str],
    tmp_path: Path,
    figures: Figures,
) -> None:
    watch = Stopwatch()
    emulators: dict[str, KumulosEmulator] = {}
    for name, fault in CASES.items():
        for task, repeats in ((f"{name}_once", 1), (f"{name}_always", MAX_RETRIES + 1)):
            emulator = emulators[task] = emulator_factory(users=50)
            connect(emulator, f"kumulos_{task}", **RETRIES)
            emulator.script_faults([PASS] * (BAD_PAGE - 1) + [fault] * repeats, path_prefix="/v2/users")
    parts = emulators["parts_always"] = emulator_factory(users=50)
    connect(parts, "kumulos_parts_always", **RETRIES)
    parts.script_faults([PASS] * (BAD_PAGE - 1) + [Fault.truncated()] * (MAX_RETRIES + 1))
    setter = emulators["set_bad_answer"] = emulator_factory(users=50)
    connect(setter, "kumulos_set_bad_answer", **RETRIES)
    setter.script_faults([PASS] * 4 + [Fault.replaced_field("attributes", "not an object")] * 3, method="PUT")
    records = [{"identifier": f"malformed-{n}", "attributes": {"n": n}} for n in range(10)]
    exports = sorted(
        task for task in emulators if task.endswith(("_once", "_always")) and task != "parts_always"
    )
    failures = tmp_path / "failed-tasks.jsonl"
    source = recording_dag(failures, DAG.format(exports=exports, folder=str(tmp_path), records=records))

    run = dag_runner.run(source, "reliability_malformed")

    states = dag_runner.states(run)
    failed = {task: row["type"] for task, row in failed_tasks(failures).items()}
    assert failed == {task: "KumulosResponseError" for task in [*exports, "parts_always"] if "always" in task}
    for task in exports:
        attempts = _page_attempts(emulators[task])
        output = tmp_path / f"{task}.jsonl"
        if task.endswith("_once"):
            assert states[task] == "success"
            assert attempts == {1: 1, 2: 1, 3: 2, 4: 1, 5: 1}, task
            exported = [json.loads(line) for line in output.read_text().splitlines()]
            assert exported == emulators[task].users(), task
        else:
            assert states[task] == "failed"
            assert attempts == {1: 1, 2: 1, 3: MAX_RETRIES + 1}, task  # and never a page past the bad one
            assert not output.exists(), f"{task} published a file after failing"
    assert not [path.name for path in tmp_path.iterdir() if path.name.startswith(TEMP_PREFIX)]
    assert not (tmp_path / "parts" / "_manifest.json").exists()
    # Finished parts stay only for a retry to resume from (task state store, Airflow 3.3+); without
    # one, nothing is left, not even the folder the export made.
    if has_task_state_store():
        kept = ["part-00000.jsonl", "part-00001.jsonl"]
        assert sorted(path.name for path in (tmp_path / "parts").iterdir()) == kept
    else:
        assert not (tmp_path / "parts").exists()

    summary = dag_runner.xcom(run, "set_bad_answer")
    assert states["set_bad_answer"] == "success"
    assert (summary["total"], summary["succeeded"], summary["failed"]) == (10, 9, 1)
    (failure,) = [json.loads(line) for line in (tmp_path / "set-failures.jsonl").read_text().splitlines()]
    assert failure["identifier"] == "malformed-4" and failure["error"]["type"] == "KumulosResponseError"
    assert [entry.identifier for entry in setter.requests if entry.fault].count("malformed-4") == 3
    figures.record(
        "7 malformed responses",
        cases=len(CASES),
        faults_injected=sum(
            count
            for emu in emulators.values()
            for kind, count in emu.stats()["faults"].items()
            if kind != "slow"
        ),
        tasks_recovered=sum(states[task] == "success" for task in exports),
        tasks_failed_typed=len(failed),
        files_published_after_failure=0,
        duration_s=watch.seconds,
    )


@pytest.mark.parametrize(
    ("fault", "call"),
    [
        (Fault.replaced_field("attributes", ["a", "list"]), "set"),
        (Fault.replaced_field("attributes", "text"), "set"),
        (Fault.truncated(), "set"),
        (Fault.non_json(), "get"),
        (Fault.truncated(), "get"),
    ],
    ids=["put-attributes-list", "put-attributes-string", "put-truncated", "get-html", "get-truncated"],
)
def test_malformed_attribute_answers_are_retried_response_errors(
    emulator_factory: Callable[..., KumulosEmulator], connect: Callable[..., str], fault: Fault, call: str
) -> None:
    emulator = emulator_factory(users=5)
    hook = KumulosCRMHook(connect(emulator, "kumulos_malformed_attributes", **RETRIES))
    user_id = emulator.user_ids()[0]
    emulator.script_faults([fault] * (MAX_RETRIES + 1))
    with pytest.raises(KumulosResponseError) as caught:
        if call == "set":
            hook.set_attributes(user_id, {"k": "v"})
        else:
            hook.get_attributes(user_id)
    assert caught.value.status == 200 and caught.value.operation == f"{call} attributes"
    assert [entry.fault for entry in emulator.requests] == [fault.kind] * (MAX_RETRIES + 1)
    assert hook.stats.retries == MAX_RETRIES


def test_an_attribute_object_that_is_not_an_object_is_refused(
    emulator_factory: Callable[..., KumulosEmulator], connect: Callable[..., str]
) -> None:
    """GET answering a JSON list (a proxy's or a bug's doing) is an error, not an attribute set."""
    emulator = emulator_factory(users=5)
    hook = KumulosCRMHook(connect(emulator, "kumulos_malformed_attributes", **RETRIES))
    emulator.reject_users({"listed": (200, ["not", "attributes"]), "numbered": (200, 42)})
    for user_id in ("listed", "numbered"):
        with pytest.raises(KumulosResponseError, match="expected an object"):
            hook.get_attributes(user_id)
    assert len(emulator.requests) == 2 * (MAX_RETRIES + 1)
