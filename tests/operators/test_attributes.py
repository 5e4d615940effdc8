"""SetAttributesOperator and DeleteAttributesOperator executed for real against the emulator."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_kumulos.exceptions import (
    KumulosAuthError,
    KumulosError,
    KumulosInputError,
    KumulosUserNotFoundError,
    KumulosValidationError,
)
from airflow_provider_kumulos.operators.kumulos import DeleteAttributesOperator, SetAttributesOperator
from airflow_provider_kumulos.testing.emulator import KumulosEmulator

SECRET_VALUE = "do-not-log-this-value"


class XComRecorder:
    """The one task-instance method the operators call (to push the summary before failing)."""

    def __init__(self) -> None:
        self.pushed: dict[str, Any] = {}

    def xcom_push(self, key: str, value: Any) -> None:
        self.pushed[key] = json.loads(json.dumps(value))  # XCom values must be JSON


def run(op: Any) -> tuple[dict[str, Any] | None, XComRecorder]:
    ti = XComRecorder()
    return op.execute({"ti": ti}), ti


def puts(emu: KumulosEmulator, method: str = "PUT") -> dict[str, list[int | None]]:
    """Statuses of the requests of one method, per user."""
    seen: dict[str, list[int | None]] = {}
    for request in emu.requests:
        if request.method == method and request.identifier is not None:
            seen.setdefault(request.identifier, []).append(request.status)
    return seen


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


# --- SetAttributesOperator --------------------------------------------------------------------------


def test_one_user_gets_exactly_the_attributes(kumulos_connection: KumulosEmulator) -> None:
    emu = kumulos_connection
    summary, _ = run(
        SetAttributesOperator(task_id="t", user_id="new/user é", attributes={"tier": "gold", "n": 1})
    )
    assert emu.get_attributes("new/user é") == {"tier": "gold", "n": 1}
    [request] = emu.requests
    assert (request.method, request.raw_path, request.json()) == (
        "PUT",
        "/v1/users/new%2Fuser%20%C3%A9/attributes",
        {"tier": "gold", "n": 1},
    )
    assert summary is not None
    assert {k: summary[k] for k in ("total", "succeeded", "failed", "skipped", "duplicates", "requests")} == {
        "total": 1,
        "succeeded": 1,
        "failed": 0,
        "skipped": 0,
        "duplicates": 0,
        "requests": 1,
    }


def test_bulk_records_reach_the_intended_state_with_one_write_each(
    kumulos_connection: KumulosEmulator,
) -> None:
    emu = kumulos_connection
    existing = emu.user_ids()[:20]
    records = [{"identifier": ident, "attributes": {"rank": i}} for i, ident in enumerate(existing)]
    records += [{"identifier": f"created-{i}", "attributes": {"rank": 100 + i}} for i in range(20)]
    summary, _ = run(SetAttributesOperator(task_id="t", records=records, max_concurrency=6))
    for record in records:
        assert emu.get_attributes(record["identifier"]) == record["attributes"]
    assert puts(emu) == {record["identifier"]: [200] for record in records}
    assert summary is not None and (summary["total"], summary["succeeded"], summary["failed"]) == (40, 40, 0)


def test_duplicates_are_applied_in_input_order_so_the_last_one_wins(
    kumulos_connection: KumulosEmulator,
) -> None:
    emu = kumulos_connection
    records = [{"identifier": f"u{n % 5}", "attributes": {"n": n}} for n in range(60)]
    summary, _ = run(SetAttributesOperator(task_id="t", records=records, max_concurrency=8))
    assert {f"u{k}": emu.get_attributes(f"u{k}") for k in range(5)} == {
        f"u{k}": {"n": 55 + k} for k in range(5)
    }
    bodies: dict[str, list[int]] = {}
    for request in emu.requests:
        bodies.setdefault(request.identifier or "", []).append(request.json()["n"])
    assert bodies == {f"u{k}": list(range(k, 60, 5)) for k in range(5)}
    assert summary is not None and summary["duplicates"] == 55


def test_records_may_come_as_rendered_json_text(kumulos_connection: KumulosEmulator) -> None:
    records = json.dumps([{"identifier": "a", "attributes": {"x": [1, 2]}}])
    run(SetAttributesOperator(task_id="t", records=records))
    assert kumulos_connection.get_attributes("a") == {"x": [1, 2]}


def test_jsonl_and_csv_sources_reach_the_intended_state(
    kumulos_connection: KumulosEmulator, tmp_path: Path
) -> None:
    emu = kumulos_connection
    jsonl = tmp_path / "users.jsonl"
    jsonl.write_text(
        "".join(json.dumps({"identifier": f"j{i}", "attributes": {"i": i}}) + "\n" for i in range(25))
    )
    run(SetAttributesOperator(task_id="t", source_path=str(jsonl), max_concurrency=4))
    with (tmp_path / "users.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["user", "age", "vip", "city"])
        writer.writerows(
            [[f"c{i}", i, "yes" if i % 2 else "no", "" if i % 3 else "Paris"] for i in range(25)]
        )
    run(
        SetAttributesOperator(
            task_id="t",
            source_path=str(tmp_path / "users.csv"),
            identifier_column="user",
            attribute_types={"age": "int", "vip": "bool"},
        )
    )
    assert [emu.get_attributes(f"j{i}") for i in range(25)] == [{"i": i} for i in range(25)]
    assert [emu.get_attributes(f"c{i}") for i in range(25)] == [
        {"age": i, "vip": bool(i % 2), **({} if i % 3 else {"city": "Paris"})} for i in range(25)
    ]


def test_merge_keeps_untouched_keys_and_creates_missing_users(kumulos_connection: KumulosEmulator) -> None:
    emu = kumulos_connection
    emu.set_attributes("kept", {"a": 1, "b": 2})
    records = [
        {"identifier": "kept", "attributes": {"b": 3, "c": 4}},
        {"identifier": "absent", "attributes": {"c": 5}},
    ]
    summary, _ = run(SetAttributesOperator(task_id="t", records=records, merge=True))
    assert emu.get_attributes("kept") == {"a": 1, "b": 3, "c": 4}
    assert emu.get_attributes("absent") == {"c": 5}
    assert sorted((r.identifier, r.method, r.status) for r in emu.requests) == [
        ("absent", "GET", 404),
        ("absent", "PUT", 200),
        ("kept", "GET", 200),
        ("kept", "PUT", 200),
    ]
    assert summary is not None and (summary["succeeded"], summary["requests"]) == (2, 4)


def test_a_dry_run_sends_nothing_and_reports_what_it_would_send(
    kumulos_connection: KumulosEmulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    records = [
        {"identifier": "a", "attributes": {"tier": SECRET_VALUE}},
        {"identifier": "", "attributes": {}},
        {"identifier": "b", "attributes": {}},
    ]
    summary, _ = run(
        SetAttributesOperator(
            task_id="t",
            records=records,
            dry_run=True,
            max_failures=1,
            failures_path=str(tmp_path / "invalid.jsonl"),
            kumulos_conn_id="no_such_connection",  # a dry run does not even look it up
        )
    )
    logged = capsys.readouterr().out
    assert kumulos_connection.requests == []
    assert summary is not None
    assert (
        summary["dry_run"],
        summary["total"],
        summary["skipped"],
        summary["failed"],
        summary["requests"],
    ) == (
        True,
        3,
        2,
        1,
        0,
    )
    assert summary["examples"] == [
        {"identifier": "a", "attribute_keys": ["tier"]},
        {"identifier": "b", "attribute_keys": []},
    ]
    assert [line["error"]["where"] for line in read_jsonl(tmp_path / "invalid.jsonl")] == ["records[1]"]
    assert "Dry run: 2 valid records would be sent; for example 'a' (keys: tier)" in logged
    assert SECRET_VALUE not in logged


def test_rejections_are_reported_exactly_and_fail_the_task_above_max_failures(
    kumulos_connection: KumulosEmulator, tmp_path: Path
) -> None:
    emu = kumulos_connection
    rejected = {f"r{i}": (422, {"errors": {"tier": ["is not allowed"]}}) for i in range(3)}
    emu.reject_users(rejected)
    records = [{"identifier": f"r{i}", "attributes": {"tier": i}} for i in range(3)]
    records += [{"identifier": f"ok{i}", "attributes": {"tier": i}} for i in range(10)]
    failures = tmp_path / "failed.jsonl"

    op = SetAttributesOperator(task_id="t", records=records, max_failures=2, failures_path=str(failures))
    with pytest.raises(
        KumulosError, match=r"^set attributes: 3 of 13 records failed, more than max_failures=2\."
    ) as caught:
        run(op)
    assert isinstance(caught.value.__cause__, KumulosValidationError)
    message = str(caught.value)
    assert "records[0] 'r0': KumulosValidationError (HTTP 422)" in message
    assert f"Failed records are in file://{failures}" in message

    lines = sorted(read_jsonl(failures), key=lambda line: line["identifier"])
    assert [
        (line["identifier"], line["attributes"], line["error"]["status"], line["error"]["type"])
        for line in lines
    ] == [(f"r{i}", {"tier": i}, 422, "KumulosValidationError") for i in range(3)]
    assert all("is not allowed" in line["error"]["message"] for line in lines)

    emu.clear_requests()
    summary, ti = run(SetAttributesOperator(task_id="t", records=records, max_failures=3))
    assert summary is not None and ti.pushed == {}
    assert (summary["failed"], summary["succeeded"]) == (3, 10)
    assert sorted((e["identifier"], e["status"], e["error"]) for e in summary["first_errors"]) == [
        (f"r{i}", 422, "KumulosValidationError") for i in range(3)
    ]
    assert [emu.get_attributes(f"ok{i}") for i in range(10)] == [{"tier": i} for i in range(10)]


def test_the_summary_reaches_xcom_before_the_task_fails(kumulos_connection: KumulosEmulator) -> None:
    kumulos_connection.reject_users({"r": (422, {"errors": {}})})
    op = SetAttributesOperator(task_id="t", user_id="r", attributes={"a": 1})
    ti = XComRecorder()
    with pytest.raises(KumulosError, match="1 of 1 records failed"):
        op.execute({"ti": ti})
    summary = ti.pushed["return_value"]
    assert (summary["total"], summary["failed"], summary["first_errors"][0]["status"]) == (1, 1, 422)


def test_the_failures_file_fed_back_as_source_path_converges(
    kumulos_connection: KumulosEmulator, tmp_path: Path
) -> None:
    emu = kumulos_connection
    emu.reject_users({"a": (422, {"errors": {}}), "c": (422, {"errors": {}})})
    records = [{"identifier": ident, "attributes": {"v": ident.upper()}} for ident in "abcde"]
    first = tmp_path / "failed-1.jsonl"
    run(SetAttributesOperator(task_id="t", records=records, max_failures=10, failures_path=str(first)))
    assert sorted(line["identifier"] for line in read_jsonl(first)) == ["a", "c"]

    emu.reject_users({})
    second = tmp_path / "failed-2.jsonl"
    summary, _ = run(SetAttributesOperator(task_id="t", source_path=str(first), failures_path=str(second)))
    assert summary is not None and (summary["total"], summary["succeeded"], summary["failed"]) == (2, 2, 0)
    assert second.read_text() == ""
    assert {ident: emu.get_attributes(ident) for ident in "abcde"} == {
        ident: {"v": ident.upper()} for ident in "abcde"
    }


def test_a_malformed_record_fails_alone(kumulos_connection: KumulosEmulator) -> None:
    records: list[Any] = [
        {"identifier": "a", "attributes": {"x": 1}},
        {"identifier": 7, "attributes": {}},
        {"identifier": "b", "attributes": {"bad": float("nan")}},
        "not a record",
        {"identifier": "c", "attributes": {"x": 3}},
    ]
    summary, _ = run(SetAttributesOperator(task_id="t", records=records, max_failures=3))
    assert summary is not None
    assert [(e["where"], e["status"], e["error"]) for e in summary["first_errors"]] == [
        ("records[1]", None, "KumulosInputError"),
        ("records[2]", None, "KumulosInputError"),
        ("records[3]", None, "KumulosInputError"),
    ]
    assert "NaN or Infinity" in summary["first_errors"][1]["message"]
    assert sorted(r.identifier or "" for r in kumulos_connection.requests) == ["a", "c"]


def test_secrets_and_attribute_values_stay_out_of_logs_summary_and_errors(
    kumulos_connection: KumulosEmulator, capsys: pytest.CaptureFixture[str]
) -> None:
    kumulos_connection.reject_users({"r": (422, {"errors": {"tier": ["invalid"]}})})
    records = [
        {"identifier": "r", "attributes": {"tier": SECRET_VALUE}},
        {"identifier": "ok", "attributes": {"t": SECRET_VALUE}},
    ]
    op = SetAttributesOperator(task_id="t", records=records)
    ti = XComRecorder()
    with pytest.raises(KumulosError) as caught:
        op.execute({"ti": ti})
    logged = capsys.readouterr().out
    assert "First failures (1 of 1): records[0] 'r'" in logged
    texts = [logged, json.dumps(ti.pushed), str(caught.value)]
    for text in texts:
        assert kumulos_connection.server_key not in text
        assert SECRET_VALUE not in text


INPUT_ERRORS: list[tuple[dict[str, Any], str, str]] = [
    (
        {"user_id": "a", "attributes": {}, "records": []},
        "user_id / records / source_path / sql",
        "got user_id and records",
    ),
    ({}, "user_id / records / source_path / sql", "none of them was given"),
    ({"user_id": "a"}, "attributes", "user_id was given without attributes"),
    ({"attributes": {"a": 1}}, "user_id", "attributes was given without user_id"),
    ({"records": [], "max_concurrency": 0}, "max_concurrency", "0 is not a whole number between 1 and 64"),
    ({"records": [], "max_failures": -1}, "max_failures", "-1 is not a whole number >= 0"),
    ({"records": [], "max_requests_per_second": 0}, "max_requests_per_second", "0 is not a number > 0"),
    (
        {"records": [], "attribute_types": {"a": "int"}},
        "attribute_types",
        "only applies to a CSV source_path",
    ),
    ({"source_path": "x.csv", "attribute_types": {"a": "date"}}, "attribute_types", "unknown type 'date'"),
    ({"source_path": "x.txt", "source_format": "txt"}, "source_format", "'txt' is not a valid choice"),
    (
        {"source_path": "users.jsonl", "source_format": "parquet"},
        "source_format",
        "'parquet' is not a valid choice. Use one of jsonl, csv",
    ),
    ({"records": [], "merge": "yes"}, "merge", "is not a bool"),
    (
        {"records": [], "hook_params": {"pool_size": 4}},
        "hook_params",
        "'pool_size' is set by this task's own argument max_concurrency. Remove 'pool_size' from "
        "hook_params and pass max_concurrency.",
    ),
    (
        {"records": [], "hook_params": {"max_requests_per_second": 4}},
        "hook_params",
        "'max_requests_per_second' is set by this task's own argument max_requests_per_second",
    ),
    (
        {"records": [], "hook_params": {"retries": 4}},
        "hook_params",
        "'retries' is not a hook argument this task passes on. Use only timeout, connect_timeout, "
        "max_retries, backoff_base, backoff_max, max_retry_after, verify.",
    ),
    (
        {"records": [], "hook_params": {"timeout": "30"}},
        "hook_params['timeout']",
        "'30' is not a number of seconds > 0",
    ),
]


@pytest.mark.parametrize(("kwargs", "parameter", "problem"), INPUT_ERRORS)
def test_bad_arguments_are_refused_when_the_task_is_defined(
    kwargs: dict[str, Any], parameter: str, problem: str
) -> None:
    with pytest.raises(KumulosInputError) as caught:
        SetAttributesOperator(task_id="t", **kwargs)
    assert caught.value.parameter == parameter
    assert problem in str(caught.value)


@pytest.mark.parametrize(
    ("kwargs", "parameter", "problem"),
    [
        ({"user_id": "", "attributes": {}}, "user_id", "it is empty"),
        ({"user_id": "a", "attributes": {"x": float("inf")}}, "attributes", "NaN or Infinity"),
        ({"user_id": "a", "attributes": "[1]"}, "attributes", "expected a JSON object"),
        ({"user_id": "a", "attributes": "{nope"}, "attributes", "a string that is not valid JSON"),
        ({"records": "not json"}, "records", "a string that is not valid JSON"),
        ({"records": {"identifier": "a", "attributes": {}}}, "records", "got one object"),
        ({"records": 5}, "records", "got int"),
        ({"records": [], "failures_path": "/tmp/failed.csv"}, "failures_path", "does not end in .jsonl"),
        ({"source_path": "/nonexistent/users.jsonl"}, "source_path", "does not exist"),
        ({"source_path": "/nonexistent/users.xlsx"}, "source_format", "cannot be told from its name"),
    ],
)
def test_bad_inputs_fail_before_any_request(
    kumulos_connection: KumulosEmulator, kwargs: dict[str, Any], parameter: str, problem: str
) -> None:
    with pytest.raises(KumulosInputError) as caught:
        run(SetAttributesOperator(task_id="t", **kwargs))
    assert caught.value.parameter == parameter
    assert problem in str(caught.value)
    assert kumulos_connection.requests == []


def test_csv_header_errors_fail_before_any_request(
    kumulos_connection: KumulosEmulator, tmp_path: Path
) -> None:
    path = tmp_path / "users.csv"
    path.write_text("id,age\na,1\n")
    with pytest.raises(KumulosInputError, match="column 'identifier' is not in the CSV header") as caught:
        run(SetAttributesOperator(task_id="t", source_path=str(path), attribute_types={"age": "int"}))
    assert caught.value.parameter == "identifier_column"
    with pytest.raises(KumulosInputError, match=r"column\(s\) \['score'\] are not attribute columns"):
        run(
            SetAttributesOperator(
                task_id="t", source_path=str(path), identifier_column="id", attribute_types={"score": "int"}
            )
        )
    assert kumulos_connection.requests == []


def test_bad_csv_cells_fail_their_rows_only(kumulos_connection: KumulosEmulator, tmp_path: Path) -> None:
    path = tmp_path / "users.csv"
    path.write_text("identifier,age\na,1\nb,old\nc,3\n")
    summary, _ = run(
        SetAttributesOperator(
            task_id="t",
            source_path=str(path),
            attribute_types={"age": "int"},
            max_failures=1,
            failures_path=str(tmp_path / "f.jsonl"),
        )
    )
    assert summary is not None and (summary["succeeded"], summary["failed"]) == (2, 1)
    assert summary["first_errors"][0]["message"].startswith(
        "Invalid source_path line 3 column 'age': the value is not a valid int"
    )
    [line] = read_jsonl(tmp_path / "f.jsonl")
    assert (line["identifier"], line["attributes"]) == ("b", {"age": "old"})
    assert sorted(r.identifier or "" for r in kumulos_connection.requests) == ["a", "c"]


def test_an_auth_error_stops_the_run_with_the_typed_error(
    kumulos_emulator: KumulosEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(
        "AIRFLOW_CONN_KUMULOS_DEFAULT",
        json.dumps(
            {
                "conn_type": "kumulos",
                "host": kumulos_emulator.base_url,
                "login": "test-api-key",
                "password": "wrong",
            }
        ),
    )
    records = [{"identifier": f"u{i}", "attributes": {}} for i in range(500)]
    ti = XComRecorder()
    with pytest.raises(KumulosAuthError, match="authentication failed"):
        SetAttributesOperator(task_id="t", records=records, max_failures=1000, max_concurrency=4).execute(
            {"ti": ti}
        )
    summary = ti.pushed["return_value"]
    assert summary["failed"] >= 1 and summary["succeeded"] == 0
    assert summary["total"] < 50 and len(kumulos_emulator.requests) < 50
    assert "wrong" not in json.dumps(summary)


# --- DeleteAttributesOperator -----------------------------------------------------------------------


def test_delete_clears_one_user(kumulos_connection: KumulosEmulator) -> None:
    emu = kumulos_connection
    emu.set_attributes("a", {"x": 1})
    summary, _ = run(DeleteAttributesOperator(task_id="t", user_id="a"))
    assert emu.get_attributes("a") == {}
    assert summary is not None and (summary["succeeded"], summary["missing"]) == (1, 0)


def test_delete_many_from_a_list_and_from_text_jsonl_and_csv_files(
    kumulos_connection: KumulosEmulator, tmp_path: Path
) -> None:
    emu = kumulos_connection
    ids = [f"d{i}" for i in range(40)]
    for ident in ids:
        emu.set_attributes(ident, {"x": ident})
    (tmp_path / "ids.txt").write_text("\n".join(ids[10:20]) + "\n")
    (tmp_path / "ids.jsonl").write_text("".join(json.dumps({"identifier": i}) + "\n" for i in ids[20:30]))
    (tmp_path / "ids.csv").write_text("name,identifier\n" + "".join(f"n,{i}\n" for i in ids[30:]))
    run(DeleteAttributesOperator(task_id="t", user_ids=ids[:10], max_concurrency=5))
    for name in ("ids.txt", "ids.jsonl", "ids.csv"):
        run(DeleteAttributesOperator(task_id="t", source_path=str(tmp_path / name)))
    assert [emu.get_attributes(ident) for ident in ids] == [{}] * 40
    assert puts(emu, "DELETE") == {ident: [204] for ident in ids}


def test_deleting_a_missing_user_is_done_with_missing_ok(kumulos_connection: KumulosEmulator) -> None:
    summary, _ = run(
        DeleteAttributesOperator(task_id="t", user_ids=["ghost", kumulos_connection.user_ids()[0]])
    )
    assert summary is not None
    assert (summary["succeeded"], summary["missing"], summary["failed"]) == (1, 1, 0)


def test_deleting_a_missing_user_fails_without_missing_ok(
    kumulos_connection: KumulosEmulator, tmp_path: Path
) -> None:
    failures = tmp_path / "failed.jsonl"
    op = DeleteAttributesOperator(task_id="t", user_id="ghost", missing_ok=False, failures_path=str(failures))
    with pytest.raises(KumulosError, match="delete attributes: 1 of 1 records failed") as caught:
        run(op)
    assert isinstance(caught.value.__cause__, KumulosUserNotFoundError)
    [line] = read_jsonl(failures)
    assert line["identifier"] == "ghost" and "attributes" not in line
    assert (line["error"]["type"], line["error"]["status"]) == ("KumulosUserNotFoundError", 400)


def test_delete_dry_run_sends_nothing(kumulos_connection: KumulosEmulator) -> None:
    summary, _ = run(DeleteAttributesOperator(task_id="t", user_ids=["a", "b", "a"], dry_run=True))
    assert kumulos_connection.requests == []
    assert summary is not None
    assert (summary["skipped"], summary["duplicates"], summary["examples"]) == (
        3,
        1,
        [{"identifier": i, "attribute_keys": []} for i in ("a", "b", "a")],
    )


@pytest.mark.parametrize(
    ("kwargs", "parameter", "problem"),
    [
        (
            {"user_id": "a", "user_ids": ["b"]},
            "user_id / user_ids / source_path / sql",
            "got user_id and user_ids",
        ),
        ({"user_ids": "a"}, "user_ids", "a string that is not valid JSON"),
        ({"user_ids": [""], "dry_run": "no"}, "dry_run", "is not a bool"),
        ({"user_id": "a", "missing_ok": 1}, "missing_ok", "is not a bool"),
        ({"user_id": "a", "hook_params": {"max_retries": -1}}, "hook_params['max_retries']", ">= 0"),
    ],
)
def test_delete_refuses_bad_arguments_before_any_request(
    kumulos_connection: KumulosEmulator, kwargs: dict[str, Any], parameter: str, problem: str
) -> None:
    with pytest.raises(KumulosInputError) as caught:
        run(DeleteAttributesOperator(task_id="t", **kwargs))
    assert caught.value.parameter == parameter
    assert problem in str(caught.value)
    assert kumulos_connection.requests == []
