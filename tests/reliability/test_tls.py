"""Scenario 6, TLS: certificates are verified by default, and a failed verification is a config error.

The emulator serves HTTPS with a throwaway self-signed certificate. In one real DAG run every
component (export, set, delete, the sensor poking and deferred to its trigger) meets it three ways:
with the default settings each fails at once with ``KumulosConfigError`` (one attempt, no retry
storm, even with five retries configured); with the connection extra ``verify`` naming the
certificate as CA bundle, or set to false, everything succeeds.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from reliability_support import (
    RECORDED_OPERATORS,
    Figures,
    Stopwatch,
    appear_after_first_look,
    failed_tasks,
    recording_dag,
)

from airflow_provider_kumulos.exceptions import KumulosConfigError
from airflow_provider_kumulos.hooks.kumulos import KumulosCRMHook
from airflow_provider_kumulos.testing.emulator import KumulosEmulator, make_self_signed_cert
from airflow_provider_kumulos.triggers.kumulos import ERROR, SUCCESS, KumulosUserTrigger

#: Retries that would be slow to exhaust: a TLS failure must not go through them.
STORM_EXTRAS = {"max_retries": 5, "backoff_base": 0.5, "backoff_max": 5}
MODES = ("default", "ca", "off")

DAG = (
    RECORDED_OPERATORS
    + """

with DAG("reliability_tls", schedule=None, start_date=datetime(2026, 1, 1)):
    for mode in {modes!r}:
        conn = "kumulos_tls_" + mode
        Export(task_id="export_" + mode, kumulos_conn_id=conn, output_path={folder!r} + "/" + mode + ".jsonl")
        Set(task_id="set_" + mode, kumulos_conn_id=conn, user_id="tls-" + mode, attributes={{"via": mode}})
        Sensor(task_id="poke_" + mode, kumulos_conn_id=conn, user_id={existing!r}, poke_interval=0.2, timeout=30)
    Delete(task_id="delete_ca", kumulos_conn_id="kumulos_tls_ca", user_id={existing!r})
    Sensor(
        task_id="deferred_ca",
        kumulos_conn_id="kumulos_tls_ca",
        user_id="appears-later",
        attributes_match={{"ready": True}},
        deferrable=True,
        poke_interval=0.2,
        timeout=60,
    )
"""
)


@pytest.fixture
def tls_emulator(
    emulator_factory: Callable[..., KumulosEmulator], tmp_path: Path
) -> Iterator[tuple[KumulosEmulator, str]]:
    """An HTTPS emulator and the path of its self-signed certificate (usable as CA bundle)."""
    cert, key = make_self_signed_cert(tmp_path / "tls")
    yield emulator_factory(users=30, tls_cert=cert, tls_key=key), cert


def _connections(connect: Callable[..., str], emulator: KumulosEmulator, cert: str) -> None:
    connect(emulator, "kumulos_tls_default", **STORM_EXTRAS)
    connect(emulator, "kumulos_tls_ca", **STORM_EXTRAS, verify=cert)
    connect(emulator, "kumulos_tls_off", **STORM_EXTRAS, verify=False)


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")
def test_every_component_verifies_certificates_and_honours_the_verify_extra(
    dag_runner: Any,
    tls_emulator: tuple[KumulosEmulator, str],
    connect: Callable[..., str],
    tmp_path: Path,
    figures: Figures,
) -> None:
    watch = Stopwatch()
    emulator, cert = tls_emulator
    _connections(connect, emulator, cert)
    generated = emulator.user_ids()
    existing = generated[0]
    failures = tmp_path / "failures.jsonl"
    waiter = appear_after_first_look(emulator, "appears-later", {"ready": True})
    source = recording_dag(failures, DAG.format(modes=MODES, folder=str(tmp_path), existing=existing))

    run = dag_runner.run(source, "reliability_tls")
    waiter.join(timeout=5)

    states = dag_runner.states(run)
    failed = failed_tasks(failures)
    assert {task for task, state in states.items() if state == "failed"} == set(failed)
    assert set(failed) == {"export_default", "set_default", "poke_default"}
    for row in failed.values():
        assert row["type"] == "KumulosConfigError", row
        assert "TLS verification failed" in row["str"] and "'verify'" in row["str"]
    set_default = dag_runner.xcom(run, "set_default")
    assert (set_default["requests"], set_default["retries"]) == (1, 0), "one attempt, no retry storm"
    assert all(state == "success" for task, state in states.items() if task not in failed)
    assert dag_runner.xcom(run, "deferred_ca") == {"ready": True}
    for mode in ("ca", "off"):  # every generated user (plus any the set tasks created before)
        exported = {json.loads(line)["identifier"] for line in (tmp_path / f"{mode}.jsonl").open()}
        assert exported >= set(generated)
        assert emulator.get_attributes(f"tls-{mode}") == {"via": mode}
    assert not (tmp_path / "default.jsonl").exists()
    assert emulator.get_attributes("tls-default") is None, "nothing reached the server unverified"
    figures.record(
        "6 tls",
        tasks_refused_unverified=len(failed),
        tasks_succeeded=len(states) - len(failed),
        attempts_per_refusal=set_default["requests"],
        duration_s=watch.seconds,
    )


@pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")
def test_the_hook_makes_one_attempt_and_names_the_fix(
    tls_emulator: tuple[KumulosEmulator, str], connect: Callable[..., str]
) -> None:
    emulator, cert = tls_emulator
    _connections(connect, emulator, cert)
    hook = KumulosCRMHook("kumulos_tls_default")
    with pytest.raises(KumulosConfigError, match=r"TLS verification failed .*'verify'.*CA bundle") as caught:
        hook.get_users_page(1, 10)
    assert caught.value.status is None and "test-server-key" not in str(caught.value)
    assert hook.stats.requests == {("list users", "tls_error"): 1} and hook.stats.retries == 0
    assert emulator.requests == []
    for conn_id in ("kumulos_tls_ca", "kumulos_tls_off"):
        assert KumulosCRMHook(conn_id).get_users_page(1, 10)["totalUsers"] == 30


def test_the_trigger_fires_a_config_error_at_once_and_succeeds_with_the_ca_bundle(
    tls_emulator: tuple[KumulosEmulator, str], connect: Callable[..., str], caplog: pytest.LogCaptureFixture
) -> None:
    emulator, cert = tls_emulator
    _connections(connect, emulator, cert)
    existing = emulator.user_ids()[1]
    caplog.set_level(logging.DEBUG)

    async def first_event(conn_id: str) -> Any:
        trigger = KumulosUserTrigger(user_id=existing, kumulos_conn_id=conn_id, poke_interval=0.1)
        async for event in trigger.run():
            return event.payload
        raise AssertionError("no event")

    refused = asyncio.run(first_event("kumulos_tls_default"))
    assert refused["status"] == ERROR and refused["error"]["error"] == "KumulosConfigError"
    assert "TLS verification failed" in refused["error"]["message"]
    assert not any("retrying in" in record.getMessage() for record in caplog.records)
    assert emulator.requests == []
    for conn_id in ("kumulos_tls_ca", "kumulos_tls_off"):
        assert asyncio.run(first_event(conn_id)) == {"status": SUCCESS, "user_id": existing}
