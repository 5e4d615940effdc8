"""Change-only sync (``sync_state_path``) and ``remove_absent``, executed for real against the emulator."""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_kumulos._bulk.sync import attributes_digest
from airflow_provider_kumulos.exceptions import KumulosError, KumulosInputError
from airflow_provider_kumulos.operators.kumulos import SetAttributesOperator
from airflow_provider_kumulos.testing._emulator_faults import Fault
from airflow_provider_kumulos.testing.emulator import KumulosEmulator

REJECTED = (422, {"errors": {"attributes": ["invalid"]}})


def records(n: int, **changed: dict[str, Any]) -> list[dict[str, Any]]:
    """``n`` users ``s0``.. with one segment each; ``changed`` replaces some users' attributes."""
    return [
        {"identifier": f"s{i}", "attributes": changed.get(f"s{i}", {"segment": f"seg-{i % 3}", "score": i})}
        for i in range(n)
    ]


def sync(state: Path, rows: list[dict[str, Any]], **kwargs: Any) -> dict[str, Any]:
    operator = SetAttributesOperator(
        task_id="sync", records=rows, sync_state_path=str(state), max_concurrency=4, **kwargs
    )
    return operator.execute({"ti": _NoXCom()})


class _NoXCom:
    def xcom_push(self, key: str, value: Any) -> None:
        json.dumps(value)


def requests_by_method(emu: KumulosEmulator) -> dict[str, list[str]]:
    seen: dict[str, list[str]] = {}
    for request in emu.requests:
        seen.setdefault(request.method, []).append(request.identifier or "")
    return {method: sorted(ids) for method, ids in seen.items()}


def state_rows(state: Path) -> dict[str, bytes]:
    with sqlite3.connect(state) as db:
        return dict(db.execute("SELECT identifier, digest FROM users"))


# --- unchanged records ---------------------------------------------------------------------------


def test_a_second_run_sends_only_the_changed_records(
    kumulos_connection: KumulosEmulator, tmp_path: Path
) -> None:
    emu = kumulos_connection
    state = tmp_path / "state" / "segments.sqlite"
    first = sync(state, records(30))
    assert (first["succeeded"], first["unchanged"], first["requests"]) == (30, 0, 30)
    assert len(state_rows(state)) == 30
    emu.clear_requests()

    again = sync(state, records(30))
    assert (again["succeeded"], again["unchanged"], again["requests"]) == (0, 30, 0)
    assert emu.requests == []

    changed = records(30, s4={"segment": "new"}, s17={"segment": "seg-2", "score": 1000})
    third = sync(state, changed)
    assert (third["total"], third["succeeded"], third["unchanged"], third["requests"]) == (30, 2, 28, 2)
    assert requests_by_method(emu) == {"PUT": ["s17", "s4"]}
    assert emu.get_attributes("s4") == {"segment": "new"}
    assert sorted(path.name for path in state.parent.iterdir()) == ["segments.sqlite"]


def test_merge_skips_the_read_of_unchanged_users_too(
    kumulos_connection: KumulosEmulator, tmp_path: Path
) -> None:
    emu = kumulos_connection
    state = tmp_path / "state.sqlite"
    existing = emu.user_ids()[:10]
    emu.set_attributes(existing[0], {"plan": "pro"})
    rows = [{"identifier": ident, "attributes": {"seg": "a"}} for ident in existing]
    sync(state, rows, merge=True)
    assert emu.get_attributes(existing[0]) == {"plan": "pro", "seg": "a"}
    emu.clear_requests()

    rows[3] = {"identifier": existing[3], "attributes": {"seg": "b"}}
    summary = sync(state, rows, merge=True)
    assert (summary["succeeded"], summary["unchanged"]) == (1, 9)
    assert requests_by_method(emu) == {"GET": [existing[3]], "PUT": [existing[3]]}


def test_failed_records_are_sent_again_next_run(kumulos_connection: KumulosEmulator, tmp_path: Path) -> None:
    emu = kumulos_connection
    state = tmp_path / "state.sqlite"
    sync(state, records(20))
    emu.reject_users({"s3": REJECTED, "s8": REJECTED, "new-1": REJECTED})
    rows = [
        *records(20, s3={"segment": "x"}, s8={"segment": "y"}),
        {"identifier": "new-1", "attributes": {"segment": "z"}},
    ]
    failed = sync(state, rows, max_failures=3)
    assert (failed["succeeded"], failed["failed"], failed["unchanged"]) == (0, 3, 18)
    emu.clear_faults()
    emu.clear_requests()

    retried = sync(state, rows)
    assert (retried["succeeded"], retried["failed"], retried["unchanged"]) == (3, 0, 18)
    assert requests_by_method(emu) == {"PUT": ["new-1", "s3", "s8"]}
    assert emu.get_attributes("s3") == {"segment": "x"}


def test_a_failure_is_resent_even_when_the_source_goes_back_to_what_was_last_sent(
    kumulos_connection: KumulosEmulator, tmp_path: Path
) -> None:
    """A failed write may have been applied (an answer lost in a timeout): it never counts as unchanged."""
    emu = kumulos_connection
    state = tmp_path / "state.sqlite"
    sync(state, records(5))
    emu.reject_users({"s2": REJECTED})
    with pytest.raises(KumulosError, match="max_failures=0"):
        sync(state, records(5, s2={"segment": "other"}))
    emu.clear_faults()
    emu.clear_requests()
    summary = sync(state, records(5))
    assert (summary["succeeded"], summary["unchanged"]) == (1, 4)
    assert requests_by_method(emu) == {"PUT": ["s2"]}


def test_the_state_is_saved_when_the_task_fails_on_max_failures(
    kumulos_connection: KumulosEmulator, tmp_path: Path
) -> None:
    emu = kumulos_connection
    state = tmp_path / "state.sqlite"
    emu.reject_users({"s1": REJECTED})
    with pytest.raises(KumulosError, match="1 of 6 records failed"):
        sync(state, records(6))
    assert sorted(state_rows(state)) == ["s0", "s2", "s3", "s4", "s5"]
    emu.clear_faults()
    emu.clear_requests()
    summary = sync(state, records(6))
    assert (summary["succeeded"], summary["unchanged"]) == (1, 5)


def test_duplicates_in_one_run_are_sent_in_order_and_never_skipped(
    kumulos_connection: KumulosEmulator, tmp_path: Path
) -> None:
    emu = kumulos_connection
    state = tmp_path / "state.sqlite"
    sync(state, [{"identifier": "d", "attributes": {"v": 1}}])
    emu.clear_requests()
    summary = sync(
        state, [{"identifier": "d", "attributes": {"v": 2}}, {"identifier": "d", "attributes": {"v": 1}}]
    )
    assert (summary["succeeded"], summary["unchanged"], summary["duplicates"]) == (2, 0, 1)
    assert emu.get_attributes("d") == {"v": 1}
    emu.clear_requests()
    assert sync(state, [{"identifier": "d", "attributes": {"v": 1}}])["unchanged"] == 1


def test_full_refresh_sends_everything_and_rewrites_the_state(
    kumulos_connection: KumulosEmulator, tmp_path: Path
) -> None:
    emu = kumulos_connection
    state = tmp_path / "state.sqlite"
    sync(state, records(10))
    emu.set_attributes("s5", {"segment": "changed in Kumulos"})  # not seen by the state
    emu.clear_requests()
    summary = sync(state, records(10), full_refresh=True)
    assert (summary["succeeded"], summary["unchanged"]) == (10, 0)
    assert emu.get_attributes("s5") == {"segment": "seg-2", "score": 5}
    emu.clear_requests()
    assert sync(state, records(10))["unchanged"] == 10


def test_a_dry_run_reports_what_it_would_do_and_writes_no_state(
    kumulos_connection: KumulosEmulator, tmp_path: Path
) -> None:
    emu = kumulos_connection
    state = tmp_path / "state.sqlite"
    sync(state, records(10))
    before = state.read_bytes()
    emu.clear_requests()
    summary = sync(state, records(8, s1={"segment": "new"}), dry_run=True, remove_absent=True)
    assert {key: summary[key] for key in ("skipped", "unchanged", "absent", "removed", "dry_run")} == {
        "skipped": 1,
        "unchanged": 7,
        "absent": 2,
        "removed": 0,
        "dry_run": True,
    }
    assert emu.requests == []
    assert state.read_bytes() == before
    new_state = tmp_path / "never-written.sqlite"
    assert sync(new_state, records(3), dry_run=True)["skipped"] == 3
    assert not new_state.exists()


# --- the state's identity ------------------------------------------------------------------------


def test_the_state_of_another_app_is_refused_before_any_request(
    kumulos_connection: KumulosEmulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    state = tmp_path / "state.sqlite"
    sync(state, records(5))
    assert b"test-api-key" not in state.read_bytes()
    with KumulosEmulator(users=0, api_key="other-app-key") as other:
        monkeypatch.setenv("AIRFLOW_CONN_KUMULOS_DEFAULT", other.connection_uri())
        with pytest.raises(KumulosInputError, match="sync_state_path") as raised:
            sync(state, records(5))
        assert "another Kumulos app" in str(raised.value) and "full_refresh=True" in str(raised.value)
        assert "other-app-key" not in str(raised.value)
        assert other.requests == []

        summary = sync(state, records(5), full_refresh=True)
        assert summary["succeeded"] == 5 and len(other.requests) == 5
        assert sync(state, records(5))["unchanged"] == 5
    monkeypatch.setenv("AIRFLOW_CONN_KUMULOS_DEFAULT", kumulos_connection.connection_uri())
    with pytest.raises(KumulosInputError, match="another Kumulos app"):
        sync(state, records(5))


@pytest.mark.parametrize("content", [b"not a database at all", b""])
def test_a_file_that_is_not_a_state_is_refused(
    kumulos_connection: KumulosEmulator, tmp_path: Path, content: bytes
) -> None:
    state = tmp_path / "state.sqlite"
    if content:
        state.write_bytes(content)
    else:
        with sqlite3.connect(state) as db:
            db.execute("CREATE TABLE something (x)")
    with pytest.raises(KumulosInputError, match=r"sync_state_path.*not a"):
        sync(state, records(3))
    assert kumulos_connection.requests == []


def test_sync_arguments_are_checked_when_the_task_is_defined() -> None:
    with pytest.raises(KumulosInputError, match=r"remove_absent.*needs a sync state"):
        SetAttributesOperator(task_id="t", records=[], remove_absent=True)
    with pytest.raises(KumulosInputError, match="full_refresh"):
        SetAttributesOperator(task_id="t", records=[], sync_state_path="/tmp/s", full_refresh="yes")
    with pytest.raises(KumulosInputError, match="max_removal_fraction"):
        SetAttributesOperator(task_id="t", records=[], sync_state_path="/tmp/s", max_removal_fraction=1.5)
    for bad in (0, -1, "60", True):
        with pytest.raises(KumulosInputError, match=r"checkpoint_interval.*seconds > 0"):
            SetAttributesOperator(task_id="t", records=[], sync_state_path="/tmp/s", checkpoint_interval=bad)


# --- remove_absent ---------------------------------------------------------------------------------


def test_users_absent_from_the_source_are_cleared_and_dropped_from_the_state(
    kumulos_connection: KumulosEmulator, tmp_path: Path
) -> None:
    emu = kumulos_connection
    state = tmp_path / "state.sqlite"
    sync(state, records(10), remove_absent=True)
    emu.clear_requests()
    summary = sync(state, records(8), remove_absent=True)
    assert {key: summary[key] for key in ("unchanged", "absent", "removed", "removal_failed")} == {
        "unchanged": 8,
        "absent": 2,
        "removed": 2,
        "removal_failed": 0,
    }
    assert requests_by_method(emu) == {"DELETE": ["s8", "s9"]}
    assert emu.get_attributes("s8") == {}
    assert sorted(state_rows(state)) == [f"s{i}" for i in range(8)]
    emu.clear_requests()
    assert sync(state, records(8), remove_absent=True)["absent"] == 0
    assert emu.requests == []


def test_with_merge_absent_users_lose_only_the_keys_the_sync_manages(
    kumulos_connection: KumulosEmulator, tmp_path: Path
) -> None:
    emu = kumulos_connection
    state = tmp_path / "state.sqlite"
    emu.add_user("keeps-plan", {"plan": "pro"})
    emu.add_user("only-ours", None)
    rows = [
        {"identifier": "keeps-plan", "attributes": {"segment": "a", "score": 1}},
        {"identifier": "only-ours", "attributes": {"segment": "b"}},
        {"identifier": "stays", "attributes": {"segment": "c"}},
    ]
    sync(state, rows, merge=True, remove_absent=True)
    assert emu.get_attributes("keeps-plan") == {"plan": "pro", "segment": "a", "score": 1}
    emu.clear_requests()

    summary = sync(state, rows[2:], merge=True, remove_absent=True, max_removal_fraction=1.0)
    assert (summary["removed"], summary["unchanged"]) == (2, 1)
    assert emu.get_attributes("keeps-plan") == {"plan": "pro"}
    assert emu.get_attributes("only-ours") == {}
    assert requests_by_method(emu) == {
        "GET": ["keeps-plan", "only-ours"],
        "PUT": ["keeps-plan"],
        "DELETE": ["only-ours"],
    }


def test_failed_removals_stay_in_the_state_and_are_tried_again(
    kumulos_connection: KumulosEmulator, tmp_path: Path
) -> None:
    emu = kumulos_connection
    state = tmp_path / "state.sqlite"
    sync(state, records(10), remove_absent=True)
    emu.script_faults([Fault.status_code(422)] * 5, method="DELETE")
    with pytest.raises(KumulosError, match="could not be cleared"):
        sync(state, records(9), remove_absent=True)
    assert "s9" in state_rows(state)
    emu.clear_faults()
    emu.clear_requests()
    summary = sync(state, records(9), remove_absent=True)
    assert (summary["removed"], summary["removal_failed"]) == (1, 0)
    assert requests_by_method(emu) == {"DELETE": ["s9"]}
    assert "s9" not in state_rows(state)


def test_the_removal_guard_refuses_before_clearing_anyone(
    kumulos_connection: KumulosEmulator, tmp_path: Path
) -> None:
    emu = kumulos_connection
    state = tmp_path / "state.sqlite"
    sync(state, records(10), remove_absent=True)
    emu.clear_requests()
    with pytest.raises(KumulosInputError, match="max_removal_fraction") as raised:
        sync(state, records(4, s0={"segment": "changed"}), remove_absent=True)
    assert "6 of the 10 users" in str(raised.value)
    assert requests_by_method(emu) == {"PUT": ["s0"]}  # the records were sent, nobody was cleared
    assert len(state_rows(state)) == 10
    emu.clear_requests()

    summary = sync(state, records(4, s0={"segment": "changed"}), remove_absent=True, max_removal_fraction=0.6)
    assert (summary["removed"], summary["unchanged"]) == (6, 4)
    assert len(state_rows(state)) == 4


# --- a run killed outright ---------------------------------------------------------------------------

CHILD = """
import json, sys
from airflow_provider_kumulos.operators.kumulos import SetAttributesOperator

rows = json.loads(open(sys.argv[1]).read())
SetAttributesOperator(
    task_id="killed", records=rows, sync_state_path=sys.argv[2], merge=True, max_concurrency=2
).execute({})
"""


def test_a_sync_killed_midway_keeps_the_previous_state_and_the_rerun_converges(
    kumulos_connection: KumulosEmulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    emu = kumulos_connection
    # A temporary folder of the test's own, for the child and the rerun alike, so working copies
    # that other runs on the machine leave in the shared one do not count.
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    state = tmp_path / "state" / "segments.sqlite"
    sync(state, records(40), merge=True)
    before = state.read_bytes()
    intended = records(40, **{f"s{i}": {"segment": "moved", "score": -i} for i in range(30)})
    source = tmp_path / "rows.json"
    source.write_text(json.dumps(intended))
    emu.clear_requests()
    emu.set_latency(0.2)
    env = {**os.environ, "AIRFLOW_CONN_KUMULOS_DEFAULT": emu.connection_uri(), "TMPDIR": str(scratch)}
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(source), str(state)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 120
        while sum(r.method == "PUT" for r in emu.requests) < 4:
            assert child.poll() is None, child.stderr.read().decode() if child.stderr else ""
            assert time.monotonic() < deadline, "the child never started writing"
            time.sleep(0.05)
        child.send_signal(signal.SIGKILL)
    finally:
        child.wait(30)
        if child.stderr:
            child.stderr.close()
    assert child.returncode == -signal.SIGKILL
    assert 4 <= sum(r.method == "PUT" for r in emu.requests) < 30
    assert state.read_bytes() == before
    assert sorted(path.name for path in state.parent.iterdir()) == ["segments.sqlite"]
    [left_behind] = scratch.glob("kumulos-sync-*")
    hour_ago = time.time() - 3700
    for path in [left_behind, *left_behind.iterdir()]:
        os.utime(path, (hour_ago, hour_ago))

    emu.set_latency(0.0)
    summary = sync(state, intended, merge=True)
    assert (summary["succeeded"], summary["unchanged"], summary["failed"]) == (30, 10, 0)
    assert {row["identifier"]: emu.get_attributes(row["identifier"]) for row in intended} == {
        row["identifier"]: row["attributes"] for row in intended
    }
    assert sync(state, intended, merge=True)["unchanged"] == 40
    assert not left_behind.exists(), "the next run swept the killed run's working copy"


CHECKPOINTING_CHILD = """
import json, sys
from airflow_provider_kumulos.operators.kumulos import SetAttributesOperator

rows = json.loads(open(sys.argv[1]).read())
SetAttributesOperator(
    task_id="killed", records=rows, sync_state_path=sys.argv[2], max_concurrency=2, checkpoint_interval=0.5
).execute({})
"""
#: Seconds the last checkpoint may lag the kill beyond its interval on a loaded machine.
CHECKPOINT_SLACK = 5.0


def test_a_sync_killed_midway_resends_only_what_was_sent_after_its_last_checkpoint(
    kumulos_connection: KumulosEmulator, tmp_path: Path
) -> None:
    emu = kumulos_connection
    state = tmp_path / "state" / "segments.sqlite"
    sync(state, records(400))
    before = state.read_bytes()
    intended = records(400, **{f"s{i}": {"segment": "moved", "score": -i} for i in range(400)})
    source = tmp_path / "rows.json"
    source.write_text(json.dumps(intended))
    emu.clear_requests()
    emu.set_latency(0.05)

    env = {**os.environ, "AIRFLOW_CONN_KUMULOS_DEFAULT": emu.connection_uri()}
    child = subprocess.Popen(
        [sys.executable, "-c", CHECKPOINTING_CHILD, str(source), str(state)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 180
        while sum(r.method == "PUT" for r in emu.requests) < 150 or state.read_bytes() == before:
            assert child.poll() is None, child.stderr.read().decode() if child.stderr else ""
            assert time.monotonic() < deadline, "the child never checkpointed"
            time.sleep(0.05)
        child.send_signal(signal.SIGKILL)
        killed_at = time.time()
    finally:
        child.wait(30)
        if child.stderr:
            child.stderr.close()
    assert child.returncode == -signal.SIGKILL
    killed_puts = {r.identifier: r.timestamp for r in emu.requests if r.method == "PUT"}
    assert len(killed_puts) < 400, "the child finished before the kill"
    intended_digests = {row["identifier"]: attributes_digest(row["attributes"]) for row in intended}
    checkpointed = {key for key, digest in state_rows(state).items() if digest == intended_digests[key]}
    assert checkpointed and checkpointed <= set(killed_puts)

    emu.clear_requests()
    emu.set_latency(0.0)
    summary = sync(state, intended)
    resent = {r.identifier for r in emu.requests if r.method == "PUT"} & set(killed_puts)
    # What the checkpoint holds is not sent again; what the killed run sent after it is.
    assert resent == set(killed_puts) - checkpointed
    assert len(resent) < len(killed_puts) - 100
    late = killed_at - 0.5 - CHECKPOINT_SLACK
    assert all(killed_puts[identifier] >= late for identifier in resent), "an old write was sent again"
    assert (summary["succeeded"], summary["unchanged"]) == (400 - len(checkpointed), len(checkpointed))
    assert {row["identifier"]: emu.get_attributes(row["identifier"]) for row in intended} == {
        row["identifier"]: row["attributes"] for row in intended
    }


@pytest.mark.s3
def test_the_state_lives_on_s3_and_is_replaced_whole(
    kumulos_connection: KumulosEmulator, s3_bucket: str, s3_client: Any, tmp_path: Path
) -> None:
    emu = kumulos_connection
    state = f"s3://aws_default@{s3_bucket}/sync/segments.sqlite"
    first = SetAttributesOperator(task_id="t", records=records(12), sync_state_path=state).execute({})
    assert first["succeeded"] == 12
    listed = s3_client.list_objects_v2(Bucket=s3_bucket)["Contents"]
    assert [item["Key"] for item in listed] == ["sync/segments.sqlite"]  # no temporary left behind
    emu.clear_requests()
    again = SetAttributesOperator(
        task_id="t", records=records(11, s2={"segment": "s3"}), sync_state_path=state, remove_absent=True
    ).execute({})
    assert (again["succeeded"], again["unchanged"], again["removed"]) == (1, 10, 1)
    assert requests_by_method(emu) == {"DELETE": ["s11"], "PUT": ["s2"]}
    body = s3_client.get_object(Bucket=s3_bucket, Key="sync/segments.sqlite")["Body"].read()
    local = tmp_path / "copy.sqlite"
    local.write_bytes(body)
    assert len(state_rows(local)) == 11


def test_a_sql_model_syncs_its_changes_and_its_leavers(
    kumulos_connection: KumulosEmulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    emu = kumulos_connection
    warehouse = tmp_path / "warehouse.db"
    monkeypatch.setenv("AIRFLOW_CONN_WAREHOUSE", json.dumps({"conn_type": "sqlite", "host": str(warehouse)}))
    with sqlite3.connect(warehouse) as db:
        db.execute("CREATE TABLE segments (identifier TEXT, segment TEXT, score INTEGER)")
        db.executemany("INSERT INTO segments VALUES (?, ?, ?)", [(f"q{i}", "a", i) for i in range(12)])

    def push() -> dict[str, Any]:
        return SetAttributesOperator(
            task_id="push",
            sql="SELECT identifier, segment, score FROM segments",
            sql_conn_id="warehouse",
            sync_state_path=str(tmp_path / "state.sqlite"),
            merge=True,
            remove_absent=True,
        ).execute({"ti": _NoXCom()})

    assert push()["succeeded"] == 12
    with sqlite3.connect(warehouse) as db:
        db.execute("UPDATE segments SET segment = 'b' WHERE identifier IN ('q1', 'q2')")
        db.execute("DELETE FROM segments WHERE identifier = 'q11'")
    emu.clear_requests()
    summary = push()
    assert {key: summary[key] for key in ("succeeded", "unchanged", "removed")} == {
        "succeeded": 2,
        "unchanged": 9,
        "removed": 1,
    }
    assert requests_by_method(emu) == {"GET": ["q1", "q11", "q2"], "PUT": ["q1", "q2"], "DELETE": ["q11"]}
    assert emu.get_attributes("q1") == {"segment": "b", "score": 1}
    assert emu.get_attributes("q11") == {}


def test_progress_lines_and_the_final_line_count_unchanged_records(
    kumulos_connection: KumulosEmulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    state = tmp_path / "state.sqlite"
    sync(state, records(30))
    capsys.readouterr()
    SetAttributesOperator(
        task_id="sync",
        records=records(30, s0={"segment": "new"}),
        sync_state_path=str(state),
        progress_interval=0,
    ).execute({})
    logged = capsys.readouterr().out
    assert re.search(r"set attributes: \d+/30 \([\d.]+%\), failed 0, unchanged \d+, ", logged)
    assert re.search(r"set attributes: \d+/30 \([\d.]+%\), failed 0, unchanged 29, ", logged)
    assert (
        "set attributes finished: total 30, succeeded 1, failed 0, skipped 0, duplicates 0, unchanged 29, "
        in (logged)
    )


def test_a_state_from_a_newer_format_is_refused(kumulos_connection: KumulosEmulator, tmp_path: Path) -> None:
    state = tmp_path / "state.sqlite"
    sync(state, records(3))
    with sqlite3.connect(state) as db:
        db.execute("UPDATE meta SET value = '99' WHERE key = 'version'")
    kumulos_connection.clear_requests()
    with pytest.raises(KumulosInputError, match="newer version of this provider"):
        sync(state, records(3))
    assert kumulos_connection.requests == []
