"""SQL sources (``sql`` + ``sql_conn_id``) executed for real: SQLite database files and the emulator."""

from __future__ import annotations

import datetime
import decimal
import json
import sqlite3
import uuid
from pathlib import Path
from typing import Any

import pytest
from attributes_support import read_jsonl, run

from airflow_provider_kumulos._bulk import sql_source as _sql_source
from airflow_provider_kumulos._bulk.sql_source import json_value, open_sql_source
from airflow_provider_kumulos.exceptions import KumulosError, KumulosInputError
from airflow_provider_kumulos.operators.kumulos import DeleteAttributesOperator, SetAttributesOperator
from airflow_provider_kumulos.testing.emulator import KumulosEmulator


class Warehouse:
    """A SQLite database file behind the Airflow connection ``warehouse``."""

    conn_id = "warehouse"

    def __init__(self, path: Path) -> None:
        self.path = path

    def run(self, *statements: str, rows: list[tuple[Any, ...]] | None = None) -> None:
        with sqlite3.connect(self.path) as db:
            for statement in statements:
                if rows is not None and "?" in statement:
                    db.executemany(statement, rows)
                else:
                    db.execute(statement)


@pytest.fixture
def warehouse(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Warehouse:
    path = tmp_path / "warehouse.db"
    monkeypatch.setenv("AIRFLOW_CONN_WAREHOUSE", json.dumps({"conn_type": "sqlite", "host": str(path)}))
    return Warehouse(path)


# --- values -----------------------------------------------------------------------------------------


def test_sqlite_rows_become_records_with_their_columns_as_attributes(
    kumulos_connection: KumulosEmulator, warehouse: Warehouse
) -> None:
    emu = kumulos_connection
    warehouse.run(
        "CREATE TABLE segments (user_id, tier TEXT, score REAL, visits INTEGER, tags TEXT, note TEXT)",
        "INSERT INTO segments VALUES (?, ?, ?, ?, ?, ?)",
        rows=[
            (1001, "gold", 9.5, 3, '["a", "b"]', None),
            ("user-b", "silver", -0.25, 0, "{}", "é ü"),
        ],
    )
    summary = run(
        SetAttributesOperator(
            task_id="t",
            sql="SELECT * FROM segments ORDER BY tier",
            sql_conn_id="warehouse",
            identifier_column="user_id",
        )
    )
    assert (summary["total"], summary["succeeded"], summary["failed"]) == (2, 2, 0)
    assert emu.get_attributes("1001") == {  # an integer identifier is sent as its text
        "tier": "gold",
        "score": 9.5,
        "visits": 3,
        "tags": '["a", "b"]',  # JSON held as text stays text
        "note": None,
    }
    assert emu.get_attributes("user-b") == {
        "tier": "silver",
        "score": -0.25,
        "visits": 0,
        "tags": "{}",
        "note": "é ü",
    }


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, None),
        (True, True),
        (False, False),
        (7, 7),
        (2**70, 2**70),
        (1.5, 1.5),
        ("text", "text"),
        (decimal.Decimal("42"), 42),
        (decimal.Decimal("12.50"), 12.5),
        (decimal.Decimal("-0.001"), -0.001),
        (datetime.date(2024, 5, 1), "2024-05-01"),
        (datetime.datetime(2024, 5, 1, 12, 30, 5), "2024-05-01T12:30:05"),
        (
            datetime.datetime(2024, 5, 1, 12, 30, tzinfo=datetime.timezone(datetime.timedelta(hours=2))),
            "2024-05-01T12:30:00+02:00",
        ),
        (datetime.time(8, 15), "08:15:00"),
        (datetime.timedelta(hours=8, minutes=15), "08:15:00"),  # MySQL's TIME
        (datetime.timedelta(hours=23, seconds=59, microseconds=5), "23:00:59.000005"),
        (uuid.UUID(int=1), "00000000-0000-0000-0000-000000000001"),
        ({"a": [1, decimal.Decimal("2.5")], "b": {"c": None}}, {"a": [1, 2.5], "b": {"c": None}}),
        ([datetime.date(2024, 1, 2), "x"], ["2024-01-02", "x"]),
        ((1, 2), [1, 2]),
    ],
)
def test_database_values_map_to_json(value: object, expected: object) -> None:
    converted = json_value(value)
    assert converted == expected
    assert type(converted) is type(expected)
    json.dumps(converted)


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        (b"\x00\x01", "a bytes value cannot be sent as JSON"),
        (memoryview(b"x"), "a memoryview value cannot be sent as JSON"),
        (datetime.timedelta(days=1), "a duration that is not a time of day"),
        (datetime.timedelta(seconds=-1), "a duration that is not a time of day"),
        (decimal.Decimal("NaN"), "NaN and Infinity"),
        ({1: "x"}, "keys that are not strings"),
        ([object()], "a object value cannot be sent as JSON"),
    ],
)
def test_values_without_a_json_form_are_refused_without_quoting_them(value: object, problem: str) -> None:
    with pytest.raises(ValueError, match=problem) as caught:
        json_value(value)
    assert "\\x00" not in str(caught.value)


def test_a_value_that_cannot_become_json_fails_its_record_not_the_task(
    kumulos_connection: KumulosEmulator, warehouse: Warehouse, tmp_path: Path
) -> None:
    emu = kumulos_connection
    warehouse.run(
        "CREATE TABLE users (identifier, avatar BLOB, tier TEXT)",
        "INSERT INTO users VALUES (?, ?, ?)",
        rows=[("a", None, "gold"), ("b", b"\x89PNG", "silver"), ("c", None, "bronze")],
    )
    failures = tmp_path / "failed.jsonl"
    summary = run(
        SetAttributesOperator(
            task_id="t",
            sql="SELECT identifier, avatar, tier FROM users ORDER BY identifier",
            sql_conn_id="warehouse",
            max_failures=1,
            failures_path=str(failures),
        )
    )
    assert (summary["succeeded"], summary["failed"]) == (2, 1)
    assert emu.get_attributes("a") == {"avatar": None, "tier": "gold"}
    assert "b" not in emu.user_ids()
    [failure] = read_jsonl(failures)
    assert failure["identifier"] == "b"
    assert failure["error"]["where"] == "sql row 2"
    assert failure["error"]["message"].startswith(
        "Invalid sql row 2 column 'avatar': a bytes value cannot be sent as JSON."
    )
    assert summary["first_errors"][0]["where"] == "sql row 2"


def test_null_and_non_text_identifiers_fail_their_record(
    kumulos_connection: KumulosEmulator, warehouse: Warehouse
) -> None:
    warehouse.run(
        "CREATE TABLE users (identifier, tier TEXT)",
        "INSERT INTO users VALUES (?, ?)",
        rows=[(None, "x"), (2.5, "y"), ("", "z"), (7, "ok")],
    )
    summary = run(
        SetAttributesOperator(task_id="t", sql="SELECT * FROM users", sql_conn_id="warehouse", max_failures=3)
    )
    assert (summary["succeeded"], summary["failed"]) == (1, 3)
    assert [error["where"] for error in summary["first_errors"]] == ["sql row 1", "sql row 2", "sql row 3"]
    assert kumulos_connection.get_attributes("7") == {"tier": "ok"}


# --- errors before any request ----------------------------------------------------------------------


def test_invalid_sql_fails_with_the_database_message_and_the_query_first_line(
    kumulos_connection: KumulosEmulator, warehouse: Warehouse
) -> None:
    warehouse.run("CREATE TABLE users (identifier)")
    with pytest.raises(KumulosInputError) as caught:
        run(
            SetAttributesOperator(
                task_id="t",
                sql="\n  SELECT identifier, tier\n  FROM nowhere\n  WHERE 1 = 1",
                sql_conn_id="warehouse",
            )
        )
    assert caught.value.parameter == "sql"
    message = str(caught.value)
    assert "the database refused the query starting 'SELECT identifier, tier'" in message
    assert "no such table: nowhere" in message
    assert kumulos_connection.requests == []


@pytest.mark.parametrize("conn_id", ["kumulos_default", "web"])
def test_a_connection_that_is_not_a_database_fails_before_any_request(
    kumulos_connection: KumulosEmulator, monkeypatch: pytest.MonkeyPatch, conn_id: str
) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_WEB", json.dumps({"conn_type": "http", "host": "127.0.0.1"}))
    with pytest.raises(KumulosInputError) as caught:
        run(SetAttributesOperator(task_id="t", sql="SELECT 1 AS identifier", sql_conn_id=conn_id))
    assert caught.value.parameter == "sql_conn_id"
    assert f"connection {conn_id!r}" in str(caught.value)
    assert "is not a database connection" in str(caught.value)
    assert kumulos_connection.requests == []


def test_a_missing_identifier_column_names_the_columns_the_query_returned(
    kumulos_connection: KumulosEmulator, warehouse: Warehouse
) -> None:
    warehouse.run("CREATE TABLE users (id, tier)", "INSERT INTO users VALUES ('a', 'gold')")
    with pytest.raises(KumulosInputError) as caught:
        run(SetAttributesOperator(task_id="t", sql="SELECT id, tier FROM users", sql_conn_id="warehouse"))
    assert caught.value.parameter == "identifier_column"
    assert "column 'identifier' is not among the columns the query returned ['id', 'tier']" in str(
        caught.value
    )
    assert kumulos_connection.requests == []


@pytest.mark.parametrize(
    ("sql", "parameter", "problem"),
    [
        ("SELECT 'a' AS identifier, 1 AS x, 2 AS x", "sql", "returns column(s) ['x'] more than once"),
        ("CREATE TABLE t (identifier)", "sql", "the statement returned no columns"),
        ("   ", "sql", "is not a query"),
    ],
)
def test_results_without_usable_columns_fail_before_any_request(
    kumulos_connection: KumulosEmulator, warehouse: Warehouse, sql: str, parameter: str, problem: str
) -> None:
    with pytest.raises(KumulosInputError) as caught:
        run(SetAttributesOperator(task_id="t", sql=sql, sql_conn_id="warehouse"))
    assert caught.value.parameter == parameter
    assert problem in str(caught.value)
    assert kumulos_connection.requests == []


@pytest.mark.parametrize(
    ("operator", "kwargs", "parameter", "problem"),
    [
        (
            SetAttributesOperator,
            {"sql": "SELECT 1", "sql_conn_id": "w", "records": []},
            "user_id / records / source_path / sql",
            "got records and sql",
        ),
        (
            SetAttributesOperator,
            {"sql": "SELECT 1", "sql_conn_id": "w", "source_path": "x.jsonl"},
            "user_id / records / source_path / sql",
            "got source_path and sql",
        ),
        (
            SetAttributesOperator,
            {"sql": "SELECT 1", "sql_conn_id": "w", "user_id": "a", "attributes": {}},
            "user_id / records / source_path / sql",
            "got user_id and sql",
        ),
        (
            DeleteAttributesOperator,
            {"sql": "SELECT 1", "sql_conn_id": "w", "user_ids": ["a"]},
            "user_id / user_ids / source_path / sql",
            "got user_ids and sql",
        ),
        (SetAttributesOperator, {"sql": "SELECT 1"}, "sql_conn_id", "sql was given without sql_conn_id"),
        (SetAttributesOperator, {"records": [], "sql_conn_id": "w"}, "sql_conn_id", "only applies to a sql"),
        (
            DeleteAttributesOperator,
            {"user_ids": [], "sql_parameters": [1]},
            "sql_parameters",
            "only applies to a sql",
        ),
        (
            DeleteAttributesOperator,
            {"user_ids": [], "sql_hook_params": {"schema": "crm"}},
            "sql_hook_params",
            "only applies to a sql",
        ),
        (
            SetAttributesOperator,
            {"sql": "SELECT 1", "sql_conn_id": "w", "attribute_types": {"a": "int"}},
            "attribute_types",
            "only applies to a CSV source_path",
        ),
    ],
)
def test_sql_is_one_exclusive_way_of_naming_the_records(
    operator: type, kwargs: dict[str, Any], parameter: str, problem: str
) -> None:
    with pytest.raises(KumulosInputError) as caught:
        operator(task_id="t", **kwargs)
    assert caught.value.parameter == parameter
    assert problem in str(caught.value)


def test_sql_parameters_that_are_not_a_list_or_mapping_fail_before_any_request(
    kumulos_connection: KumulosEmulator, warehouse: Warehouse
) -> None:
    with pytest.raises(KumulosInputError) as caught:
        run(
            SetAttributesOperator(
                task_id="t", sql="SELECT ? AS identifier", sql_conn_id="warehouse", sql_parameters="5"
            )
        )
    assert caught.value.parameter == "sql_parameters"
    assert kumulos_connection.requests == []


@pytest.mark.parametrize(
    ("sql_hook_params", "problem"),
    [
        ("5", "expected a mapping of the database hook's arguments"),
        ("{oops", "a string that is not valid JSON"),
        ({1: "x"}, "expected a mapping of argument names to values"),
    ],
)
def test_sql_hook_params_that_are_not_a_mapping_of_names_fail_before_any_request(
    kumulos_connection: KumulosEmulator, warehouse: Warehouse, sql_hook_params: Any, problem: str
) -> None:
    op = SetAttributesOperator(
        task_id="t", sql="SELECT 1 AS identifier", sql_conn_id="warehouse", sql_hook_params=sql_hook_params
    )
    with pytest.raises(KumulosInputError) as caught:
        run(op)
    assert caught.value.parameter == "sql_hook_params"
    assert problem in str(caught.value)
    assert kumulos_connection.requests == []


def test_sql_hook_params_the_hook_does_not_take_fail_before_any_request(
    kumulos_connection: KumulosEmulator,
) -> None:
    # The Kumulos hook takes no such argument: building it fails, and the error names sql_hook_params.
    op = SetAttributesOperator(
        task_id="t", sql="SELECT 1", sql_conn_id="kumulos_default", sql_hook_params={"schema": "crm"}
    )
    with pytest.raises(KumulosInputError) as caught:
        run(op)
    assert caught.value.parameter == "sql_hook_params"
    assert "the hook of connection 'kumulos_default' (type 'kumulos') refused them" in str(caught.value)
    assert "schema" in str(caught.value)
    assert kumulos_connection.requests == []


def test_sql_hook_params_are_templated_and_shown_as_json() -> None:
    for operator in (SetAttributesOperator, DeleteAttributesOperator):
        assert "sql_hook_params" in operator.template_fields
        assert operator.template_fields_renderers["sql_hook_params"] == "json"


# --- parameters, deletes, streaming -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("sql", "parameters"),
    [
        ("SELECT identifier, tier FROM users WHERE tier = ? AND visits >= ?", ["gold", 2]),
        (
            "SELECT identifier, tier FROM users WHERE tier = :tier AND visits >= :visits",
            {"tier": "gold", "visits": 2},
        ),
        ("SELECT identifier, tier FROM users WHERE tier = ? AND visits >= ?", '["gold", 2]'),
    ],
)
def test_sql_parameters_are_bound_by_the_driver(
    kumulos_connection: KumulosEmulator, warehouse: Warehouse, sql: str, parameters: Any
) -> None:
    warehouse.run(
        "CREATE TABLE users (identifier, tier, visits)",
        "INSERT INTO users VALUES (?, ?, ?)",
        rows=[("a", "gold", 5), ("b", "gold", 1), ("c", "silver", 9), ("d'; --", "gold", 2)],
    )
    summary = run(
        SetAttributesOperator(task_id="t", sql=sql, sql_conn_id="warehouse", sql_parameters=parameters)
    )
    assert summary["succeeded"] == 2
    assert sorted(request.identifier for request in kumulos_connection.requests) == ["a", "d'; --"]


def test_delete_takes_its_identifiers_from_sql(
    kumulos_connection: KumulosEmulator, warehouse: Warehouse
) -> None:
    emu = kumulos_connection
    existing = emu.user_ids()[:3]
    warehouse.run(
        "CREATE TABLE churned (identifier, churned_on)",
        "INSERT INTO churned VALUES (?, ?)",
        rows=[(ident, "2024-05-01") for ident in existing] + [("never-existed", "2024-05-02")],
    )
    summary = run(DeleteAttributesOperator(task_id="t", sql="SELECT * FROM churned", sql_conn_id="warehouse"))
    assert (summary["succeeded"], summary["missing"], summary["failed"]) == (3, 1, 0)
    assert sorted(r.identifier for r in emu.requests if r.method == "DELETE") == sorted(
        [*existing, "never-existed"]
    )


class RecordingCursor:
    """A real sqlite3 cursor that notes every fetchmany and how many rows it returned."""

    def __init__(self, cursor: sqlite3.Cursor, fetches: list[tuple[int, int]]) -> None:
        self._cursor = cursor
        self.fetches = fetches

    def __getattr__(self, name: str) -> Any:
        return getattr(self._cursor, name)

    def fetchmany(self, size: int) -> list[Any]:
        rows = self._cursor.fetchmany(size)
        self.fetches.append((size, len(rows)))
        return rows

    def fetchall(self) -> list[Any]:
        raise AssertionError("the whole result must never be fetched at once")


@pytest.fixture
def recorded_fetches(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, int]]:
    """Route sqlite3 connections through the per-driver cursor hook point, recording every fetch."""
    fetches: list[tuple[int, int]] = []
    monkeypatch.setitem(
        _sql_source.SERVER_SIDE_CURSORS, "sqlite3", lambda conn: RecordingCursor(conn.cursor(), fetches)
    )
    return fetches


def test_rows_are_streamed_a_batch_at_a_time(
    warehouse: Warehouse, recorded_fetches: list[tuple[int, int]]
) -> None:
    rows = 100_000
    warehouse.run(
        "CREATE TABLE users (identifier, n)",
        f"INSERT INTO users WITH RECURSIVE seq(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM seq WHERE n < {rows}) "
        "SELECT 'u' || n, n FROM seq",
    )
    held = 0
    with open_sql_source(
        "SELECT identifier, n FROM users ORDER BY n",
        conn_id="warehouse",
        parameters=None,
        identifier_column="identifier",
        with_attributes=True,
    ) as records:
        assert recorded_fetches == [(1000, 1000)]  # the first batch only, before anything is sent
        for count, record in enumerate(records, 1):
            fetched = sum(got for _, got in recorded_fetches)
            held = max(held, fetched - count)
            if count == 1:
                assert (record.identifier, record.attributes) == ("u1", {"n": 1})
        assert count == rows
    assert held < _sql_source.FETCH_ROWS
    assert {asked for asked, _ in recorded_fetches} == {_sql_source.FETCH_ROWS}
    assert len(recorded_fetches) == rows // _sql_source.FETCH_ROWS + 1  # the last one finds no rows


def test_a_dry_run_reads_a_large_result_through_the_operator(
    kumulos_connection: KumulosEmulator, warehouse: Warehouse, recorded_fetches: list[tuple[int, int]]
) -> None:
    rows = 20_000
    warehouse.run(
        "CREATE TABLE users (identifier, n)",
        f"INSERT INTO users WITH RECURSIVE seq(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM seq WHERE n < {rows}) "
        "SELECT 'u' || n, n FROM seq",
    )
    summary = run(
        SetAttributesOperator(task_id="t", sql="SELECT * FROM users", sql_conn_id="warehouse", dry_run=True)
    )
    assert (summary["total"], summary["skipped"], summary["failed"]) == (rows, rows, 0)
    assert len(recorded_fetches) == rows // _sql_source.FETCH_ROWS + 1
    assert kumulos_connection.requests == []


def test_a_database_error_part_way_fails_the_task_and_publishes_no_failures_file(
    kumulos_connection: KumulosEmulator, warehouse: Warehouse, tmp_path: Path
) -> None:
    rows = [(f"u{n}", '{"a": 1}') for n in range(1, 1501)]
    rows[1200] = ("u1201", "{not json")  # SQLite evaluates json_extract only when it reaches the row
    warehouse.run("CREATE TABLE users (identifier, payload)", "INSERT INTO users VALUES (?, ?)", rows=rows)
    failures = tmp_path / "failed.jsonl"
    with pytest.raises(KumulosError) as caught:
        run(
            SetAttributesOperator(
                task_id="t",
                sql="SELECT identifier, json_extract(payload, '$.a') AS a FROM users ORDER BY rowid",
                sql_conn_id="warehouse",
                dry_run=True,
                failures_path=str(failures),
            )
        )
    assert not isinstance(caught.value, KumulosInputError)
    assert str(caught.value) == "Reading the rows of sql failed after sql row 1000: malformed JSON"
    assert not failures.exists()


def test_a_failing_close_does_not_hide_the_database_error(
    warehouse: Warehouse, monkeypatch: pytest.MonkeyPatch
) -> None:
    class FailingClose(RecordingCursor):
        def close(self) -> None:
            raise sqlite3.ProgrammingError("close failed")

    monkeypatch.setitem(
        _sql_source.SERVER_SIDE_CURSORS, "sqlite3", lambda conn: FailingClose(conn.cursor(), [])
    )
    with (
        pytest.raises(KumulosInputError, match="no such table: nowhere"),
        open_sql_source(
            "SELECT * FROM nowhere",
            conn_id="warehouse",
            parameters=None,
            identifier_column="identifier",
            with_attributes=True,
        ),
    ):
        pass


def test_closing_early_closes_the_cursor_and_the_connection(warehouse: Warehouse) -> None:
    warehouse.run("CREATE TABLE users (identifier)", "INSERT INTO users VALUES ('a'), ('b')")
    with open_sql_source(
        "SELECT * FROM users",
        conn_id="warehouse",
        parameters=None,
        identifier_column="identifier",
        with_attributes=False,
    ) as records:
        assert next(records).identifier == "a"
    # The database file is not locked by a leftover reader: a writer gets through at once.
    with sqlite3.connect(warehouse.path, timeout=0) as db:
        db.execute("DROP TABLE users")


# --- templates in a real DAG run --------------------------------------------------------------------

SQL_DAG = """
import pendulum
from airflow.sdk import dag, task

from airflow_provider_kumulos.operators.kumulos import DeleteAttributesOperator, SetAttributesOperator


@dag(
    dag_id="{dag_id}",
    schedule=None,
    start_date=pendulum.datetime(2024, 1, 1),
    catchup=False,
    template_searchpath=[{sql_folder!r}],
    params={{"tier": "gold", "conn": "warehouse", "kumulos": "kumulos_default"}},
)
def sql_source_dag():
    @task
    def threshold():
        return 2

    SetAttributesOperator(
        task_id="from_file",
        kumulos_conn_id="{{{{ 'kumulos_' ~ 'default' }}}}",
        sql="segment.sql",
        sql_conn_id="{{{{ params.conn }}}}",
        sql_parameters=["{{{{ ti.xcom_pull(task_ids='threshold') }}}}"],
    ) << threshold()
    DeleteAttributesOperator(
        task_id="forget",
        kumulos_conn_id="{{{{ params.kumulos }}}}",
        sql="SELECT identifier FROM users WHERE tier = '{{{{ params.tier }}}}' AND visits < 2",
        sql_conn_id="warehouse",
    )


sql_source_dag()
"""


def test_a_sql_file_is_rendered_as_a_template_in_a_dag_run(
    dag_runner: Any, kumulos_connection: KumulosEmulator, warehouse: Warehouse, tmp_path: Path
) -> None:
    emu = kumulos_connection
    warehouse.run(
        "CREATE TABLE users (identifier, tier, visits)",
        "INSERT INTO users VALUES (?, ?, ?)",
        rows=[("a", "gold", 5), ("b", "gold", 1), ("c", "silver", 9), ("d", "gold", 2)],
    )
    emu.set_attributes("b", {"tier": "gold"})
    folder = tmp_path / "sql"
    folder.mkdir()
    (folder / "segment.sql").write_text(
        "-- users of one tier with enough visits\n"
        'SELECT identifier, tier, visits AS "visits"\n'
        "FROM users\n"
        "WHERE tier = '{{ params.tier }}' AND visits >= CAST(? AS INTEGER)\n"
    )
    dag_id = f"sql_source_{uuid.uuid4().hex[:8]}"
    run = dag_runner.run(SQL_DAG.format(dag_id=dag_id, sql_folder=str(folder)), dag_id)
    assert dag_runner.states(run) == {"threshold": "success", "from_file": "success", "forget": "success"}
    assert {ident: emu.get_attributes(ident) for ident in ("a", "d")} == {
        "a": {"tier": "gold", "visits": 5},
        "d": {"tier": "gold", "visits": 2},
    }
    assert "c" not in emu.user_ids()
    assert emu.get_attributes("b") == {}
    assert dag_runner.xcom(run, "from_file")["succeeded"] == 2
    assert dag_runner.xcom(run, "forget")["succeeded"] == 1
