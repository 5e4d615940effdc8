"""Users added and removed while an export pages: no duplicates, the mismatch reported, "fail" publishes nothing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_export_support import leftovers, read_jsonl, run_export

from airflow_provider_kumulos.exceptions import KumulosCountMismatchError
from airflow_provider_kumulos.testing.emulator import KumulosEmulator


def _drift(emulator: KumulosEmulator) -> set[str]:
    """After the 2nd page: remove 3 users, insert 20 at random positions. Returns every id ever present."""
    before = set(emulator.user_ids())
    emulator.schedule_drift(after_requests=2, add=20, remove=3)
    return before


def test_drift_is_deduplicated_and_reported(
    kumulos_connection: KumulosEmulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = _drift(kumulos_connection)
    path = tmp_path / "users.jsonl"
    summary = run_export(output_path=str(path), page_size=10)

    identifiers = [user["identifier"] for user in read_jsonl(path.read_bytes())]
    assert len(identifiers) == len(set(identifiers)) == summary["users_written"]
    assert set(identifiers) <= before | set(kumulos_connection.user_ids())
    assert summary["total_users_start"] == 50 and summary["total_users_end"] == 67
    assert summary["duplicates_dropped"] > 0
    assert summary["users_scanned"] == summary["users_written"] + summary["duplicates_dropped"]
    assert "totalUsers changed from 50 to 67" in summary["count_mismatch"]
    warning = [
        line for line in capsys.readouterr().out.splitlines() if "user set changed while paging" in line
    ]
    assert len(warning) == 1 and "warning" in warning[0]


def test_drift_with_fail_publishes_nothing(kumulos_connection: KumulosEmulator, tmp_path: Path) -> None:
    _drift(kumulos_connection)
    path = tmp_path / "users.jsonl"
    path.write_text("previous\n")
    with pytest.raises(KumulosCountMismatchError) as caught:
        run_export(output_path=str(path), page_size=10, on_count_mismatch="fail")
    assert "totalUsers changed" in str(caught.value)
    assert path.read_text() == "previous\n"
    assert leftovers(tmp_path) == ["users.jsonl"]


def test_drift_with_fail_removes_the_parts(kumulos_connection: KumulosEmulator, tmp_path: Path) -> None:
    _drift(kumulos_connection)
    out = tmp_path / "parts"
    with pytest.raises(KumulosCountMismatchError):
        run_export(output_path=str(out), page_size=10, split_every=15, on_count_mismatch="fail")
    assert leftovers(out) == []


def test_drift_in_xcom_mode_returns_unique_users(kumulos_connection: KumulosEmulator) -> None:
    _drift(kumulos_connection)
    users = run_export(page_size=10)
    identifiers = [user["identifier"] for user in users]
    assert len(identifiers) == len(set(identifiers))
    with pytest.raises(KumulosCountMismatchError):
        _drift(kumulos_connection)
        run_export(page_size=10, on_count_mismatch="fail")


def test_stable_export_reports_no_mismatch_even_with_fail(
    kumulos_connection: KumulosEmulator, tmp_path: Path
) -> None:
    summary = run_export(output_path=str(tmp_path / "u.jsonl"), page_size=10, on_count_mismatch="fail")
    assert summary["count_mismatch"] is None
    assert json.loads((tmp_path / "u.jsonl").read_text().splitlines()[0])["identifier"]
