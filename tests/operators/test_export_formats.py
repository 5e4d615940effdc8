"""Every format and compression, one page and many pages: the file holds exactly the emulator's users."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from test_export_support import assert_export_matches, leftovers, read_csv, read_parquet, run_export

from airflow_provider_kumulos.testing.emulator import KumulosEmulator

CASES = [
    ("jsonl", None),
    ("jsonl", "gzip"),
    ("json", None),
    ("json", "gzip"),
    ("csv", None),
    ("csv", "gzip"),
    ("parquet", None),
]


@pytest.mark.parametrize("page_size", [1000, 7], ids=["one-page", "many-pages"])
@pytest.mark.parametrize(("fmt", "compression"), CASES)
def test_export_holds_exactly_the_users(
    kumulos_connection: KumulosEmulator, tmp_path: Path, fmt: str, compression: str | None, page_size: int
) -> None:
    path = tmp_path / "out" / f"users.{fmt}"
    summary = run_export(output_path=str(path), format=fmt, compression=compression, page_size=page_size)

    users = kumulos_connection.users()
    assert_export_matches(path.read_bytes(), users, fmt, compression)
    assert leftovers(tmp_path / "out") == [f"users.{fmt}"]
    pages = -(-len(users) // page_size)
    assert summary["users_written"] == summary["users_scanned"] == len(users) == 50
    assert summary["pages_fetched"] == pages
    assert summary["total_users_start"] == summary["total_users_end"] == 50
    assert summary["duplicates_dropped"] == summary["users_filtered_out"] == 0
    assert summary["count_mismatch"] is None
    assert summary["bytes"] == path.stat().st_size
    assert summary["format"] == fmt and summary["compression"] == compression
    assert summary["path"] == str(path)
    assert len(kumulos_connection.requests) == pages


def test_jsonl_keeps_each_user_byte_for_byte(kumulos_connection: KumulosEmulator, tmp_path: Path) -> None:
    path = tmp_path / "users.jsonl"
    run_export(output_path=str(path), page_size=10)
    lines = path.read_bytes().splitlines()
    sent = {}
    for request in kumulos_connection.requests:
        assert request.status == 200
    for user in kumulos_connection.users():
        sent[user["identifier"]] = user
    assert len(lines) == 50
    for line in lines:
        assert json.loads(line) == sent[json.loads(line)["identifier"]]
        assert b"\n" not in line


def test_gzip_stream_is_a_real_gzip_file(kumulos_connection: KumulosEmulator, tmp_path: Path) -> None:
    path = tmp_path / "users.jsonl.gz"
    summary = run_export(output_path=str(path), compression="gzip")
    assert path.read_bytes()[:2] == b"\x1f\x8b"
    import hashlib

    assert summary["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()


def test_json_array_is_one_document_even_when_empty(
    kumulos_emulator: KumulosEmulator, monkeypatch: Any, tmp_path: Path
) -> None:
    for identifier in kumulos_emulator.user_ids():
        kumulos_emulator.remove_user(identifier)
    monkeypatch.setenv("AIRFLOW_CONN_KUMULOS_DEFAULT", kumulos_emulator.connection_uri())
    json_path, jsonl_path = tmp_path / "empty.json", tmp_path / "empty.jsonl"
    assert run_export(output_path=str(json_path), format="json")["users_written"] == 0
    assert json.loads(json_path.read_bytes()) == []
    assert run_export(output_path=str(jsonl_path))["users_written"] == 0
    assert jsonl_path.read_bytes() == b""


def test_csv_header_and_attribute_columns(kumulos_connection: KumulosEmulator, tmp_path: Path) -> None:
    path = tmp_path / "users.csv"
    run_export(output_path=str(path), format="csv", page_size=5)
    header, rows = read_csv(path.read_bytes())
    first_page_keys = set()
    for user in kumulos_connection.users()[:5]:
        first_page_keys |= set(user["attributes"] or {})
    assert header[:6] == ["identifier", "firstActive", "lastActive", "createdAt", "updatedAt", "inAppEnabled"]
    assert header[6:-2] == [f"attr.{key}" for key in sorted(first_page_keys)]
    assert header[-2:] == ["attributes_json", "installs"]
    assert len(rows) == 50


def test_csv_attribute_columns_argument_fixes_the_header(
    kumulos_connection: KumulosEmulator, tmp_path: Path
) -> None:
    path = tmp_path / "users.csv"
    run_export(output_path=str(path), format="csv", attribute_columns=["email", "notAKey"], page_size=9)
    header, rows = read_csv(path.read_bytes())
    assert header[6:9] == ["attr.email", "attr.notAKey", "attributes_json"]
    assert all(row["attr.notAKey"] == "" for row in rows)
    assert_export_matches(path.read_bytes(), kumulos_connection.users(), "csv")


def test_parquet_schema_and_row_groups(
    kumulos_connection: KumulosEmulator, tmp_path: Path, monkeypatch: Any
) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from airflow_provider_kumulos._export import formats as parquet_format

    monkeypatch.setattr(parquet_format, "ROW_GROUP_USERS", 20)
    path = tmp_path / "users.parquet"
    run_export(output_path=str(path), format="parquet", page_size=8)
    schema, _ = read_parquet(path.read_bytes())
    assert schema.field("identifier").type == pa.string() and not schema.field("identifier").nullable
    assert schema.field("updatedAt").type == pa.timestamp("us", tz="UTC")
    assert schema.field("inAppEnabled").type == pa.bool_()
    assert schema.field("installs").type == pa.string()
    assert pq.ParquetFile(path).metadata.num_row_groups == 3  # 24 + 24 + 2 users: flushed past 20
