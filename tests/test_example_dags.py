"""The example DAGs parse cleanly and run to success with ``dag.test()`` against the emulator.

Each example is copied into the session's dags folder and run for real (every task executes, the
sensor's trigger runs inline); the assertions look at what users would look at: the objects
written (on moto's S3 server or a local folder) and the attributes the emulator now holds.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "example_dags"
DAG_IDS = {"kumulos_export_users", "kumulos_segment_refresh", "kumulos_onboarding", "kumulos_parallel_export"}
#: Logical date of the segment runs: the emulator's users were last active within 120 days before it.
AS_OF = datetime(2026, 11, 1, tzinfo=timezone.utc)


#: How the examples that retry declare it; failure tests turn it off.
RETRIES = '"retries": 2'


def _example(dag_runner: Any, dag_id: str, *, retries: bool = True) -> Path:
    """Copy example ``dag_id`` into the dags folder; returns its path there.

    ``retries=False`` sets its task retries to 0, so that a failure ends the run at once instead of
    waiting out the example's retry delay.
    """
    source = (EXAMPLES / f"{dag_id}.py").read_text()
    if not retries:
        assert RETRIES in source, f"{dag_id} no longer declares {RETRIES}"
        source = source.replace(RETRIES, '"retries": 0')
    return dag_runner.write(source, name=dag_id)


def _run(dag_runner: Any, dag_id: str, *, retries: bool = True, **test_kwargs: Any) -> Any:
    """Run example ``dag_id`` with ``dag.test(**test_kwargs)``; returns the DAG run."""
    return dag_runner.run(_example(dag_runner, dag_id, retries=retries), dag_id, **test_kwargs)


def _jsonl(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


@pytest.fixture
def local_output(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """``kumulos_output_base`` pointing at a fresh local folder."""
    base = tmp_path / "kumulos-output"
    monkeypatch.setenv("AIRFLOW_VAR_KUMULOS_OUTPUT_BASE", f"file://{base}")
    return base


@pytest.fixture
def s3_output(s3_bucket: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """``kumulos_output_base`` pointing at a fresh bucket on moto's S3 server."""
    monkeypatch.setenv("AIRFLOW_VAR_KUMULOS_OUTPUT_BASE", f"s3://aws_default@{s3_bucket}")
    return s3_bucket


# --- parsing ----------------------------------------------------------------------------------


def test_every_example_parses_without_import_errors(airflow_home: Path) -> None:
    try:
        from airflow.dag_processing.dagbag import DagBag
    except ImportError:  # older Airflow 3 releases
        from airflow.models.dagbag import DagBag  # type: ignore[no-redef]

    bag = DagBag(str(EXAMPLES))

    assert bag.import_errors == {}
    assert set(bag.dags) == DAG_IDS
    for dag in bag.dags.values():
        assert "kumulos" in dag.tags
        assert dag.doc_md or dag.description, f"{dag.dag_id} has no description"


#: Libraries the provider needs only while tasks run; DAG files must not import them when parsed.
HEAVY = ("requests", "tenacity", "msgspec", "httpx", "fsspec", "pyarrow", "boto3", "botocore", "s3fs")
PACKAGE = EXAMPLES.parent / "airflow_provider_kumulos"

#: Runs DAG files in a fresh interpreter and prints the heavy libraries that an ``import`` statement
#: in a DAG file or in the provider asked for. Airflow may load some of them by itself (building an
#: Asset loads every installed provider's URI handlers, boto3 included): that is not counted.
_PARSE_PROBE = """
import builtins, json, runpy
heavy, roots, asked = {heavy!r}, {roots!r}, set()
real_import = builtins.__import__
def tracing_import(name, globals=None, locals=None, fromlist=(), level=0):
    top = name.partition(".")[0]
    if level == 0 and top in heavy and str((globals or {{}}).get("__file__") or "").startswith(roots):
        asked.add(top)
    return real_import(name, globals, locals, fromlist, level)
builtins.__import__ = tracing_import
for path in {paths!r}:
    runpy.run_path(path)
print(json.dumps(sorted(asked)))
"""


def _heavy_imports_of(paths: list[Path]) -> list[str]:
    code = _PARSE_PROBE.format(
        heavy=HEAVY,
        roots=(str(EXAMPLES), str(PACKAGE), *{str(path.parent) for path in paths}),
        paths=[str(path) for path in paths],
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    return list(json.loads(result.stdout.strip().splitlines()[-1]))


def test_parsing_the_examples_imports_no_client_library(airflow_home: Path) -> None:
    """DAG files are parsed often: HTTP, retry, decoding and storage libraries load only when tasks run."""
    assert _heavy_imports_of(sorted(EXAMPLES.glob("*.py"))) == []


def test_parse_probe_detects_a_heavy_top_level_import(airflow_home: Path, tmp_path: Path) -> None:
    heavy = tmp_path / "heavy_dag.py"
    source = (EXAMPLES / "kumulos_onboarding.py").read_text()
    heavy.write_text(
        source.replace("\nfrom airflow.sdk import", "\nimport tenacity\nfrom airflow.sdk import", 1)
    )

    assert _heavy_imports_of([heavy]) == ["tenacity"]


# --- kumulos_export_users ---------------------------------------------------------------------


def test_export_users_writes_every_user_to_s3_and_emits_its_asset(
    dag_runner: Any, kumulos_connection: Any, s3_output: str, s3_client: Any
) -> None:
    dag_run = _run(dag_runner, "kumulos_export_users")

    assert dag_runner.states(dag_run) == {"export_users": "success"}
    key = f"users/ds={dag_run.logical_date:%Y-%m-%d}/users.jsonl"
    assert [item["Key"] for item in s3_client.list_objects_v2(Bucket=s3_output)["Contents"]] == [key]
    body = s3_client.get_object(Bucket=s3_output, Key=key)["Body"].read().decode()
    assert _jsonl(body) == kumulos_connection.users()
    summary = dag_runner.xcom(dag_run, "export_users")
    assert summary["users_written"] == 50
    assert summary["path"] == f"s3://aws_default@{s3_output}/{key}"
    assert _asset_events(dag_run, "kumulos_users") == 1


def test_export_users_failure_publishes_nothing(
    dag_runner: Any, kumulos_emulator: Any, local_output: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Wrong credentials fail the task before any file (or temporary file) is left behind."""
    wrong = json.loads(kumulos_emulator.connection_uri())
    wrong["password"] = "not-the-server-key"
    monkeypatch.setenv("AIRFLOW_CONN_KUMULOS_DEFAULT", json.dumps(wrong))
    dag_run = _run(dag_runner, "kumulos_export_users", retries=False)

    assert dag_runner.states(dag_run) == {"export_users": "failed"}
    assert str(dag_run.state) == "failed"
    assert [path for path in local_output.rglob("*") if path.is_file()] == []
    assert {entry.status for entry in kumulos_emulator.requests} == {401}
    assert _asset_events(dag_run, "kumulos_users") == 0


def _asset_events(dag_run: Any, asset_name: str) -> int:
    """Asset events ``dag_run`` emitted for the asset named ``asset_name``."""
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session

    with create_session() as session:
        return (
            session.query(AssetEvent)
            .join(AssetModel, AssetEvent.asset_id == AssetModel.id)
            .filter(
                AssetModel.name == asset_name,
                AssetEvent.source_dag_id == dag_run.dag_id,
                AssetEvent.source_run_id == dag_run.run_id,
            )
            .count()
        )


# --- kumulos_segment_refresh ------------------------------------------------------------------


def _expected_segment(user: dict[str, Any]) -> dict[str, Any]:
    """The segment attributes as the example documents them, computed independently."""
    last_active = user.get("lastActive")
    inactive = last_active is None or datetime.fromisoformat(last_active) < AS_OF - timedelta(days=30)
    by_os: dict[str, list[str]] = {}
    for install in user.get("installs") or []:
        by_os.setdefault(install["os"].lower(), []).append(install["lastActive"])
    ranked = sorted(by_os, key=lambda name: (len(by_os[name]), max(by_os[name])), reverse=True)
    return {
        "activity": "inactive_30d" if inactive else "active",
        "primary_platform": ranked[0] if ranked else "unknown",
    }


def _add_edge_case_users(emulator: Any) -> None:
    """Users whose segments exercise the tie-break, the missing installs and the 30-day boundary."""
    emulator.add_user(
        "tie-newest-ios",
        {"plan": "pro"},
        lastActive="2026-10-20T00:00:00+00:00",
        installs=[
            {"id": "a", "os": "Android", "lastActive": "2026-10-01T00:00:00+00:00"},
            {"id": "b", "os": "iOS", "lastActive": "2026-10-19T00:00:00+00:00"},
        ],
    )
    emulator.add_user("no-installs", {"plan": "free"}, lastActive="2026-10-01T23:59:59+00:00", installs=[])
    emulator.add_user(
        "two-android-one-ios",
        None,
        lastActive="2026-10-02T00:00:00+00:00",
        installs=[
            {"id": "c", "os": "Android", "lastActive": "2026-09-01T00:00:00+00:00"},
            {"id": "d", "os": "Android", "lastActive": "2026-09-02T00:00:00+00:00"},
            {"id": "e", "os": "iOS", "lastActive": "2026-10-02T00:00:00+00:00"},
        ],
    )


@pytest.fixture
def warehouse(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The example's ``kumulos_warehouse`` connection: a fresh SQLite database file."""
    path = tmp_path / "warehouse.db"
    monkeypatch.setenv(
        "AIRFLOW_CONN_KUMULOS_WAREHOUSE", json.dumps({"conn_type": "sqlite", "host": str(path)})
    )
    return path


def _methods(emulator: Any) -> dict[str, list[str]]:
    """Identifiers per request method, sorted."""
    seen: dict[str, list[str]] = {}
    for entry in emulator.requests:
        seen.setdefault(entry.method, []).append(entry.identifier or "")
    return {method: sorted(identifiers) for method, identifiers in seen.items()}


def test_segment_refresh_sets_the_computed_segments_and_keeps_other_attributes(
    dag_runner: Any, kumulos_connection: Any, local_output: Path, warehouse: Path
) -> None:
    emulator = kumulos_connection
    _add_edge_case_users(emulator)
    before = {user["identifier"]: user for user in emulator.users()}

    dag_run = _run(dag_runner, "kumulos_segment_refresh", logical_date=AS_OF)

    assert set(dag_runner.states(dag_run).values()) == {"success"}
    for identifier, user in before.items():
        expected = {**(user["attributes"] or {}), **_expected_segment(user)}
        assert emulator.get_attributes(identifier) == expected, identifier
    assert emulator.get_attributes("tie-newest-ios")["primary_platform"] == "ios"
    assert emulator.get_attributes("no-installs") == {
        "plan": "free",
        "activity": "inactive_30d",
        "primary_platform": "unknown",
    }
    assert emulator.get_attributes("two-android-one-ios")["primary_platform"] == "android"
    assert emulator.get_attributes("two-android-one-ios")["activity"] == "active"

    segments = [_expected_segment(user) for user in before.values()]
    report = dag_runner.xcom(dag_run, "report")
    base = local_output / "segments"
    folder = base / "ds=2026-11-01"
    assert report == {
        "users_exported": 53,
        "export_path": f"file://{folder}/users.jsonl",
        "as_of": AS_OF.isoformat(),
        "inactive_30d": sum(segment["activity"] == "inactive_30d" for segment in segments),
        "primary_platform": dict(sorted(Counter(s["primary_platform"] for s in segments).items())),
        "sent": 53,
        "unchanged": 0,
        "drifted": 0,
        "removed": 0,
        "failures": 0,
        "failures_path": f"file://{folder}/failures.jsonl",
        "requests": 106,  # merge: one read and one write per user; the export is read from the file
    }
    assert sorted(path.name for path in folder.iterdir()) == ["failures.jsonl", "users.jsonl"]
    assert sorted(path.name for path in base.iterdir()) == ["ds=2026-11-01", "sync_state.sqlite"]
    assert (folder / "failures.jsonl").read_text() == ""


def test_segment_refresh_rerun_sends_only_changes_and_corrects_users_edited_in_kumulos(
    dag_runner: Any, kumulos_connection: Any, local_output: Path, warehouse: Path
) -> None:
    emulator = kumulos_connection
    _run(dag_runner, "kumulos_segment_refresh", logical_date=AS_OF)
    changed, left, edited = (emulator.user_ids()[index] for index in (0, 1, 5))
    user = emulator.get_user(changed)
    emulator.remove_user(changed)
    emulator.add_user(
        changed,
        user["attributes"],
        lastActive=AS_OF.isoformat(),
        installs=[{"id": "w", "os": "Web", "lastActive": AS_OF.isoformat()}],
    )
    emulator.remove_user(left)
    emulator.add_user("joined", None, lastActive=AS_OF.isoformat(), installs=[])
    segment = _expected_segment(emulator.get_user(edited))
    emulator.set_attributes(edited, {**emulator.get_attributes(edited), "activity": "edited in Kumulos"})
    emulator.clear_requests()

    dag_run = _run(dag_runner, "kumulos_segment_refresh", logical_date=AS_OF)

    report = dag_runner.xcom(dag_run, "report")
    counts = ("users_exported", "sent", "unchanged", "drifted", "removed", "requests")
    # The user who left Kumulos holds nothing to clear: no request for it.
    assert {key: report[key] for key in counts} == {
        "users_exported": 50,
        "sent": 3,
        "unchanged": 47,
        "drifted": 1,
        "removed": 0,
        "requests": 6,
    }
    assert _methods(emulator)["PUT"] == sorted([changed, "joined", edited])
    assert emulator.get_attributes(changed) == {
        **(user["attributes"] or {}),
        "activity": "active",
        "primary_platform": "web",
    }
    assert emulator.get_attributes("joined") == {"activity": "active", "primary_platform": "unknown"}
    assert emulator.get_attributes(edited)["activity"] == segment["activity"]


def test_segment_refresh_corrects_exactly_the_users_the_app_overwrote(
    dag_runner: Any, kumulos_connection: Any, local_output: Path, warehouse: Path
) -> None:
    emulator = kumulos_connection
    _run(dag_runner, "kumulos_segment_refresh", logical_date=AS_OF)
    users = {user["identifier"]: user for user in emulator.users()}
    overwritten = emulator.associate_share(0.1, {"pushOptIn": True}, seed=3)
    emulator.clear_requests()

    dag_run = _run(dag_runner, "kumulos_segment_refresh", logical_date=AS_OF)

    report = dag_runner.xcom(dag_run, "report")
    assert len(overwritten) == 5
    assert (report["sent"], report["unchanged"], report["drifted"], report["requests"]) == (5, 45, 5, 10)
    # The export is read from its file: besides it, a merge read and a write per overwritten user.
    listing = [entry for entry in emulator.requests if entry.path == "/v2/users"]
    assert _methods(emulator)["PUT"] == sorted(overwritten)
    assert sorted(entry.identifier for entry in emulator.requests if entry.path != "/v2/users") == sorted(
        overwritten * 2
    )
    assert len(listing) == 1  # the export's one page of 50 users
    for identifier, user in users.items():
        app = {"pushOptIn": True} if identifier in overwritten else user["attributes"]
        assert emulator.get_attributes(identifier) == {**app, **_expected_segment(user)}, identifier


def test_segment_refresh_as_of_is_the_interval_end_or_the_run_after_without_a_logical_date(
    airflow_home: Path,
) -> None:
    """A run triggered without a logical date has no ``data_interval_end`` in its context (Airflow 3)."""
    from types import SimpleNamespace

    try:
        from airflow.dag_processing.dagbag import DagBag
    except ImportError:  # older Airflow 3 releases
        from airflow.models.dagbag import DagBag  # type: ignore[no-redef]

    task = (
        DagBag(str(EXAMPLES / "kumulos_segment_refresh.py"))
        .dags["kumulos_segment_refresh"]
        .get_task("push_segments")
    )
    run_after = datetime(2026, 11, 2, 8, 30, tzinfo=timezone.utc)
    for interval_end, expected in ((None, run_after), (AS_OF, AS_OF)):
        dag_run = SimpleNamespace(data_interval_end=interval_end, run_after=run_after, logical_date=None)
        context: dict[str, Any] = {"dag_run": dag_run}
        if interval_end is not None:
            context["data_interval_end"] = interval_end
        rendered = task.render_template(task.sql_parameters, context, jinja_env=task.dag.get_template_env())
        assert rendered == {"as_of": expected.isoformat()}


def test_segment_refresh_tolerates_a_few_rejected_users_and_lists_them(
    dag_runner: Any, kumulos_connection: Any, local_output: Path, warehouse: Path
) -> None:
    emulator = kumulos_connection
    rejected = emulator.user_ids()[:2]
    emulator.reject_users(
        {identifier: (422, {"errors": {"attributes": ["invalid"]}}) for identifier in rejected}
    )

    dag_run = _run(dag_runner, "kumulos_segment_refresh", logical_date=AS_OF)

    assert set(dag_runner.states(dag_run).values()) == {"success"}
    report = dag_runner.xcom(dag_run, "report")
    assert (report["sent"], report["failures"]) == (48, 2)
    failures = _jsonl(Path(report["failures_path"].removeprefix("file://")).read_text())
    assert sorted(line["identifier"] for line in failures) == sorted(rejected)

    emulator.clear_faults()
    emulator.clear_requests()
    dag_run = _run(dag_runner, "kumulos_segment_refresh", logical_date=AS_OF)
    report = dag_runner.xcom(dag_run, "report")
    assert (report["sent"], report["unchanged"], report["failures"]) == (2, 48, 0)
    assert _methods(emulator)["PUT"] == sorted(rejected)


def test_segment_refresh_fails_when_too_many_users_are_rejected(
    dag_runner: Any, kumulos_connection: Any, local_output: Path, warehouse: Path
) -> None:
    emulator = kumulos_connection
    rejected = emulator.user_ids()[:11]
    emulator.reject_users(
        {identifier: (422, {"errors": {"attributes": ["invalid"]}}) for identifier in rejected}
    )

    dag_run = _run(dag_runner, "kumulos_segment_refresh", retries=False, logical_date=AS_OF)

    states = dag_runner.states(dag_run)
    assert (states["push_segments"], states["report"]) == ("failed", "upstream_failed")
    assert str(dag_run.state) == "failed"
    assert dag_runner.xcom(dag_run, "push_segments")["failed"] == 11
    folder = local_output / "segments" / "ds=2026-11-01"
    failures = _jsonl((folder / "failures.jsonl").read_text())
    assert sorted(line["identifier"] for line in failures) == sorted(rejected)


def test_segment_refresh_refuses_to_clear_most_users_after_a_broken_load(
    dag_runner: Any, kumulos_connection: Any, local_output: Path, warehouse: Path
) -> None:
    emulator = kumulos_connection
    _run(dag_runner, "kumulos_segment_refresh", logical_date=AS_OF)
    lost = emulator.user_ids()[:30]
    # A broken load: 30 users still in Kumulos (and the export) never reach the warehouse table.
    quoted = ", ".join("'" + identifier.replace("'", "''") + "'" for identifier in lost)
    with contextlib.closing(sqlite3.connect(warehouse)) as db:
        db.execute(
            f"CREATE TRIGGER broken_load AFTER INSERT ON kumulos_users WHEN NEW.identifier IN ({quoted}) "
            "BEGIN DELETE FROM kumulos_users WHERE identifier = NEW.identifier; END"
        )
    emulator.clear_requests()

    dag_run = _run(dag_runner, "kumulos_segment_refresh", retries=False, logical_date=AS_OF)

    assert dag_runner.states(dag_run)["push_segments"] == "failed"
    summary = dag_runner.xcom(dag_run, "push_segments")
    assert (summary["unchanged"], summary["absent"], summary["removed"]) == (20, 30, 0)
    assert "DELETE" not in _methods(emulator) and "PUT" not in _methods(emulator)


# --- kumulos_onboarding -----------------------------------------------------------------------


def _polled_by_trigger(entry: Any, user_id: str) -> bool:
    """Whether a recorded request is the trigger (httpx) asking about ``user_id``."""
    return entry.identifier == user_id and "httpx" in entry.headers.get("User-Agent", "")


def _create_after_trigger_polls(emulator: Any, user_id: str, attributes: dict[str, Any]) -> threading.Thread:
    """Create the user once the trigger has asked for it (or after 120 s, so the run always ends)."""

    def create() -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not any(
            _polled_by_trigger(entry, user_id) for entry in emulator.requests
        ):
            time.sleep(0.1)
        emulator.add_user(user_id, attributes)

    thread = threading.Thread(target=create, name="create-user", daemon=True)
    thread.start()
    return thread


def test_onboarding_waits_in_the_trigger_then_tags_and_clears_the_user(
    dag_runner: Any, kumulos_connection: Any
) -> None:
    emulator = kumulos_connection
    user_id = "signed-up/later é"
    creator = _create_after_trigger_polls(emulator, user_id, {"source": "app"})

    dag_run = _run(dag_runner, "kumulos_onboarding", run_conf={"user_id": user_id})
    creator.join()

    assert dag_runner.states(dag_run) == {
        "wait_for_user": "success",
        "start_welcome_journey": "success",
        "clear_attributes": "success",
    }
    calls = [entry for entry in emulator.requests if entry.identifier == user_id]
    polls = [entry for entry in calls if _polled_by_trigger(entry, user_id)]
    assert polls and polls[0].status == 404, "the trigger never polled while the user was missing"
    assert polls[-1].status == 200
    put = next(entry for entry in calls if entry.method == "PUT")
    assert put.json() == {"source": "app", "onboarding_stage": "welcome", "onboarding_run": dag_run.run_id}
    assert [entry.method for entry in calls][-1] == "DELETE"
    assert emulator.get_attributes(user_id) == {}


def test_onboarding_of_an_existing_user_does_not_defer(dag_runner: Any, kumulos_connection: Any) -> None:
    emulator = kumulos_connection
    user_id = emulator.user_ids()[3]
    dag_run = _run(dag_runner, "kumulos_onboarding", run_conf={"user_id": user_id})

    assert set(dag_runner.states(dag_run).values()) == {"success"}
    assert not any(_polled_by_trigger(entry, user_id) for entry in emulator.requests)
    assert emulator.get_attributes(user_id) == {}


def test_onboarding_rejects_an_empty_user_id_before_any_request(
    dag_runner: Any, kumulos_connection: Any
) -> None:
    from airflow.exceptions import ParamValidationError

    with pytest.raises(ParamValidationError, match="user_id"):
        _run(dag_runner, "kumulos_onboarding", run_conf={"user_id": ""})
    assert kumulos_connection.requests == []


# --- kumulos_parallel_export ------------------------------------------------------------------


def test_parallel_export_partitions_cover_every_user_once_on_s3(
    dag_runner: Any, kumulos_connection: Any, s3_output: str, s3_client: Any
) -> None:
    dag_run = _run(dag_runner, "kumulos_parallel_export", run_conf={"partitions": 3, "page_size": 10})

    states = dag_runner.states(dag_run)
    assert set(states.values()) == {"success"}
    assert sorted(name for name in states if name.startswith("export_partition[")) == [
        "export_partition[0]",
        "export_partition[1]",
        "export_partition[2]",
    ]
    folder = f"parallel/ds={dag_run.logical_date:%Y-%m-%d}"
    summary = dag_runner.xcom(dag_run, "write_manifest")
    assert summary["manifest"] == f"s3://aws_default@{s3_output}/{folder}/_manifest.json"
    assert (summary["partitions"], summary["users_written"]) == (3, 50)
    assert (summary["cross_partition_duplicates"], summary["page_gaps"]) == (0, [])
    manifest = json.loads(
        s3_client.get_object(Bucket=s3_output, Key=f"{folder}/_manifest.json")["Body"].read()
    )
    exported: Counter[str] = Counter()
    for partition in manifest["partitions"]:
        for file in partition["files"]:
            key = file["path"].removeprefix(f"s3://aws_default@{s3_output}/")
            body = s3_client.get_object(Bucket=s3_output, Key=key)["Body"].read().decode()
            exported.update(user["identifier"] for user in _jsonl(body))
    assert exported == Counter(kumulos_connection.user_ids())


def test_parallel_export_rejects_a_page_size_above_the_api_limit(
    dag_runner: Any, kumulos_connection: Any, local_output: Path
) -> None:
    from airflow.exceptions import ParamValidationError

    with pytest.raises(ParamValidationError, match="page_size"):
        _run(dag_runner, "kumulos_parallel_export", run_conf={"page_size": 5000})
    assert kumulos_connection.requests == []
    assert not local_output.exists()


def test_example_dags_pass_ruffs_airflow_rules() -> None:
    """Airflow's lint rules (preview ones included, e.g. AIR202: say ``multiple_outputs`` explicitly)."""
    ruff = Path(sys.executable).with_name("ruff")
    if not ruff.exists():
        pytest.skip("ruff is installed with the dev extra only")
    result = subprocess.run(
        [str(ruff), "check", "--no-cache", "--preview", "--select", "AIR", str(EXAMPLES)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
