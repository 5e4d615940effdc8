"""Real DAG runs (dag.test): templated paths, failures, retries that resume, and a partitioned export."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from test_export_support import assert_export_matches, leftovers

from airflow_provider_kumulos.testing.emulator import Fault, KumulosEmulator

LOGICAL_DATE = datetime(2024, 5, 1, tzinfo=timezone.utc)

HEADER = """
import pendulum
from airflow.sdk import DAG, Asset, task
from airflow_provider_kumulos.operators.kumulos import ExportUsersOperator, plan_export_partitions
from airflow_provider_kumulos.operators.export import WriteExportManifestOperator

HOOK = {{"backoff_base": 0.01, "backoff_max": 0.05, "max_retries": 1}}
OUT = {out!r}
"""


def _source(out: Path, body: str) -> str:
    return HEADER.format(out=str(out)) + body


def test_output_path_templated_with_ds(
    dag_runner: Any, kumulos_connection: KumulosEmulator, tmp_path: Path
) -> None:
    source = _source(
        tmp_path,
        """
with DAG("export_ds", schedule=None, start_date=pendulum.datetime(2024, 1, 1)) as dag:
    ExportUsersOperator(
        task_id="export",
        output_path=OUT + "/{{ ds }}/users.jsonl.gz",
        compression="gzip",
        page_size=12,
        hook_params=HOOK,
        outlets=[Asset("file://" + OUT + "/users")],
    )
""",
    )
    run = dag_runner.run(source, "export_ds", logical_date=LOGICAL_DATE)
    assert dag_runner.states(run) == {"export": "success"}
    path = tmp_path / "2024-05-01" / "users.jsonl.gz"
    assert_export_matches(path.read_bytes(), kumulos_connection.users(), "jsonl", "gzip")
    summary = dag_runner.xcom(run, "export")
    assert summary["path"] == str(path)
    assert summary["users_written"] == 50 and summary["pages_fetched"] == 5
    assert "test-server-key" not in json.dumps(summary)


def test_failed_task_publishes_nothing(
    dag_runner: Any, kumulos_connection: KumulosEmulator, tmp_path: Path
) -> None:
    kumulos_connection.script_faults([Fault("status", status=401)], page=2)
    source = _source(
        tmp_path,
        """
with DAG("export_fails", schedule=None, start_date=pendulum.datetime(2024, 1, 1)) as dag:
    ExportUsersOperator(task_id="export", output_path=OUT + "/users.csv", format="csv", page_size=10, hook_params=HOOK)
""",
    )
    run = dag_runner.run(source, "export_fails", logical_date=LOGICAL_DATE)
    assert dag_runner.states(run) == {"export": "failed"}
    assert leftovers(tmp_path) == []


def test_retry_resumes_from_the_task_state_store(
    dag_runner: Any, kumulos_connection: KumulosEmulator, tmp_path: Path
) -> None:
    """First try dies on page 4 after two parts; Airflow retries and the second try fetches pages 4-5 only."""
    try:
        from airflow.sdk.execution_time.context import TaskStateStoreAccessor  # noqa: F401
    except ImportError:
        pytest.skip("export resume needs Airflow 3.3's task state store; before it a retry starts over")
    kumulos_connection.script_faults([Fault("status", status=401)], page=4)
    source = _source(
        tmp_path,
        """
from datetime import timedelta

with DAG("export_resume", schedule=None, start_date=pendulum.datetime(2024, 1, 1)) as dag:
    ExportUsersOperator(
        task_id="export",
        output_path=OUT + "/parts",
        page_size=10,
        split_every=15,
        hook_params=HOOK,
        retries=1,
        retry_delay=timedelta(seconds=0),
    )
""",
    )
    run = dag_runner.run(source, "export_resume", logical_date=LOGICAL_DATE)
    assert dag_runner.states(run) == {"export": "success"}
    pages = [int(r.query["currentPage"][0]) for r in kumulos_connection.requests if r.path == "/v2/users"]
    # The first try had page 5 on its way when page 4 failed; the retry fetched pages 4 and 5 only.
    assert sorted(pages) == [1, 2, 3, 4, 4, 5, 5]
    summary = dag_runner.xcom(run, "export")
    assert summary["resumed_parts"] == 2 and summary["users_written"] == 50
    out = tmp_path / "parts"
    manifest = json.loads((out / "_manifest.json").read_text())
    data = b"".join((out / part["name"]).read_bytes() for part in manifest["parts"])
    assert_export_matches(data, kumulos_connection.users(), "jsonl")


def test_partitioned_export_with_mapped_tasks(
    dag_runner: Any, kumulos_connection: KumulosEmulator, tmp_path: Path
) -> None:
    source = _source(
        tmp_path,
        """
with DAG("export_partitions", schedule=None, start_date=pendulum.datetime(2024, 1, 1)) as dag:

    @task
    def plan(output_path: str) -> list[dict]:
        return plan_export_partitions(partitions=3, page_size=7, output_path=output_path, suffix=".jsonl")

    export = ExportUsersOperator.partial(task_id="export", hook_params=HOOK).expand_kwargs(
        plan(OUT + "/{{ ds }}")
    )
    WriteExportManifestOperator(
        task_id="manifest", summaries=export.output, output_path=OUT + "/{{ ds }}/_manifest.json"
    )
""",
    )
    run = dag_runner.run(source, "export_partitions", logical_date=LOGICAL_DATE)
    assert dag_runner.states(run) == {
        "plan": "success",
        "export[0]": "success",
        "export[1]": "success",
        "export[2]": "success",
        "manifest": "success",
    }
    count_requests = [r for r in kumulos_connection.requests if r.query.get("numberPerPage") == ["1"]]
    assert len(count_requests) == 1
    folder = tmp_path / "2024-05-01"
    manifest = json.loads((folder / "_manifest.json").read_text())
    windows = [(entry["start_page"], entry["end_page"]) for entry in manifest["partitions"]]
    assert windows == [(1, 3), (4, 6), (7, None)]
    assert manifest["summary"]["users_written"] == 50
    assert manifest["summary"]["cross_partition_duplicates"] == 0
    assert manifest["summary"]["page_gaps"] == []
    data = b"".join(
        Path(f["path"].removeprefix("file://")).read_bytes()
        for e in manifest["partitions"]
        for f in e["files"]
    )
    assert_export_matches(data, kumulos_connection.users(), "jsonl")
    assert dag_runner.xcom(run, "manifest")["partitions"] == 3
