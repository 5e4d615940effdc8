"""Bulk writes under injected faults: retried without losing or duplicating writes, pausing together on 429."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from airflow_provider_kumulos.operators.kumulos import DeleteAttributesOperator, SetAttributesOperator
from airflow_provider_kumulos.testing.emulator import Fault, KumulosEmulator


@pytest.fixture
def fast_retries(kumulos_emulator: KumulosEmulator, monkeypatch: pytest.MonkeyPatch) -> KumulosEmulator:
    """``kumulos_default`` on the emulator with short backoffs and enough retries for heavy fault rates."""
    monkeypatch.setenv(
        "AIRFLOW_CONN_KUMULOS_DEFAULT",
        kumulos_emulator.connection_uri(backoff_base=0.01, backoff_max=0.05, max_retries=10, timeout=2),
    )
    return kumulos_emulator


def successful_writes(emu: KumulosEmulator, method: str = "PUT") -> Counter[str]:
    ok = 204 if method == "DELETE" else 200
    return Counter(r.identifier or "" for r in emu.requests if r.method == method and r.status == ok)


def records(count: int, prefix: str = "u") -> list[dict[str, Any]]:
    return [{"identifier": f"{prefix}{i}", "attributes": {"i": i, "tag": prefix}} for i in range(count)]


def test_scripted_503s_are_retried_and_every_user_is_written_once(fast_retries: KumulosEmulator) -> None:
    emu = fast_retries
    emu.script_faults([Fault.status_code(503)] * 12, method="PUT")
    wanted = records(30)
    summary = SetAttributesOperator(task_id="t", records=wanted, max_concurrency=6).execute({})
    assert [emu.get_attributes(r["identifier"]) for r in wanted] == [r["attributes"] for r in wanted]
    assert successful_writes(emu) == Counter({r["identifier"]: 1 for r in wanted})
    assert Counter(r.status for r in emu.requests) == Counter({200: 30, 503: 12})
    assert (summary["failed"], summary["retries"], summary["requests"]) == (0, 12, 42)


def test_hook_params_override_the_connection_settings(fast_retries: KumulosEmulator) -> None:
    # The connection allows 10 retries; hook_params allow none, so the one 503 fails its record.
    emu = fast_retries
    emu.script_faults([Fault.status_code(503)], method="PUT")
    op = SetAttributesOperator(
        task_id="t", records=records(3), max_concurrency=1, max_failures=1, hook_params={"max_retries": 0}
    )
    summary = op.execute({})
    assert (summary["succeeded"], summary["failed"], summary["retries"]) == (2, 1, 0)
    assert Counter(r.status for r in emu.requests) == Counter({200: 2, 503: 1})


def test_random_5xx_429_and_dropped_connections_lose_and_duplicate_nothing(
    fast_retries: KumulosEmulator,
) -> None:
    emu = fast_retries
    emu.set_fault_rates(error_5xx=0.15, rate_limit=0.1, drop=0.05, retry_after=0, seed=7)
    wanted = records(120)
    summary = SetAttributesOperator(task_id="t", records=wanted, max_concurrency=8).execute({})
    emu.set_fault_rates()
    assert [emu.get_attributes(r["identifier"]) for r in wanted] == [r["attributes"] for r in wanted]
    assert successful_writes(emu) == Counter({r["identifier"]: 1 for r in wanted})
    faults = Counter(r.fault for r in emu.requests if r.fault)
    assert faults["status"] > 5 and faults["drop"] > 0
    assert summary["failed"] == 0 and summary["retries"] == len(emu.requests) - 120


def test_deletes_under_faults_are_applied_once_and_lost_answers_count_as_missing(
    fast_retries: KumulosEmulator,
) -> None:
    emu = fast_retries
    ids = emu.user_ids()[:40]
    emu.set_fault_rates(error_5xx=0.2, drop=0.05, seed=3)
    summary = DeleteAttributesOperator(task_id="t", user_ids=ids, max_concurrency=8).execute({})
    emu.set_fault_rates()
    assert [emu.get_attributes(ident) for ident in ids] == [{}] * 40
    statuses: dict[str, list[int | None]] = {ident: [] for ident in ids}
    for request in sorted(emu.requests, key=lambda r: r.timestamp):
        statuses[request.path.split("/")[3]].append(request.status)  # /v1/users/{id}/attributes
    answered = [ident for ident in ids if statuses[ident].count(204) == 1]
    # A dropped answer to a delete that was applied makes the retry see 400: done, counted as missing.
    lost = [ident for ident in ids if 204 not in statuses[ident]]
    assert all(statuses[ident][-1] == 400 and None in statuses[ident] for ident in lost)
    assert sorted(answered + lost) == sorted(ids)
    assert (summary["succeeded"], summary["missing"], summary["failed"]) == (len(answered), len(lost), 0)


def test_a_429_with_retry_after_pauses_every_worker(fast_retries: KumulosEmulator) -> None:
    emu = fast_retries
    emu.set_latency(0.005)
    emu.script_faults([Fault.rate_limited(retry_after=1)], method="PUT")
    wanted = records(60)
    summary = SetAttributesOperator(task_id="t", records=wanted, max_concurrency=8).execute({})
    log = emu.requests
    [limited] = [r for r in log if r.status == 429]
    t0 = limited.timestamp
    # Requests already on the wire when the 429 arrived may land just after it; none may start later
    # until Retry-After has passed, from any worker.
    during = [round(r.timestamp - t0, 3) for r in log if t0 + 0.15 < r.timestamp < t0 + 0.9]
    assert during == []
    assert sum(1 for r in log if r.timestamp >= t0 + 0.95) >= 50  # most of the run resumed after the pause
    assert successful_writes(emu) == Counter({r["identifier"]: 1 for r in wanted})
    assert (summary["failed"], summary["retries"]) == (0, 1)


def test_max_requests_per_second_caps_the_request_rate(fast_retries: KumulosEmulator) -> None:
    emu = fast_retries
    SetAttributesOperator(
        task_id="t", records=records(21), max_concurrency=8, max_requests_per_second=40
    ).execute({})
    stamps = sorted(r.timestamp for r in emu.requests)
    assert len(stamps) == 21
    assert stamps[-1] - stamps[0] >= 20 / 40 * 0.9  # 20 intervals of 25 ms, allowing for network jitter
