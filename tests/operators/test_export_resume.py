"""A partitioned export killed midway resumes after its last finished part (task state store, Airflow 3.3+)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from test_export_support import (
    MemoryStateStore,
    actual_set,
    assert_export_matches,
    expected_set,
    leftovers,
    run_export,
)

from airflow_provider_kumulos._export.resume import STATE_KEY
from airflow_provider_kumulos.exceptions import KumulosAuthError
from airflow_provider_kumulos.testing.emulator import Fault, KumulosEmulator

PASS = Fault("slow", delay=0)
#: Default concurrency: faults target a page, and a failed run's requests in flight are waited for.
OPTIONS: dict[str, Any] = {"page_size": 10, "split_every": 15}


def _pages(emulator: KumulosEmulator) -> list[int]:
    """Pages requested, in page order (requests in flight are answered in any order)."""
    return sorted(
        int(request.query["currentPage"][0]) for request in emulator.requests if request.path == "/v2/users"
    )


def _fail_on_page(emulator: KumulosEmulator, page: int) -> None:
    emulator.script_faults([Fault("status", status=401)], page=page)


def _fail_on_request(emulator: KumulosEmulator, number: int) -> None:
    """The ``number``-th request to arrive fails, whichever page it is for."""
    emulator.script_faults([PASS] * (number - 1) + [Fault("status", status=401)], path_prefix="/v2/users")


def _read_parts(out: Path) -> bytes:
    manifest = json.loads((out / "_manifest.json").read_text())
    return b"".join((out / part["name"]).read_bytes() for part in manifest["parts"])


def _settle(emulator: KumulosEmulator) -> None:
    """Wait until requests still in flight from a failed run have been answered (and logged)."""
    seen = -1
    while seen != len(emulator.requests):
        seen = len(emulator.requests)
        time.sleep(0.2)


def _crash_then_resume(
    emulator: KumulosEmulator, out: Path, fail_on: int, by_request: bool = False, **options: Any
) -> tuple[Any, Any]:
    store = MemoryStateStore()
    (_fail_on_request if by_request else _fail_on_page)(emulator, fail_on)
    options = {**OPTIONS, **options}
    with pytest.raises(KumulosAuthError):
        run_export(state_store=store, output_path=str(out), **options)
    checkpoint = store.get(STATE_KEY)
    _settle(emulator)
    emulator.clear_requests()
    summary = run_export(state_store=store, output_path=str(out), **options)
    return checkpoint, (summary, store)


def test_resume_continues_after_the_last_part_at_a_page_boundary(
    kumulos_connection: KumulosEmulator, tmp_path: Path
) -> None:
    out = tmp_path / "parts"
    # Pages of 10, parts of 15: part 1 ends exactly with page 3; page 4 fails.
    checkpoint, (summary, store) = _crash_then_resume(kumulos_connection, out, fail_on=4)

    assert [part["name"] for part in checkpoint["parts"]] == ["part-00000.jsonl", "part-00001.jsonl"]
    assert (checkpoint["next_page"], checkpoint["skip"]) == (4, 0)
    assert _pages(kumulos_connection) == [4, 5]
    assert summary["resumed_parts"] == 2 and summary["parts"] == 4
    assert summary["users_written"] == summary["users_scanned"] == 50
    assert summary["count_mismatch"] is None
    assert store.get(STATE_KEY) is None
    assert_export_matches(_read_parts(out), kumulos_connection.users(), "jsonl")
    assert leftovers(out) == ["_manifest.json", *(f"part-0000{i}.jsonl" for i in range(4))]


def test_resume_inside_a_page_refetches_only_that_page(
    kumulos_connection: KumulosEmulator, tmp_path: Path
) -> None:
    out = tmp_path / "parts"
    # Part 0 ends 5 users into page 2; page 3 fails. The retry re-reads page 2 from its 6th user.
    checkpoint, (summary, _) = _crash_then_resume(kumulos_connection, out, fail_on=3)
    assert (checkpoint["next_page"], checkpoint["skip"]) == (2, 5)
    assert _pages(kumulos_connection) == [2, 3, 4, 5]
    manifest = json.loads((out / "_manifest.json").read_text())
    assert [part["users"] for part in manifest["parts"]] == [15, 15, 15, 5]
    assert summary["duplicates_dropped"] == 0 and summary["users_written"] == 50
    assert_export_matches(_read_parts(out), kumulos_connection.users(), "jsonl")


@pytest.mark.parametrize("fail_on", [3, 4, 5])
def test_resume_with_requests_in_flight_continues_at_its_checkpoint(
    kumulos_connection: KumulosEmulator, tmp_path: Path, fail_on: int
) -> None:
    out = tmp_path / "parts"
    # Three requests in flight: which page the failing request was for depends on timing (page 2,
    # before any part was finished, leaves no checkpoint), so the checkpoint decides what the retry
    # fetches, and the output is exact whatever it was.
    checkpoint, (summary, _) = _crash_then_resume(
        kumulos_connection, out, fail_on=fail_on, by_request=True, max_concurrency=3
    )
    next_page, parts = (checkpoint["next_page"], len(checkpoint["parts"])) if checkpoint else (1, 0)
    assert _pages(kumulos_connection) == list(range(next_page, 6))
    assert summary["resumed_parts"] == parts
    assert summary["duplicates_dropped"] == 0 and summary["users_written"] == 50
    assert_export_matches(_read_parts(out), kumulos_connection.users(), "jsonl")


@pytest.mark.parametrize(("fmt", "compression"), [("csv", "gzip"), ("parquet", None), ("json", None)])
def test_resume_restores_every_format(
    kumulos_connection: KumulosEmulator, tmp_path: Path, fmt: str, compression: str | None
) -> None:
    out = tmp_path / "parts"
    _, (summary, _) = _crash_then_resume(
        kumulos_connection, out, fail_on=4, format=fmt, compression=compression
    )
    assert summary["resumed_parts"] == 2
    manifest = json.loads((out / "_manifest.json").read_text())
    users = kumulos_connection.users()
    stored: set[str] = set()
    headers = set()
    for part in manifest["parts"]:
        part_set, columns = actual_set((out / part["name"]).read_bytes(), fmt, compression)
        assert len(part_set) == part["users"]
        stored |= part_set
        headers.add(tuple(columns))
    assert len(headers) == 1, "every part of one export shares its columns"
    assert stored == expected_set(users, fmt, list(headers.pop()))
    if fmt == "csv":
        assert manifest["csv_attribute_columns"] == sorted(
            set().union(*(u["attributes"] or {} for u in users[:10]))
        )


def test_changed_options_start_over(kumulos_connection: KumulosEmulator, tmp_path: Path) -> None:
    out = tmp_path / "parts"
    store = MemoryStateStore()
    _fail_on_page(kumulos_connection, 4)
    with pytest.raises(KumulosAuthError):
        run_export(state_store=store, output_path=str(out), **OPTIONS)
    _settle(kumulos_connection)
    kumulos_connection.clear_requests()
    summary = run_export(state_store=store, output_path=str(out), page_size=10, split_every=20)
    assert _pages(kumulos_connection) == [1, 2, 3, 4, 5]
    assert summary["resumed_parts"] == 0
    assert_export_matches(_read_parts(out), kumulos_connection.users(), "jsonl")


def test_a_changed_part_means_starting_over(
    kumulos_connection: KumulosEmulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "parts"
    store = MemoryStateStore()
    _fail_on_page(kumulos_connection, 4)
    with pytest.raises(KumulosAuthError):
        run_export(state_store=store, output_path=str(out), **OPTIONS)
    (out / "part-00001.jsonl").write_bytes(b'{"identifier":"intruder"}\n')
    _settle(kumulos_connection)
    kumulos_connection.clear_requests()
    summary = run_export(state_store=store, output_path=str(out), **OPTIONS)
    assert _pages(kumulos_connection) == [1, 2, 3, 4, 5]
    assert summary["resumed_parts"] == 0
    assert "part-00001.jsonl changed since it was written" in capsys.readouterr().out
    assert_export_matches(_read_parts(out), kumulos_connection.users(), "jsonl")


def test_checkpoints_are_saved_after_each_part_and_cleared_on_success(
    kumulos_connection: KumulosEmulator, tmp_path: Path
) -> None:
    store = MemoryStateStore()
    summary = run_export(state_store=store, output_path=str(tmp_path / "parts"), **OPTIONS)
    assert summary["parts"] == 4
    assert store.writes == 3  # after parts 0, 1 and 2; the last part is followed by the manifest
    assert store.get(STATE_KEY) is None


def test_api_failure_with_a_state_store_keeps_finished_parts_but_no_manifest(
    kumulos_connection: KumulosEmulator, tmp_path: Path
) -> None:
    out = tmp_path / "parts"
    run_export(output_path=str(out), **OPTIONS)
    _fail_on_page(kumulos_connection, 4)
    with pytest.raises(KumulosAuthError):
        run_export(state_store=MemoryStateStore(), output_path=str(out), **OPTIONS)
    assert leftovers(out) == ["part-00000.jsonl", "part-00001.jsonl"]
