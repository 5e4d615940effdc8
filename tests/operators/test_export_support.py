"""Helpers for the export tests: read outputs back independently of the exporter, and run it for real.

Readers here use only json, csv, gzip and pyarrow directly, so a bug in the exporter's own readers
cannot hide a bug in its writers. The module holds no tests.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from airflow_provider_kumulos.operators.export import ExportUsersOperator

TIMESTAMPS = ("firstActive", "lastActive", "createdAt", "updatedAt")


class MemoryStateStore:
    """Stands in for Airflow 3.3's ``task_state_store`` (same get/set/delete contract)."""

    def __init__(self) -> None:
        self.values: dict[str, Any] = {}
        self.writes = 0

    def get(self, key: str, default: Any = None) -> Any:
        return json.loads(json.dumps(self.values[key])) if key in self.values else default

    def set(self, key: str, value: Any, *, retention: Any = None) -> None:
        assert value is not None
        self.values[key] = json.loads(json.dumps(value))
        self.writes += 1

    def delete(self, key: str) -> None:
        self.values.pop(key, None)


def run_export(state_store: MemoryStateStore | None = None, **kwargs: Any) -> Any:
    """Build the operator (task id ``export``) and execute it with a minimal real context."""
    kwargs.setdefault("kumulos_conn_id", "kumulos_default")
    kwargs.setdefault("hook_params", {"backoff_base": 0.01, "backoff_max": 0.05, "max_retries": 2})
    operator = ExportUsersOperator(task_id="export", **kwargs)
    context: dict[str, Any] = {}
    if state_store is not None:
        context["task_state_store"] = state_store
    return operator.execute(context)  # type: ignore[arg-type]


def raw_bytes(data: bytes, compression: str | None) -> bytes:
    """Stored bytes, decompressed when gzip."""
    return gzip.decompress(data) if compression == "gzip" else data


def read_jsonl(data: bytes) -> list[dict[str, Any]]:
    lines = data.decode("utf-8").splitlines()
    assert all(line.strip() for line in lines), "blank line in JSON Lines output"
    return [json.loads(line) for line in lines]


def read_json(data: bytes) -> list[dict[str, Any]]:
    document = json.loads(data)
    assert isinstance(document, list)
    return document


def read_csv(data: bytes) -> tuple[list[str], list[dict[str, str]]]:
    reader = csv.DictReader(io.StringIO(data.decode("utf-8"), newline=""))
    rows = list(reader)
    return list(reader.fieldnames or []), rows


def read_parquet(data: bytes) -> tuple[Any, list[dict[str, Any]]]:
    import pyarrow.parquet as pq

    table = pq.read_table(io.BytesIO(data))
    return table.schema, table.to_pylist()


def canonical_cell(text: str) -> Any:
    """A csv cell compared by meaning: JSON values parsed (any float spelling), plain text as is."""
    try:
        value = json.loads(text)
    except ValueError:
        return text
    return text if isinstance(value, str) else value


def csv_cell(value: Any) -> str:
    """The documented csv mapping, implemented independently: null empty, strings as is, else JSON."""
    if value is None:
        return ""
    return value if isinstance(value, str) else json.dumps(value)


def user_as_csv_row(user: dict[str, Any], header: list[str]) -> dict[str, Any]:
    """What the csv row of ``user`` must hold, cell by cell, for this header."""
    attributes = user.get("attributes") or {}
    named = {column[len("attr.") :] for column in header if column.startswith("attr.")}
    row: dict[str, Any] = {}
    for column in header:
        if column.startswith("attr."):
            text = csv_cell(attributes.get(column[len("attr.") :]))
        elif column == "attributes_json":
            extra = {key: value for key, value in attributes.items() if key not in named}
            text = json.dumps(extra) if extra else ""
        else:
            text = csv_cell(user.get(column))
        row[column] = canonical_cell(text)
    return row


def parquet_row(user: dict[str, Any], columns: list[str]) -> dict[str, Any]:
    """What the parquet row of ``user`` must hold: UTC timestamps, JSON columns parsed back."""
    row: dict[str, Any] = {}
    for column in columns:
        value = user.get(column)
        if column in TIMESTAMPS and value is not None:
            value = datetime.fromisoformat(value).astimezone(timezone.utc).isoformat()
        row[column] = value
    return row


def actual_set(data: bytes, fmt: str, compression: str | None = None) -> tuple[set[str], list[str]]:
    """The users stored in an export, as canonical JSON strings, and the column names (csv/parquet)."""
    body = raw_bytes(data, compression)
    if fmt == "jsonl":
        return as_set(read_jsonl(body)), []
    if fmt == "json":
        return as_set(read_json(body)), []
    if fmt == "csv":
        header, rows = read_csv(body)
        return as_set([{key: canonical_cell(text) for key, text in row.items()} for row in rows]), header
    schema, rows = read_parquet(body)
    for row in rows:
        for name in TIMESTAMPS:
            if row.get(name) is not None:
                row[name] = row[name].isoformat()
        for name in ("attributes", "installs"):
            if row.get(name) is not None:
                row[name] = json.loads(row[name])
    return as_set(rows), list(schema.names)


def as_set(users: list[dict[str, Any]]) -> set[str]:
    """Users as a set of canonical JSON strings (for exact set comparison)."""
    return {json.dumps(user, sort_keys=True) for user in users}


def expected_set(
    users: list[dict[str, Any]], fmt: str, columns: list[str], keep: tuple[str, ...] | None = None
) -> set[str]:
    """The given API users as ``fmt`` must store them (``columns`` from the file for csv/parquet)."""
    if keep is not None:
        users = [{key: value for key, value in user.items() if key in keep} for user in users]
    if fmt == "csv":
        return as_set([user_as_csv_row(user, columns) for user in users])
    if fmt == "parquet":
        return as_set([parquet_row(user, columns) for user in users])
    return as_set(users)


def assert_export_matches(
    data: bytes,
    users: list[dict[str, Any]],
    fmt: str,
    compression: str | None = None,
    keep: tuple[str, ...] | None = None,
) -> list[str]:
    """The export holds exactly ``users`` (as a set, no duplicates); returns its columns."""
    stored, columns = actual_set(data, fmt, compression)
    assert count_records(data, fmt, compression) == len(stored), "duplicate records in the export"
    assert stored == expected_set(users, fmt, columns, keep)
    return columns


def count_records(data: bytes, fmt: str, compression: str | None = None) -> int:
    """Records in an export (duplicates included)."""
    body = raw_bytes(data, compression)
    if fmt == "jsonl":
        return len(read_jsonl(body))
    if fmt == "json":
        return len(read_json(body))
    if fmt == "csv":
        return len(read_csv(body)[1])
    return len(read_parquet(body)[1])


def leftovers(directory: Path) -> list[str]:
    """Every file under ``directory`` (temporary objects included)."""
    return sorted(str(path.relative_to(directory)) for path in directory.rglob("*") if path.is_file())
