"""Records from a SQL query on any Airflow database connection (a common-sql ``DbApiHook``), streamed.

The query runs through the connection's own hook and driver. Rows are fetched :data:`FETCH_ROWS` at a
time, through a server-side cursor where the driver offers one (:data:`SERVER_SIDE_CURSORS`), so
memory stays flat whatever the size of the result. Each row becomes a :class:`SourceRecord`, like a
file line: the identifier column names the user, every other column is an attribute whose value is
mapped to JSON (see docs/attributes.md, "SQL sources").
"""

from __future__ import annotations

import contextlib
import datetime
import decimal
import importlib
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from airflow_provider_kumulos._bulk.records import SourceRecord
from airflow_provider_kumulos.exceptions import KumulosError, KumulosInputError

#: Rows asked of the database per ``fetchmany``: the most rows held in memory at once.
FETCH_ROWS = 1000
#: Name of the server-side cursor, for the drivers that need one.
CURSOR_NAME = "kumulos_sql_source"
#: Longest database message and query line quoted in an error.
MAX_QUOTE = 300
#: Label of a row in failures and errors (``sql row 17``).
ROW_LABEL = "sql row"


def _named_cursor(conn: Any) -> Any:
    """psycopg 2 and 3: a named cursor is declared on the server and read a batch at a time."""
    return conn.cursor(name=CURSOR_NAME)


def _mysql_streaming_cursor(module: str) -> Callable[[Any], Any]:
    """PyMySQL and mysqlclient: the unbuffered ``SSCursor`` reads rows off the wire as they are fetched."""

    def cursor(conn: Any) -> Any:
        return conn.cursor(importlib.import_module(f"{module}.cursors").SSCursor)

    return cursor


def _mysql_connector_cursor(conn: Any) -> Any:
    """mysql-connector: its unbuffered cursor, which reads the rest of the result off when closed early."""
    conn.can_consume_results = True  # else closing before the last row raises "Unread result found"
    return conn.cursor(buffered=False)


#: How to open a server-side cursor, by the top-level module of the driver's connection class. Drivers
#: not listed get the plain ``conn.cursor()``; most of them (SQLite, Snowflake, Trino, BigQuery's
#: DB-API) already fetch lazily.
SERVER_SIDE_CURSORS: dict[str, Callable[[Any], Any]] = {
    "psycopg2": _named_cursor,
    "psycopg": _named_cursor,
    "pymysql": _mysql_streaming_cursor("pymysql"),
    "MySQLdb": _mysql_streaming_cursor("MySQLdb"),
    "mysql": _mysql_connector_cursor,
}


class SqlRecords(Iterator[SourceRecord]):
    """The query's rows as records, and its attribute columns (known even when no row came back)."""

    def __init__(self, rows: Iterator[SourceRecord], attribute_columns: list[str]) -> None:
        self._rows = rows
        self.attribute_columns = attribute_columns

    def __next__(self) -> SourceRecord:
        return next(self._rows)


def database_hook(conn_id: str, hook_params: Mapping[str, Any] | None = None) -> Any:
    """The common-sql ``DbApiHook`` of connection ``conn_id``, built with ``hook_params`` (keyword
    arguments of its constructor), or an input error naming ``sql_conn_id`` or ``sql_hook_params``."""
    from airflow.providers.common.sql.hooks.sql import DbApiHook
    from airflow.sdk import BaseHook

    arguments = _check_hook_params(hook_params)
    connection = BaseHook.get_connection(conn_id)
    try:
        hook = connection.get_hook(hook_params=arguments)
    except TypeError as exc:
        if not arguments:
            raise
        raise KumulosInputError(
            "sql_hook_params",
            f"the hook of connection {conn_id!r} (type {connection.conn_type!r}) refused them: {_first_line(exc)}",
            "Pass only keyword arguments of that hook's constructor.",
        ) from None
    except Exception as exc:  # unknown connection type, provider not installed
        raise KumulosInputError(
            "sql_conn_id",
            f"connection {conn_id!r} of type {connection.conn_type!r} has no usable hook ({_first_line(exc)})",
            "Use a database connection whose provider is installed (postgres, sqlite, snowflake...).",
        ) from None
    if not isinstance(hook, DbApiHook):
        raise KumulosInputError(
            "sql_conn_id",
            f"connection {conn_id!r} of type {connection.conn_type!r} is not a database connection "
            f"(its hook {type(hook).__name__} is not a common-sql DbApiHook)",
            "Pass the id of a database connection (postgres, sqlite, snowflake, mysql...).",
        )
    return hook


def _check_hook_params(hook_params: object) -> dict[str, Any]:
    """A mapping of argument names, given to the database hook as they are."""
    if hook_params is None:
        return {}
    if not isinstance(hook_params, Mapping) or not all(isinstance(key, str) and key for key in hook_params):
        raise KumulosInputError(
            "sql_hook_params",
            "expected a mapping of argument names to values",
            'Pass a dict such as {"options": "-c search_path=crm"}.',
        )
    return dict(hook_params)


@contextlib.contextmanager
def open_sql_source(
    sql: object,
    *,
    conn_id: str,
    parameters: Mapping[str, Any] | Sequence[Any] | None,
    identifier_column: str,
    with_attributes: bool,
    fetch_rows: int = FETCH_ROWS,
    hook_params: Mapping[str, Any] | None = None,
) -> Iterator[SqlRecords]:
    """Run ``sql`` on ``conn_id`` (its hook built with ``hook_params``) and yield an iterator over its
    rows as records, fetched lazily.

    The query runs and its first rows are fetched here, so a refused query, a missing identifier
    column or repeated column names fail (``KumulosInputError``) before the caller sends anything.
    """
    if not isinstance(sql, str) or not sql.strip():
        raise KumulosInputError("sql", f"{sql!r} is not a query", "Pass a SELECT statement or a .sql file.")
    hook = database_hook(conn_id, hook_params)
    with _closed_after(hook.get_conn()) as conn:
        opener = SERVER_SIDE_CURSORS.get(type(conn).__module__.split(".")[0])
        with _closed_after(opener(conn) if opener else conn.cursor()) as cursor:
            try:
                cursor.execute(sql, parameters) if parameters is not None else cursor.execute(sql)
                first = cursor.fetchmany(fetch_rows)
            except Exception as exc:  # each driver has its own error classes
                raise KumulosInputError(
                    "sql",
                    f"the database refused the query starting {_first_line(sql)!r}: {_first_line(exc)}",
                    "Fix the query (run it in a SQL client first) or its sql_parameters.",
                ) from None
            columns = _columns(cursor, identifier_column)
            yield SqlRecords(
                _rows(cursor, first, columns, identifier_column, with_attributes, fetch_rows),
                [name for name in columns if name != identifier_column] if with_attributes else [],
            )


@contextlib.contextmanager
def _closed_after(resource: Any) -> Iterator[Any]:
    """Close ``resource`` after the block; a failing close never hides the error that ended the block."""
    try:
        yield resource
    except BaseException:
        with contextlib.suppress(Exception):
            resource.close()
        raise
    resource.close()


def _columns(cursor: Any, identifier_column: str) -> list[str]:
    """The result's column names, checked: unique, and the identifier column among them."""
    if not cursor.description:
        raise KumulosInputError(
            "sql", "the statement returned no columns", "Pass a SELECT (or another statement returning rows)."
        )
    columns = [str(column[0]) for column in cursor.description]
    if identifier_column not in columns:
        raise KumulosInputError(
            "identifier_column",
            f"column {identifier_column!r} is not among the columns the query returned {columns[:20]}",
            "Set identifier_column to the column holding user identifiers, or alias it in the query "
            f"(... AS {identifier_column}).",
        )
    repeated = sorted({name for name in columns if columns.count(name) > 1})
    if repeated:
        raise KumulosInputError(
            "sql",
            f"the query returns column(s) {repeated} more than once",
            "Give every column a unique name (alias them with AS).",
        )
    return columns


def _rows(
    cursor: Any,
    first: Sequence[Sequence[Any]],
    columns: list[str],
    identifier_column: str,
    with_attributes: bool,
    fetch_rows: int,
) -> Iterator[SourceRecord]:
    id_index = columns.index(identifier_column)
    attribute_columns = (
        [(index, name) for index, name in enumerate(columns) if index != id_index] if with_attributes else []
    )
    number = 0
    batch = first
    while batch:
        for row in batch:
            number += 1
            values = list(row.values()) if isinstance(row, Mapping) else row  # dict cursors (RealDictCursor)
            yield _record(f"{ROW_LABEL} {number}", values, id_index, attribute_columns, with_attributes)
        try:
            batch = cursor.fetchmany(fetch_rows)
        except Exception as exc:
            raise KumulosError(
                f"Reading the rows of sql failed after {ROW_LABEL} {number}: {_first_line(exc)}"
            ) from None


def _record(
    where: str,
    row: Sequence[Any],
    id_index: int,
    attribute_columns: list[tuple[int, str]],
    with_attributes: bool,
) -> SourceRecord:
    identifier = _identifier(row[id_index])
    if not with_attributes:
        return SourceRecord(where, identifier)
    attributes: dict[str, Any] = {}
    problem: KumulosInputError | None = None
    for index, name in attribute_columns:
        value = row[index]
        try:
            attributes[name] = json_value(value)
        except ValueError as exc:
            problem = problem or KumulosInputError(
                f"{where} column {name!r}",
                str(exc),
                "Cast the column in the query to a type JSON can carry (text, number), or leave it out.",
            )
            attributes[name] = value
    return SourceRecord(where, identifier, attributes, problem)


def _identifier(value: object) -> object:
    """Identifiers are strings: whole numbers (int, integral Decimal) and UUIDs become their text."""
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if isinstance(value, decimal.Decimal) and value.is_finite() and value == value.to_integral_value():
        return str(int(value))
    if isinstance(value, uuid.UUID):
        return str(value)
    return value  # validated like every identifier: anything but a non-empty str fails the record


def json_value(value: object) -> Any:
    """A database value as a JSON value; ``ValueError`` (never quoting the value) when there is none."""
    if value is None or isinstance(value, str | bool | int | float):
        return value  # NaN and infinities are refused later, with every record's attributes
    if isinstance(value, decimal.Decimal):
        if not value.is_finite():
            raise ValueError("NaN and Infinity cannot be sent as JSON")
        exponent = value.as_tuple().exponent
        return int(value) if isinstance(exponent, int) and exponent >= 0 else float(value)
    if isinstance(value, datetime.date | datetime.time):
        return value.isoformat()
    if isinstance(value, datetime.timedelta):
        return _time_of_day(value)
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, Mapping):
        if not all(isinstance(key, str) for key in value):
            raise ValueError("an object with keys that are not strings cannot be sent as JSON")
        return {key: json_value(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [json_value(item) for item in value]
    raise ValueError(f"a {type(value).__name__} value cannot be sent as JSON")


def _time_of_day(value: datetime.timedelta) -> str:
    """MySQL drivers give a ``TIME`` as a duration: one within a day is that time of day's ISO text."""
    if not datetime.timedelta(0) <= value < datetime.timedelta(days=1):
        raise ValueError("a duration that is not a time of day (00:00 to 24:00) cannot be sent as JSON")
    return (datetime.datetime.min + value).time().isoformat()


def _first_line(value: object) -> str:
    """The first non-blank line of ``value``'s text, shortened for an error message."""
    lines = [line.strip() for line in str(value).splitlines() if line.strip()]
    line = lines[0] if lines else ""
    return line if len(line) <= MAX_QUOTE else line[:MAX_QUOTE] + "..."
