"""Reconcile (``reconcile=True``, ``reconcile_from``): compare with what Kumulos holds, executed for real
against the emulator over HTTP, with exports written by ``ExportUsersOperator`` itself."""

from __future__ import annotations

import gzip
import json
import re
from pathlib import Path
from typing import Any

import pytest
from attributes_support import run
from test_export_support import run_export

from airflow_provider_kumulos import _metrics
from airflow_provider_kumulos.exceptions import (
    KumulosInputError,
    KumulosServerError,
    KumulosValidationError,
)
from airflow_provider_kumulos.operators.kumulos import DeleteAttributesOperator, SetAttributesOperator
from airflow_provider_kumulos.testing.emulator import Fault, KumulosEmulator

#: Users the emulator generates (they hold other keys: age, isCustomer...).
GENERATED = 50


def records(n: int, **changed: dict[str, Any]) -> list[dict[str, Any]]:
    """``n`` users ``r0``.. with a segment and a rank; ``changed`` replaces some users' attributes."""
    return [
        {"identifier": f"r{i}", "attributes": changed.get(f"r{i}", {"segment": f"seg-{i % 3}", "rank": i})}
        for i in range(n)
    ]


def sync(rows: list[dict[str, Any]], **kwargs: Any) -> dict[str, Any]:
    kwargs.setdefault("max_concurrency", 4)
    kwargs.setdefault("progress_interval", 0)
    return run(SetAttributesOperator(task_id="sync", records=rows, **kwargs))


def by_method(emu: KumulosEmulator) -> dict[str, list[str]]:
    """Identifiers per method of the attribute requests (``LIST`` counts listing pages)."""
    seen: dict[str, list[str]] = {}
    for request in emu.requests:
        method = request.method if request.identifier else "LIST"
        seen.setdefault(method, []).append(request.identifier or "")
    return {method: sorted(ids) for method, ids in seen.items()}


def holdings(emu: KumulosEmulator, rows: list[dict[str, Any]]) -> list[Any]:
    return [emu.get_attributes(row["identifier"]) for row in rows]


@pytest.fixture
def fast_retries(kumulos_emulator: KumulosEmulator, monkeypatch: pytest.MonkeyPatch) -> KumulosEmulator:
    monkeypatch.setenv(
        "AIRFLOW_CONN_KUMULOS_DEFAULT",
        kumulos_emulator.connection_uri(backoff_base=0.01, backoff_max=0.02, max_retries=2),
    )
    return kumulos_emulator


# --- app overwrites -------------------------------------------------------------------------------


def test_app_overwrites_are_corrected_and_nothing_else_is_sent(kumulos_connection: KumulosEmulator) -> None:
    emu = kumulos_connection
    rows = records(40)
    first = sync(rows, reconcile=True)
    assert (first["succeeded"], first["unchanged"]) == (40, 0)
    assert first["reconciled"] == {"source": "the users listing", "users": GENERATED, "pages": 1}
    for user in ("r3", "r17"):
        emu.set_attributes(user, {"fromTheApp": True})  # the SDK replaces the attribute set
    emu.set_attributes("r25", {"segment": "seg-1", "rank": 25, "extra": 1})
    emu.clear_requests()

    again = sync(rows, reconcile=True)
    assert (again["succeeded"], again["unchanged"], again["failed"]) == (3, 37, 0)
    assert by_method(emu) == {"LIST": [""], "PUT": ["r17", "r25", "r3"]}
    assert again["requests"] == 4
    assert holdings(emu, rows) == [row["attributes"] for row in rows]


def test_with_merge_only_missing_or_different_keys_are_written_over_a_fresh_read(
    kumulos_connection: KumulosEmulator,
) -> None:
    emu = kumulos_connection
    rows = records(20)
    for row in rows:
        emu.set_attributes(row["identifier"], {**row["attributes"], "appKey": "kept"})
    emu.set_attributes("r4", {"appKey": "kept", "segment": "seg-1"})  # lost its rank, wrong segment
    emu.set_attributes("r9", {"appKey": "kept", "segment": "seg-0", "rank": 9.0})  # 9.0 is 9
    emu.set_attributes("r11", {"appKey": "kept", "segment": "seg-2", "rank": "11"})  # "11" is not 11
    emu.clear_requests()

    summary = sync(rows, reconcile=True, merge=True)
    assert (summary["succeeded"], summary["unchanged"]) == (2, 18)
    assert by_method(emu) == {"LIST": [""], "GET": ["r11", "r4"], "PUT": ["r11", "r4"]}
    assert emu.get_attributes("r4") == {"appKey": "kept", "segment": "seg-1", "rank": 4}
    assert emu.get_attributes("r11") == {"appKey": "kept", "segment": "seg-2", "rank": 11}


def test_without_merge_the_whole_attribute_set_must_match(kumulos_connection: KumulosEmulator) -> None:
    emu = kumulos_connection
    rows = records(10)
    for row in rows:
        emu.set_attributes(row["identifier"], dict(reversed(list(row["attributes"].items()))))
    emu.set_attributes("r2", {**rows[2]["attributes"], "appKey": 1})
    emu.clear_requests()

    summary = sync(rows, reconcile=True)
    assert (summary["succeeded"], summary["unchanged"]) == (1, 9)
    assert by_method(emu) == {"LIST": [""], "PUT": ["r2"]}
    assert emu.get_attributes("r2") == rows[2]["attributes"]


def test_a_user_changed_after_the_export_keeps_its_fresh_keys(
    kumulos_connection: KumulosEmulator, tmp_path: Path
) -> None:
    emu = kumulos_connection
    rows = records(10)
    for row in rows:
        emu.set_attributes(row["identifier"], {"segment": "old"})
    export = tmp_path / "users.jsonl"
    run_export(output_path=str(export))
    # After the export, the app sets a key of its own on r1 and r2; r2 also gets its segment right.
    emu.set_attributes("r1", {"segment": "old", "pushToken": "fresh"})
    emu.set_attributes("r2", {"segment": "seg-2", "rank": 2, "pushToken": "fresh"})
    emu.clear_requests()

    summary = sync(rows, reconcile_from=str(export), merge=True)
    assert emu.get_attributes("r1") == {"segment": "seg-1", "rank": 1, "pushToken": "fresh"}
    assert emu.get_attributes("r2") == {"segment": "seg-2", "rank": 2, "pushToken": "fresh"}
    # r2 differed in the export, but the fresh read showed it in place: read, no write.
    assert (summary["succeeded"], summary["unchanged"]) == (9, 1)
    assert by_method(emu) == {
        "GET": [row["identifier"] for row in rows],
        "PUT": sorted(f"r{i}" for i in range(10) if i != 2),
    }


def test_users_absent_from_the_listing_are_sent(kumulos_connection: KumulosEmulator) -> None:
    emu = kumulos_connection
    summary = sync(records(5), reconcile=True, merge=True)
    assert (summary["succeeded"], summary["unchanged"]) == (5, 0)
    assert by_method(emu) == {
        "LIST": [""],
        "GET": [f"r{i}" for i in range(5)],
        "PUT": [f"r{i}" for i in range(5)],
    }
    assert holdings(emu, records(5)) == [row["attributes"] for row in records(5)]


# --- with a sync state: drifted -------------------------------------------------------------------


def test_drifted_users_are_counted_logged_measured_and_corrected(
    kumulos_connection: KumulosEmulator,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    emu = kumulos_connection
    state = tmp_path / "state.sqlite"
    rows = records(30)
    assert sync(rows, sync_state_path=str(state))["succeeded"] == 30
    for user in ("r1", "r2", "r3"):
        emu.set_attributes(user, {"fromTheApp": 1})
    # State alone: blind to the overwrites.
    blind = sync(rows, sync_state_path=str(state))
    assert (blind["succeeded"], blind["unchanged"]) == (0, 30)
    assert "drifted" not in blind

    counted: list[tuple[str, int, dict[str, str]]] = []
    real_incr = _metrics.incr
    monkeypatch.setattr(
        _metrics,
        "incr",
        lambda name, count=1, **tags: counted.append((name, count, tags)) or real_incr(name, count, **tags),
    )
    changed = records(30, r7={"segment": "new"})
    emu.clear_requests()
    capsys.readouterr()
    summary = sync(changed, sync_state_path=str(state), reconcile=True)
    assert (summary["succeeded"], summary["unchanged"], summary["drifted"]) == (4, 26, 3)
    assert by_method(emu) == {"LIST": [""], "PUT": ["r1", "r2", "r3", "r7"]}
    assert holdings(emu, changed) == [row["attributes"] for row in changed]
    assert ("records_drifted", 3, {"operation": "set_attributes"}) in counted
    logged = capsys.readouterr().out
    assert re.search(r"set attributes: \d+/30 \([\d.]+%\), failed 0, unchanged \d+, drifted \d+, ", logged)
    assert (
        "set attributes finished: total 30, succeeded 4, failed 0, skipped 0, duplicates 0, unchanged 26, drifted 3, "
        in logged
    )

    # The state learnt: a state-only run now skips everyone, a reconcile finds nothing drifted.
    emu.clear_requests()
    assert sync(changed, sync_state_path=str(state), reconcile=True)["drifted"] == 0
    assert by_method(emu) == {"LIST": [""]}


def test_records_kumulos_already_holds_are_learnt_by_the_state(
    kumulos_connection: KumulosEmulator, tmp_path: Path
) -> None:
    emu = kumulos_connection
    rows = records(10)
    for row in rows:
        emu.set_attributes(row["identifier"], row["attributes"])
    state = tmp_path / "state.sqlite"
    first = sync(rows, sync_state_path=str(state), reconcile=True)
    assert (first["succeeded"], first["unchanged"], first["drifted"]) == (0, 10, 0)
    emu.clear_requests()
    assert sync(rows, sync_state_path=str(state))["unchanged"] == 10
    assert emu.requests == []


# --- reconcile_from: exports ---------------------------------------------------------------------

FORMATS = [
    ("jsonl", None),
    ("jsonl", "gzip"),
    ("json", None),
    ("json", "gzip"),
    ("csv", None),
    ("csv", "gzip"),
    ("parquet", None),
]


@pytest.mark.parametrize(("fmt", "compression"), FORMATS)
def test_reconcile_from_each_export_format_makes_no_listing_request(
    kumulos_connection: KumulosEmulator, tmp_path: Path, fmt: str, compression: str | None
) -> None:
    if fmt == "parquet":
        pytest.importorskip("pyarrow")
    emu = kumulos_connection
    rows = records(12, r0={"segment": "seg-0", "nested": {"b": [1, 2.0], "a": None}})
    for row in rows:
        emu.set_attributes(row["identifier"], row["attributes"])
    emu.set_attributes("r5", {"fromTheApp": True})
    emu.set_attributes("r6", {"segment": "seg-0", "rank": 6.5})
    export = tmp_path / f"users.{fmt}{'.gz' if compression else ''}"
    run_export(output_path=str(export), format=fmt, compression=compression)
    emu.clear_requests()

    summary = sync(rows, reconcile_from=str(export))
    assert by_method(emu) == {"PUT": ["r5", "r6"]}
    assert (summary["succeeded"], summary["unchanged"]) == (2, 10)
    assert summary["reconciled"] == {"source": str(export), "users": GENERATED + 12, "pages": 0}
    assert holdings(emu, rows) == [row["attributes"] for row in rows]


def test_reconcile_from_a_partitioned_exports_manifest(
    kumulos_connection: KumulosEmulator, tmp_path: Path
) -> None:
    emu = kumulos_connection
    rows = records(30)
    for row in rows:
        emu.set_attributes(row["identifier"], row["attributes"])
    emu.set_attributes("r29", {})
    parts = tmp_path / "parts"
    summary = run_export(output_path=str(parts), split_every=17, format="jsonl", compression="gzip")
    assert summary["parts"] == 5
    emu.clear_requests()

    result = sync(rows, reconcile_from=str(parts / "_manifest.json"))
    assert by_method(emu) == {"PUT": ["r29"]}
    assert result["reconciled"]["users"] == GENERATED + 30


def test_a_csv_export_compares_values_as_its_cells_hold_them(
    kumulos_connection: KumulosEmulator, tmp_path: Path
) -> None:
    emu = kumulos_connection
    emu.set_attributes("c1", {"code": "7"})
    emu.set_attributes("c2", {"code": 7})
    export = tmp_path / "users.csv"
    run_export(output_path=str(export), format="csv")
    emu.clear_requests()
    rows = [{"identifier": "c1", "attributes": {"code": 7}}, {"identifier": "c2", "attributes": {"code": 7}}]
    assert sync(rows, reconcile_from=str(export))["unchanged"] == 2  # csv cannot tell "7" from 7
    emu.clear_requests()
    run_export(output_path=str(tmp_path / "users.jsonl"))
    assert sync(rows, reconcile_from=str(tmp_path / "users.jsonl"))["succeeded"] == 1
    assert by_method(emu) == {"LIST": [""], "PUT": ["c1"]}


@pytest.mark.parametrize(
    ("write", "problem"),
    [
        ("fields", "has no attributes key"),
        ("manifest-fields", "leave the attributes out"),
        ("csv-fields", "no identifier and attributes_json columns"),
        ("not-an-export", "is not a JSON object with a string identifier"),
        ("missing", "there is no file at"),
        ("garbled-gzip", "is not a readable"),
    ],
)
def test_an_unusable_baseline_fails_before_any_write(
    kumulos_connection: KumulosEmulator, tmp_path: Path, write: str, problem: str
) -> None:
    emu = kumulos_connection
    path = tmp_path / "users.jsonl"
    if write == "fields":
        run_export(output_path=str(path), fields=["identifier", "updatedAt"])
    elif write == "manifest-fields":
        run_export(output_path=str(tmp_path / "parts"), split_every=20, fields=["identifier"])
        path = tmp_path / "parts" / "_manifest.json"
    elif write == "csv-fields":
        path = tmp_path / "users.csv"
        run_export(output_path=str(path), format="csv", fields=["identifier", "createdAt"])
    elif write == "not-an-export":
        path.write_text(json.dumps({"id": "r1", "attributes": {}}) + "\n")
    elif write == "garbled-gzip":
        path.write_bytes(gzip.compress(b'{"identifier": "r1", "attributes": {}}\n')[:-12])
    emu.clear_requests()
    with pytest.raises(KumulosInputError, match=problem) as raised:
        sync(records(5), reconcile_from=str(path))
    assert raised.value.parameter == "reconcile_from"
    assert emu.requests == []


# --- failing pages ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("faults", "error"),
    [([Fault.status_code(422)], KumulosValidationError), ([Fault.status_code(500)] * 3, KumulosServerError)],
    ids=["422", "500-after-retries"],
)
def test_a_failing_listing_page_fails_the_task_before_any_write(
    fast_retries: KumulosEmulator, tmp_path: Path, faults: list[Fault], error: type[Exception]
) -> None:
    emu = fast_retries
    for i in range(1500):
        emu.add_user(f"bulk-{i}", {"segment": "x"})
    emu.script_faults(faults, page=2)
    state = tmp_path / "state.sqlite"
    with pytest.raises(error):
        sync(records(20), reconcile=True, sync_state_path=str(state), max_concurrency=8)
    assert {request.method for request in emu.requests} == {"GET"}
    assert all(request.identifier is None for request in emu.requests)
    assert not state.exists()


# --- remove_absent without a state ---------------------------------------------------------------


def test_remove_absent_without_a_state_clears_holders_of_managed_keys(
    kumulos_connection: KumulosEmulator,
) -> None:
    emu = kumulos_connection
    for i in range(10):
        emu.set_attributes(f"r{i}", {"segment": "seg", "rank": i, "appKey": i})
    emu.set_attributes("legacy", {"tier": "gold", "appKey": 1})  # only an explicit managed key
    emu.set_attributes("bystander", {"appKey": 1})
    emu.clear_requests()
    kept = records(8)

    summary = sync(kept, reconcile=True, remove_absent=True, managed_keys=["tier"])
    assert (summary["absent"], summary["removed"], summary["removal_failed"]) == (3, 3, 0)
    assert by_method(emu)["DELETE"] == ["legacy", "r8", "r9"]
    assert emu.get_attributes("r9") == {} and emu.get_attributes("bystander") == {"appKey": 1}

    emu.set_attributes("r9", {"segment": "seg", "appKey": 9})
    emu.clear_requests()
    merged = sync(kept, reconcile=True, remove_absent=True, merge=True)
    assert (merged["absent"], merged["removed"]) == (1, 1)
    assert emu.get_attributes("r9") == {"appKey": 9}
    assert by_method(emu) == {"LIST": [""], "GET": ["r9"], "PUT": ["r9"]}


def test_a_user_whose_record_is_invalid_is_not_cleared(
    kumulos_connection: KumulosEmulator, tmp_path: Path
) -> None:
    emu = kumulos_connection
    for i in range(4):
        emu.set_attributes(f"r{i}", {"segment": "seg", "rank": i})
    emu.clear_requests()
    rows = [*records(3), {"identifier": "r3", "attributes": {"segment": float("nan")}}]
    state = tmp_path / "state.sqlite"
    summary = sync(rows, reconcile=True, remove_absent=True, sync_state_path=str(state), max_failures=1)
    assert (summary["failed"], summary["absent"], summary["removed"]) == (1, 0, 0)
    assert emu.get_attributes("r3") == {"segment": "seg", "rank": 3}
    assert "DELETE" not in by_method(emu)


def test_a_sql_sources_columns_are_managed_even_when_it_returns_no_rows(
    kumulos_connection: KumulosEmulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sqlite3

    emu = kumulos_connection
    database = tmp_path / "model.db"
    with sqlite3.connect(database) as db:
        db.execute("CREATE TABLE model (identifier TEXT, segment TEXT)")
    monkeypatch.setenv("AIRFLOW_CONN_MODEL", json.dumps({"conn_type": "sqlite", "host": str(database)}))
    emu.set_attributes("left", {"segment": "vip"})
    emu.clear_requests()
    summary = run(
        SetAttributesOperator(
            task_id="sql",
            sql="SELECT identifier, segment FROM model",
            sql_conn_id="model",
            reconcile=True,
            remove_absent=True,
            max_removal_fraction=1.0,
        )
    )
    assert (summary["total"], summary["absent"], summary["removed"]) == (0, 1, 1)
    assert by_method(emu) == {"LIST": [""], "DELETE": ["left"]}


def test_the_removal_guard_counts_the_users_holding_managed_keys(kumulos_connection: KumulosEmulator) -> None:
    emu = kumulos_connection
    for i in range(10):
        emu.set_attributes(f"r{i}", {"segment": "seg", "rank": i})
    emu.clear_requests()
    with pytest.raises(
        KumulosInputError, match=r"6 of the 10 users holding a managed key in Kumulos \(60.0%\)"
    ):
        sync(records(4), reconcile=True, remove_absent=True)
    assert "DELETE" not in by_method(emu)
    summary = sync(records(4), reconcile=True, remove_absent=True, max_removal_fraction=0.6)
    assert summary["removed"] == 6


# --- dry run and deletes ---------------------------------------------------------------------------


def test_a_dry_run_reports_what_it_would_send_skip_and_remove(kumulos_connection: KumulosEmulator) -> None:
    emu = kumulos_connection
    for row in records(10):
        emu.set_attributes(row["identifier"], row["attributes"])
    emu.set_attributes("r2", {"fromTheApp": 1})
    emu.clear_requests()
    summary = sync(records(8), reconcile=True, remove_absent=True, dry_run=True)
    assert (summary["skipped"], summary["unchanged"], summary["absent"], summary["removed"]) == (1, 7, 2, 0)
    assert summary["examples"] == [{"identifier": "r2", "attribute_keys": ["rank", "segment"]}]
    assert by_method(emu) == {"LIST": [""]}
    assert emu.get_attributes("r2") == {"fromTheApp": 1}


def test_delete_with_reconcile_skips_users_without_attributes_or_not_listed(
    kumulos_connection: KumulosEmulator,
) -> None:
    emu = kumulos_connection
    emu.set_attributes("full", {"a": 1})
    emu.set_attributes("empty", {})
    emu.clear_requests()
    summary = run(
        DeleteAttributesOperator(task_id="clear", user_ids=["full", "empty", "nobody"], reconcile=True)
    )
    assert (summary["succeeded"], summary["unchanged"], summary["missing"]) == (1, 1, 1)
    assert by_method(emu) == {"LIST": [""], "DELETE": ["full"]}


def test_reconcile_arguments_are_checked_when_the_task_is_defined() -> None:
    with pytest.raises(KumulosInputError, match="full_refresh"):
        SetAttributesOperator(
            task_id="t", records=[], sync_state_path="s.db", full_refresh=True, reconcile=True
        )
    with pytest.raises(KumulosInputError, match=r"remove_absent.*sync state or a reconcile"):
        SetAttributesOperator(task_id="t", records=[], remove_absent=True)
    with pytest.raises(KumulosInputError, match=r"managed_keys.*only applies with remove_absent"):
        SetAttributesOperator(task_id="t", records=[], reconcile=True, managed_keys=["a"])
    with pytest.raises(KumulosInputError, match=r"managed_keys.*list of attribute keys"):
        SetAttributesOperator(task_id="t", records=[], reconcile=True, remove_absent=True, managed_keys="a")
    with pytest.raises(KumulosInputError, match=r"reconcile.*not a bool"):
        SetAttributesOperator(task_id="t", records=[], reconcile="yes")


# --- a real DAG run -----------------------------------------------------------------------------------

DAG = """
import pendulum
from airflow.sdk import dag

from airflow_provider_kumulos.operators.kumulos import ExportUsersOperator, SetAttributesOperator

ROWS = [{{"identifier": f"d{{i}}", "attributes": {{"segment": "spring", "i": i}}}} for i in range(20)]


@dag(dag_id="kumulos_reconcile", schedule=None, start_date=pendulum.datetime(2024, 1, 1), catchup=False)
def kumulos_reconcile():
    export = ExportUsersOperator(task_id="export", output_path="{folder}/users.jsonl.gz", compression="gzip")
    write = SetAttributesOperator(
        task_id="write",
        records=ROWS,
        reconcile_from="{{{{ ti.xcom_pull(task_ids='export')['path'] }}}}",
        sync_state_path="{folder}/state.sqlite",
    )
    export >> write


kumulos_reconcile()
"""


def test_a_dag_reconciles_from_the_export_it_took(
    dag_runner: Any, kumulos_connection: KumulosEmulator, tmp_path: Path
) -> None:
    emu = kumulos_connection
    for i in range(20):
        emu.set_attributes(f"d{i}", {"segment": "spring", "i": i})
    for i in (4, 5):
        emu.set_attributes(f"d{i}", {"fromTheApp": True})
    emu.clear_requests()
    run_ = dag_runner.run(DAG.format(folder=tmp_path), "kumulos_reconcile")
    assert dag_runner.states(run_) == {"export": "success", "write": "success"}
    summary = dag_runner.xcom(run_, "write")
    assert (summary["succeeded"], summary["unchanged"], summary["drifted"]) == (2, 18, 0)
    assert sorted(r.identifier for r in emu.requests if r.method == "PUT") == ["d4", "d5"]
    assert emu.get_attributes("d4") == {"segment": "spring", "i": 4}


def test_with_a_state_too_removals_follow_kumulos_and_the_state_forgets_the_leavers(
    kumulos_connection: KumulosEmulator, tmp_path: Path
) -> None:
    emu = kumulos_connection
    state = tmp_path / "state.sqlite"
    sync(records(10), sync_state_path=str(state))
    emu.set_attributes("r9", {"fromTheApp": 1})  # no managed key left: nothing to clear
    emu.clear_requests()
    summary = sync(records(7), sync_state_path=str(state), reconcile=True, remove_absent=True)
    assert (summary["absent"], summary["removed"], summary["unchanged"]) == (2, 2, 7)
    assert by_method(emu) == {"LIST": [""], "DELETE": ["r7", "r8"]}
    assert emu.get_attributes("r9") == {"fromTheApp": 1}
    emu.clear_requests()
    again = sync(records(7), sync_state_path=str(state), remove_absent=True)
    assert (again["absent"], again["removed"], again["unchanged"]) == (0, 0, 7)
    assert emu.requests == []
