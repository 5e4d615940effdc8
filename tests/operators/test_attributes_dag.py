"""Real DAG runs (dag.test) of the attribute operators, fed by upstream tasks' XCom."""

from __future__ import annotations

from typing import Any

from airflow_provider_kumulos.testing.emulator import KumulosEmulator

XCOM_DAG = """
import pendulum
from airflow.sdk import dag, task

from airflow_provider_kumulos.operators.kumulos import DeleteAttributesOperator, SetAttributesOperator


@dag(dag_id="kumulos_attributes_xcom", schedule=None, start_date=pendulum.datetime(2024, 1, 1), catchup=False)
def kumulos_attributes_xcom():
    @task
    def build():
        return [{"identifier": f"dag-{i}", "attributes": {"i": i, "cohort": "spring"}} for i in range(12)]

    @task
    def obsolete():
        return ["dag-0", "dag-1", "never-existed"]

    records = build()
    written = SetAttributesOperator(task_id="write", records=records, max_concurrency=4)
    rewritten = SetAttributesOperator(
        task_id="rewrite_from_template",
        records="{{ ti.xcom_pull(task_ids='build') | tojson }}",
        merge=True,
    )
    removed = DeleteAttributesOperator(task_id="remove", user_ids=obsolete())
    records >> written >> rewritten >> removed


kumulos_attributes_xcom()
"""

FAILING_DAG = """
import pendulum
from airflow.sdk import dag, task

from airflow_provider_kumulos.operators.kumulos import SetAttributesOperator


@dag(dag_id="kumulos_attributes_failing", schedule=None, start_date=pendulum.datetime(2024, 1, 1), catchup=False)
def kumulos_attributes_failing():
    @task
    def build():
        return [{"identifier": f"f-{i}", "attributes": {"i": i}} for i in range(6)]

    written = SetAttributesOperator(task_id="write", records=build(), max_failures=1)

    @task(trigger_rule="all_done")
    def inspect(summary):
        return {"failed": summary["failed"], "ids": sorted(e["identifier"] for e in summary["first_errors"])}

    inspect(written.output)


kumulos_attributes_failing()
"""


def test_records_from_upstream_xcom_are_written_then_deleted(
    dag_runner: Any, kumulos_connection: KumulosEmulator
) -> None:
    emu = kumulos_connection
    run = dag_runner.run(XCOM_DAG, "kumulos_attributes_xcom")
    assert dag_runner.states(run) == {
        "build": "success",
        "obsolete": "success",
        "write": "success",
        "rewrite_from_template": "success",
        "remove": "success",
    }
    assert [emu.get_attributes(f"dag-{i}") for i in range(12)] == [{}, {}] + [
        {"i": i, "cohort": "spring"} for i in range(2, 12)
    ]
    written = dag_runner.xcom(run, "write")
    assert (written["total"], written["succeeded"], written["failed"], written["dry_run"]) == (
        12,
        12,
        0,
        False,
    )
    assert dag_runner.xcom(run, "rewrite_from_template")["succeeded"] == 12
    removed = dag_runner.xcom(run, "remove")
    assert (removed["succeeded"], removed["missing"], removed["failed"]) == (2, 1, 0)


def test_a_failed_bulk_task_still_hands_its_summary_downstream(
    dag_runner: Any, kumulos_connection: KumulosEmulator
) -> None:
    kumulos_connection.reject_users({"f-2": (422, {"errors": {}}), "f-4": (422, {"errors": {}})})
    run = dag_runner.run(FAILING_DAG, "kumulos_attributes_failing")
    assert dag_runner.states(run) == {"build": "success", "write": "failed", "inspect": "success"}
    summary = dag_runner.xcom(run, "write")
    assert (summary["total"], summary["succeeded"], summary["failed"]) == (6, 4, 2)
    assert dag_runner.xcom(run, "inspect") == {"failed": 2, "ids": ["f-2", "f-4"]}
