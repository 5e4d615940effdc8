"""OpenLineage: the datasets Kumulos tasks report, their naming, schemas and statistics, and their cost.

Operators run for real against the emulator (and moto's S3 for ``s3://`` paths), then hand their
lineage to the OpenLineage provider the way its listener asks for it. One DAG run goes through the
provider's listener itself, with a file transport, to show the events carry the datasets.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_kumulos._lineage import kumulos_users, storage_dataset
from airflow_provider_kumulos.exceptions import KumulosAuthError, KumulosError
from airflow_provider_kumulos.hooks._config import ClientConfig
from airflow_provider_kumulos.operators.attributes import DeleteAttributesOperator, SetAttributesOperator
from airflow_provider_kumulos.operators.export import ExportUsersOperator
from airflow_provider_kumulos.testing.emulator import Fault, KumulosEmulator

pytest.importorskip("airflow.providers.openlineage", reason="lineage needs the OpenLineage provider")

USER_KEYS = [
    "identifier",
    "attributes",
    "firstActive",
    "lastActive",
    "inAppEnabled",
    "createdAt",
    "updatedAt",
    "installs",
]


def _app(emulator: KumulosEmulator) -> str:
    return f"kumulos://127.0.0.1:{emulator.port}/{hashlib.sha256(emulator.api_key.encode()).hexdigest()[:16]}"


def _fields(dataset: Any) -> list[tuple[str, str]]:
    return [(field.name, field.type) for field in dataset.facets["schema"].fields]


def _statistics(dataset: Any) -> tuple[int, int | None]:
    facet = dataset.outputFacets["outputStatistics"]
    return facet.rowCount, facet.size


def _as_json(lineage: Any) -> str:
    from openlineage.client.serde import Serde

    return json.dumps([json.loads(Serde.to_json(dataset)) for dataset in lineage.inputs + lineage.outputs])


class XComRecorder:
    """The ``ti`` an attribute operator pushes its summary to before failing."""

    def __init__(self) -> None:
        self.pushed: dict[str, Any] = {}

    def xcom_push(self, key: str, value: Any) -> None:
        self.pushed[key] = value


def test_a_jsonl_export_reports_the_apps_users_in_and_the_file_out(
    kumulos_connection: KumulosEmulator, tmp_path: Path
) -> None:
    path = tmp_path / "out" / "users.jsonl"
    operator = ExportUsersOperator(task_id="export", output_path=str(path), page_size=20)
    summary = operator.execute({})
    lineage = operator.get_openlineage_facets_on_complete(None)

    (source,) = lineage.inputs
    assert (source.namespace, source.name) == (_app(kumulos_connection), "users")
    assert [name for name, _ in _fields(source)] == USER_KEYS
    (written,) = lineage.outputs
    assert (written.namespace, written.name) == ("file", str(path))
    first = json.loads(path.read_bytes().splitlines()[0])
    assert [name for name, _ in _fields(written)] == list(first)
    assert dict(_fields(written))["inAppEnabled"] == "boolean"
    lines = len(path.read_bytes().splitlines())
    assert (
        _statistics(written) == (lines, path.stat().st_size) == (summary["users_written"], summary["bytes"])
    )
    text = _as_json(lineage)
    assert kumulos_connection.server_key not in text and kumulos_connection.api_key not in text


def test_csv_and_parquet_exports_report_the_columns_they_wrote(
    kumulos_connection: KumulosEmulator, tmp_path: Path
) -> None:
    import pyarrow.parquet as pq

    csv_path, parquet_path = tmp_path / "users.csv", tmp_path / "users.parquet"
    as_csv = ExportUsersOperator(
        task_id="csv", output_path=str(csv_path), format="csv", include_installs=False
    )
    as_parquet = ExportUsersOperator(
        task_id="parquet", output_path=str(parquet_path), format="parquet", fields=["lastActive"]
    )
    as_csv.execute({})
    as_parquet.execute({})

    (written,) = as_csv.get_openlineage_facets_on_complete(None).outputs
    header = next(csv.reader(io.StringIO(csv_path.read_text())))
    assert _fields(written) == [(name, "string") for name in header]
    assert "installs" not in header and any(name.startswith("attr.") for name in header)
    rows = len(csv_path.read_text().splitlines()) - 1
    assert _statistics(written) == (rows, csv_path.stat().st_size) == (50, csv_path.stat().st_size)

    (written,) = as_parquet.get_openlineage_facets_on_complete(None).outputs
    schema = pq.read_schema(parquet_path)
    assert _fields(written) == [(field.name, str(field.type)) for field in schema]
    assert _fields(written) == [("identifier", "string"), ("lastActive", "timestamp[us, tz=UTC]")]
    assert _statistics(written) == (
        pq.ParquetFile(parquet_path).metadata.num_rows,
        parquet_path.stat().st_size,
    )


@pytest.mark.s3
def test_s3_outputs_are_named_by_bucket_and_key_without_the_connection_id(
    kumulos_connection: KumulosEmulator, s3_bucket: str, s3_client: Any
) -> None:
    single = ExportUsersOperator(
        task_id="one", output_path=f"s3://aws_default@{s3_bucket}/exports/users.jsonl"
    )
    parted = ExportUsersOperator(
        task_id="parts", output_path=f"s3://aws_default@{s3_bucket}/exports/parts/", split_every=15
    )
    single.execute({})
    summary = parted.execute({})

    (one,) = single.get_openlineage_facets_on_complete(None).outputs
    size = s3_client.head_object(Bucket=s3_bucket, Key="exports/users.jsonl")["ContentLength"]
    assert (one.namespace, one.name, _statistics(one)) == (
        f"s3://{s3_bucket}",
        "exports/users.jsonl",
        (50, size),
    )
    (folder,) = parted.get_openlineage_facets_on_complete(None).outputs
    listed = s3_client.list_objects_v2(Bucket=s3_bucket, Prefix="exports/parts/part-")["Contents"]
    assert (folder.namespace, folder.name) == (f"s3://{s3_bucket}", "exports/parts")
    assert (
        _statistics(folder) == (50, sum(item["Size"] for item in listed))
        and len(listed) == summary["parts"] == 4
    )


def test_an_xcom_export_reads_users_and_writes_no_dataset(kumulos_connection: KumulosEmulator) -> None:
    operator = ExportUsersOperator(task_id="export")
    assert len(operator.execute({})) == 50
    lineage = operator.get_openlineage_facets_on_complete(None)
    assert [(d.namespace, d.name) for d in lineage.inputs] == [(_app(kumulos_connection), "users")]
    assert lineage.outputs == []


def test_a_failed_export_reports_no_lineage(kumulos_connection: KumulosEmulator, tmp_path: Path) -> None:
    kumulos_connection.script_faults([Fault("status", status=401)])
    operator = ExportUsersOperator(task_id="export", output_path=str(tmp_path / "u.jsonl"))
    with pytest.raises(KumulosAuthError):
        operator.execute({})
    assert operator.get_openlineage_facets_on_complete(None) is None


@pytest.mark.s3
def test_a_bulk_write_reports_its_source_in_and_the_users_it_wrote_out(
    kumulos_connection: KumulosEmulator, s3_bucket: str, s3_client: Any
) -> None:
    body = "".join(json.dumps({"identifier": f"s{i}", "attributes": {"i": i}}) + "\n" for i in range(12))
    s3_client.put_object(Bucket=s3_bucket, Key="in/users.jsonl", Body=body.encode())
    kumulos_connection.reject_users({"s5": (422, {"errors": {}})})
    operator = SetAttributesOperator(
        task_id="set", source_path=f"s3://aws_default@{s3_bucket}/in/users.jsonl", max_failures=1
    )
    summary = operator.execute({})
    lineage = operator.get_openlineage_facets_on_complete(None)
    assert [(d.namespace, d.name) for d in lineage.inputs] == [(f"s3://{s3_bucket}", "in/users.jsonl")]
    (users,) = lineage.outputs
    assert (users.namespace, users.name) == (_app(kumulos_connection), "users")
    assert _statistics(users) == (summary["succeeded"], None) == (11, None)


def test_a_bulk_write_that_fails_still_reports_what_it_applied(
    kumulos_connection: KumulosEmulator, tmp_path: Path
) -> None:
    source = tmp_path / "ids.txt"
    source.write_text("a\nb\nc\n")
    kumulos_connection.add_user("a")
    kumulos_connection.reject_users({"c": (422, {"errors": {}})})
    operator = DeleteAttributesOperator(task_id="delete", source_path=str(source))
    with pytest.raises(KumulosError, match="1 of 3 records failed"):
        operator.execute({"ti": XComRecorder()})
    lineage = operator.get_openlineage_facets_on_complete(None)
    assert [(d.namespace, d.name) for d in lineage.inputs] == [("file", str(source))]
    (users,) = lineage.outputs
    assert _statistics(users) == (2, None), "a deleted user and a missing one (missing_ok) were applied"


def test_a_dry_run_reads_its_source_and_writes_nothing(tmp_path: Path) -> None:
    source = tmp_path / "users.jsonl"
    source.write_text('{"identifier": "a", "attributes": {"x": 1}}\n')
    operator = SetAttributesOperator(
        task_id="set", source_path=str(source), dry_run=True, kumulos_conn_id="no_such_connection"
    )
    operator.execute({})
    lineage = operator.get_openlineage_facets_on_complete(None)
    assert [(d.namespace, d.name) for d in lineage.inputs] == [("file", str(source))]
    assert lineage.outputs == []


def test_an_app_is_named_by_host_and_api_key_digest_never_by_a_secret() -> None:
    config = ClientConfig("https://CRM.kumulos.com:443", "the-api-key", "the-server-key")
    digest = hashlib.sha256(b"the-api-key").hexdigest()[:16]
    assert (kumulos_users(config).namespace, kumulos_users(config).name) == (
        f"kumulos://crm.kumulos.com/{digest}",
        "users",
    )
    proxied = ClientConfig("http://[::1]:8080/kumulos", "the-api-key", "the-server-key")
    assert kumulos_users(proxied).namespace == f"kumulos://[::1]:8080/{digest}"
    other_app = ClientConfig("https://crm.kumulos.com", "another-api-key", "the-server-key")
    assert kumulos_users(other_app).namespace != kumulos_users(config).namespace
    assert "the-server-key" not in repr(kumulos_users(config)) and "the-api-key" not in repr(
        kumulos_users(config)
    )


def test_local_paths_are_named_like_openlineage_names_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert (storage_dataset("out/users.jsonl").namespace, storage_dataset("out/users.jsonl").name) == (
        "file",
        str(tmp_path / "out" / "users.jsonl"),
    )
    assert storage_dataset(f"file://{tmp_path}/parts/").name == str(tmp_path / "parts")


IMPORT_CHECK = """
import sys
import airflow.sdk
before = set(sys.modules)
import airflow_provider_kumulos.operators.kumulos
import airflow_provider_kumulos.operators.export
import airflow_provider_kumulos.operators.attributes
added = set(sys.modules) - before
print(sorted(name for name in added if "openlineage" in name))
"""


def test_importing_the_operators_imports_nothing_of_openlineage() -> None:
    result = subprocess.run([sys.executable, "-c", IMPORT_CHECK], capture_output=True, text=True, check=True)
    assert result.stdout.strip().splitlines()[-1] == "[]"


WITHOUT_PROVIDER = """
import sys
from airflow_provider_kumulos.operators.export import ExportUsersOperator

operator = ExportUsersOperator(task_id="export", output_path=sys.argv[1])
summary = operator.execute({})


class NoOpenLineage:
    def find_spec(self, name, path=None, target=None):
        if name == "openlineage" or name.startswith(("openlineage.", "airflow.providers.openlineage")):
            raise ModuleNotFoundError(f"No module named {name!r}")
        return None


for name in [name for name in sys.modules if "openlineage" in name]:
    del sys.modules[name]
sys.meta_path.insert(0, NoOpenLineage())
print("users", summary["users_written"], "lineage", operator.get_openlineage_facets_on_complete(None))
"""


def test_without_the_provider_the_lineage_method_returns_none(
    kumulos_connection: KumulosEmulator, tmp_path: Path
) -> None:
    result = subprocess.run(
        [sys.executable, "-c", WITHOUT_PROVIDER, str(tmp_path / "users.jsonl")],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().splitlines()[-1] == "users 50 lineage None"


DAG = """
import pendulum
from airflow.sdk import DAG
from airflow_provider_kumulos.operators.attributes import SetAttributesOperator
from airflow_provider_kumulos.operators.export import ExportUsersOperator

with DAG("observability_lineage", schedule=None, start_date=pendulum.datetime(2026, 1, 1)):
    export = ExportUsersOperator(task_id="export", output_path={out!r}, format="csv")
    update = SetAttributesOperator(task_id="set", source_path={source!r})
    export >> update
"""


def test_a_dag_run_emits_openlineage_events_with_the_kumulos_datasets(
    dag_runner: Any, kumulos_emulator: KumulosEmulator, tmp_path: Path
) -> None:
    out, source, events = tmp_path / "users.csv", tmp_path / "updates.jsonl", tmp_path / "events.jsonl"
    source.write_text(
        "".join(json.dumps({"identifier": f"l{i}", "attributes": {"i": i}}) + "\n" for i in range(7))
    )
    path = dag_runner.write(DAG.format(out=str(out), source=str(source)))
    env = {
        **os.environ,
        "AIRFLOW_CONN_KUMULOS_DEFAULT": kumulos_emulator.connection_uri(),
        "AIRFLOW__OPENLINEAGE__TRANSPORT": json.dumps(
            {"type": "file", "log_file_path": str(events), "append": True}
        ),
        "AIRFLOW__OPENLINEAGE__NAMESPACE": "kumulos-tests",
        "AIRFLOW__OPENLINEAGE__EXECUTE_IN_THREAD": "True",
    }
    result = subprocess.run(
        [sys.executable, "-m", "airflow", "dags", "test", "observability_lineage", "-f", str(path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    completed = {
        event["job"]["name"]: event
        for event in map(json.loads, events.read_text().splitlines())
        if event.get("eventType") == "COMPLETE" and "job" in event
    }
    export, update = completed["observability_lineage.export"], completed["observability_lineage.set"]
    app = (_app(kumulos_emulator), "users")
    assert [(d["namespace"], d["name"]) for d in export["inputs"]] == [app]
    assert [(d["namespace"], d["name"]) for d in export["outputs"]] == [("file", str(out))]
    statistics = export["outputs"][0]["outputFacets"]["outputStatistics"]
    assert (statistics["rowCount"], statistics["size"]) == (50, out.stat().st_size)
    header = out.read_text().splitlines()[0].split(",")
    assert [field["name"] for field in export["outputs"][0]["facets"]["schema"]["fields"]] == header
    assert [(d["namespace"], d["name"]) for d in update["inputs"]] == [("file", str(source))]
    assert [(d["namespace"], d["name"]) for d in update["outputs"]] == [app]
    assert update["outputs"][0]["outputFacets"]["outputStatistics"]["rowCount"] == 7
    assert kumulos_emulator.server_key not in events.read_text()
