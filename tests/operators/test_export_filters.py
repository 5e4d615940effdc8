"""updated_since filtering (timezone-aware, nulls counted) and projection (fields, include_installs)."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from test_export_support import as_set, assert_export_matches, read_csv, read_parquet, run_export

from airflow_provider_kumulos.testing.emulator import KumulosEmulator


def _median_stamp(users: list[dict[str, Any]], field: str) -> datetime:
    stamps = sorted(datetime.fromisoformat(user[field]) for user in users)
    return stamps[len(stamps) // 2]


@pytest.mark.parametrize("field", ["updatedAt", "lastActive"])
def test_updated_since_keeps_users_at_or_after_the_cutoff(
    kumulos_connection: KumulosEmulator, tmp_path: Path, field: str
) -> None:
    users = kumulos_connection.users()
    cutoff = _median_stamp(users, field)
    # The same instant written in another offset must select the same users.
    since = cutoff.astimezone(timezone(timedelta(hours=-5))).isoformat()
    path = tmp_path / "recent.jsonl"
    summary = run_export(output_path=str(path), updated_since=since, updated_since_field=field, page_size=9)

    kept = [user for user in users if datetime.fromisoformat(user[field]) >= cutoff]
    assert 0 < len(kept) < len(users)
    assert_export_matches(path.read_bytes(), kept, "jsonl")
    assert summary["users_scanned"] == 50
    assert summary["users_written"] == len(kept)
    assert summary["users_filtered_out"] == 50 - len(kept)
    assert summary["count_mismatch"] is None


def test_users_with_a_null_or_garbled_field_are_filtered_and_counted(
    kumulos_emulator: KumulosEmulator, monkeypatch: Any
) -> None:
    kumulos_emulator.add_user("no-stamp", {"a": 1}, lastActive=None)
    kumulos_emulator.add_user("bad-stamp", {"a": 2}, lastActive="last tuesday")
    kumulos_emulator.add_user("z-stamp", {"a": 3}, lastActive="2999-01-01T00:00:00Z")
    monkeypatch.setenv("AIRFLOW_CONN_KUMULOS_DEFAULT", kumulos_emulator.connection_uri())
    users = run_export(updated_since="2100-01-01T00:00:00+00:00", updated_since_field="lastActive")
    assert [user["identifier"] for user in users] == ["z-stamp"]


def test_a_file_export_filters_garbled_stamps_like_an_xcom_export(
    kumulos_emulator: KumulosEmulator, monkeypatch: Any, tmp_path: Path
) -> None:
    kumulos_emulator.add_user("number-stamp", {"a": 1}, lastActive=1714521600)
    kumulos_emulator.add_user("object-stamp", {"a": 2}, lastActive={"at": "2999-01-01T00:00:00Z"})
    kumulos_emulator.add_user("z-stamp", {"a": 3}, lastActive="2999-01-01T00:00:00Z")
    monkeypatch.setenv("AIRFLOW_CONN_KUMULOS_DEFAULT", kumulos_emulator.connection_uri())
    path = tmp_path / "recent.jsonl"
    cutoff = {"updated_since": "2100-01-01T00:00:00+00:00", "updated_since_field": "lastActive"}
    summary = run_export(output_path=str(path), page_size=7, **cutoff)
    assert [json.loads(line)["identifier"] for line in path.read_bytes().splitlines()] == ["z-stamp"]
    assert summary["users_written"] == 1
    assert summary["users_filtered_out"] == summary["users_scanned"] - 1
    assert [user["identifier"] for user in run_export(**cutoff)] == ["z-stamp"]


def test_updated_since_accepts_an_aware_datetime(kumulos_connection: KumulosEmulator) -> None:
    cutoff = _median_stamp(kumulos_connection.users(), "updatedAt")
    users = run_export(updated_since=cutoff)
    assert {user["identifier"] for user in users} == {
        user["identifier"]
        for user in kumulos_connection.users()
        if datetime.fromisoformat(user["updatedAt"]) >= cutoff
    }


@pytest.mark.parametrize("fmt", ["jsonl", "json"])
def test_fields_keep_only_those_keys_and_the_identifier(
    kumulos_connection: KumulosEmulator, tmp_path: Path, fmt: str
) -> None:
    path = tmp_path / f"slim.{fmt}"
    run_export(output_path=str(path), format=fmt, fields=["attributes", "updatedAt"], page_size=11)
    assert_export_matches(
        path.read_bytes(), kumulos_connection.users(), fmt, keep=("identifier", "attributes", "updatedAt")
    )


def test_include_installs_false_drops_installs(kumulos_connection: KumulosEmulator, tmp_path: Path) -> None:
    path = tmp_path / "no-installs.jsonl.gz"
    run_export(output_path=str(path), include_installs=False, compression="gzip")
    keep = ("identifier", "attributes", "firstActive", "lastActive", "inAppEnabled", "createdAt", "updatedAt")
    assert_export_matches(path.read_bytes(), kumulos_connection.users(), "jsonl", "gzip", keep=keep)


def test_projection_in_xcom_mode(kumulos_connection: KumulosEmulator) -> None:
    users = run_export(fields="inAppEnabled")
    assert as_set(users) == as_set(
        [
            {"identifier": u["identifier"], "inAppEnabled": u["inAppEnabled"]}
            for u in kumulos_connection.users()
        ]
    )


def test_projection_shapes_csv_columns(kumulos_connection: KumulosEmulator, tmp_path: Path) -> None:
    path = tmp_path / "slim.csv"
    run_export(output_path=str(path), format="csv", fields=["lastActive"], include_installs=False)
    header, rows = read_csv(path.read_bytes())
    assert header == ["identifier", "lastActive"]
    assert len(rows) == 50
    assert_export_matches(
        path.read_bytes(), kumulos_connection.users(), "csv", keep=("identifier", "lastActive")
    )


def test_projection_shapes_parquet_columns(kumulos_connection: KumulosEmulator, tmp_path: Path) -> None:
    path = tmp_path / "slim.parquet"
    run_export(output_path=str(path), format="parquet", fields=["attributes", "createdAt"])
    schema, _ = read_parquet(path.read_bytes())
    assert schema.names == ["identifier", "attributes", "createdAt"]
    keep = ("identifier", "attributes", "createdAt")
    assert_export_matches(path.read_bytes(), kumulos_connection.users(), "parquet", keep=keep)
