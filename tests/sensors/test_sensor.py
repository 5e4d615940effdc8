"""KumulosUserSensor run for real outside a DAG run: poke mode and the deferral round trip.

``execute`` runs the real poke loop against the emulator; in deferrable mode the trigger the
sensor hands over is run with asyncio and its event fed back to ``execute_complete``, which is
what the triggerer and the worker do.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

import pytest

from airflow_provider_kumulos.exceptions import (
    KumulosAuthError,
    KumulosError,
    KumulosInputError,
    KumulosServerError,
    KumulosUserNotFoundError,
    KumulosValidationError,
)
from airflow_provider_kumulos.sensors.kumulos import KumulosUserSensor
from airflow_provider_kumulos.testing.emulator import Fault, KumulosEmulator
from airflow_provider_kumulos.triggers.kumulos import KumulosUserTrigger

try:
    from airflow.sdk.exceptions import AirflowSensorTimeout, AirflowSkipException, TaskDeferred
except ImportError:  # older Airflow 3 releases
    from airflow.exceptions import AirflowSensorTimeout, AirflowSkipException, TaskDeferred

CONTEXT: Any = {}


def sensor(**kwargs: Any) -> KumulosUserSensor:
    kwargs.setdefault("task_id", "wait_for_user")
    kwargs.setdefault("poke_interval", 0.1)
    kwargs.setdefault("timeout", 30)
    return KumulosUserSensor(**kwargs)


def run_deferrable(op: KumulosUserSensor) -> Any:
    """Execute; if the sensor defers, run its trigger to its event and resume the sensor with it."""
    try:
        return op.execute(CONTEXT)
    except TaskDeferred as deferred:
        trigger = deferred.trigger
        assert isinstance(trigger, KumulosUserTrigger)

        async def first_event() -> Any:
            return await anext(trigger.run())

        event = asyncio.run(first_event())
        return getattr(op, deferred.method_name)(CONTEXT, event=event.payload)


def logged(emulator: KumulosEmulator, count: int) -> list[Any]:
    """The requests the emulator logged, once there are ``count`` (it logs a slow answer when it sends it,
    after the client gave up on it), waiting up to 5 s."""
    deadline = time.monotonic() + 5
    while len(emulator.requests) < count and time.monotonic() < deadline:
        time.sleep(0.02)
    return emulator.requests


# --- poke mode --------------------------------------------------------------------------------


def test_poke_mode_finds_a_user_created_after_a_few_pokes(
    emulator: KumulosEmulator, appear_later: Callable[..., None]
) -> None:
    appear_later("new-user", {"plan": "trial"})
    op = sensor(user_id="new-user")
    assert op.execute(CONTEXT) == {"plan": "trial"}
    statuses = [r.status for r in emulator.requests]
    assert statuses[-1] == 200 and set(statuses[:-1]) == {404} and len(statuses) >= 3
    assert op.hook._session is None  # pooled connections closed when the task ends


def test_attributes_match_waits_for_every_listed_value(
    emulator: KumulosEmulator, appear_later: Callable[..., None]
) -> None:
    emulator.add_user("ada", {"onboarded": False, "plan": "pro"})
    appear_later("ada", {"onboarded": True, "plan": "pro", "extra": 1})
    op = sensor(user_id="ada", attributes_match={"onboarded": True, "plan": "pro"})
    assert op.execute(CONTEXT) == {"onboarded": True, "plan": "pro", "extra": 1}
    assert len(emulator.requests) >= 2 and {r.status for r in emulator.requests} == {200}


def test_poke_returns_a_poke_return_value(emulator: KumulosEmulator) -> None:
    user_id = emulator.user_ids()[0]
    done = sensor(user_id=user_id).poke(CONTEXT)
    assert done.is_done is True and done.xcom_value == emulator.get_attributes(user_id)
    missing = sensor(user_id="ghost").poke(CONTEXT)
    assert missing.is_done is False and missing.xcom_value is None
    mismatch = sensor(user_id=user_id, attributes_match={"nope": 1}).poke(CONTEXT)
    assert mismatch.is_done is False


def test_log_names_the_user_while_waiting_and_when_found(
    emulator: KumulosEmulator, appear_later: Callable[..., None], capsys: pytest.CaptureFixture[str]
) -> None:
    emulator.add_user("grace", {"onboarded": False, "name": "Grace Hopper"})
    appear_later("grace", {"onboarded": True, "name": "Grace Hopper"})
    sensor(user_id="grace", attributes_match={"onboarded": True}).execute(CONTEXT)
    sensor(user_id="newcomer", poke_interval=0.2, timeout=0.3).poke(CONTEXT)
    out = capsys.readouterr().out
    assert "Kumulos user 'grace' exists; attributes onboarded do not match yet." in out
    assert "Found Kumulos user 'grace' with matching onboarded." in out
    assert "Kumulos user 'newcomer' does not exist yet." in out
    assert "Grace Hopper" not in out


def test_deferral_logs_when_the_next_check_is_due(
    emulator: KumulosEmulator, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(TaskDeferred) as caught:
        sensor(user_id="later", deferrable=True, timeout=600, poke_interval=30).execute(CONTEXT)
    end_time = caught.value.trigger.serialize()[1]["end_time"]
    due = datetime.fromtimestamp(end_time, timezone.utc).isoformat(timespec="seconds")
    out = capsys.readouterr().out
    assert "Kumulos user 'later' does not exist yet." in out
    assert (
        "Deferring the wait for Kumulos user 'later' to the triggerer: next check within 30 s, "
        f"then every 30 s; timeout at {due} (in " in out
    )


def test_resume_logs_the_found_user_and_no_values(
    emulator: KumulosEmulator, capsys: pytest.CaptureFixture[str]
) -> None:
    user_id = emulator.user_ids()[0]
    attributes = sensor(user_id=user_id).execute_complete(
        CONTEXT, event={"status": "success", "user_id": user_id}
    )
    assert attributes == emulator.get_attributes(user_id)
    out = capsys.readouterr().out
    assert f"The triggerer found Kumulos user {user_id!r}; reading its attributes." in out
    assert attributes["email"] not in out and attributes["name"] not in out


def test_transient_errors_after_retries_mean_not_yet(
    connect: Callable[..., KumulosEmulator], capsys: pytest.CaptureFixture[str]
) -> None:
    emulator = connect(max_retries=1)
    user_id = emulator.user_ids()[0]
    emulator.script_faults([Fault.status_code(503)] * 2 + [Fault.dropped()] * 2)
    assert sensor(user_id=user_id).execute(CONTEXT) == emulator.get_attributes(user_id)
    assert [r.status for r in emulator.requests] == [503, 503, None, None, 200]
    assert capsys.readouterr().out.count("Kumulos still failing after retries, will check again") == 2


def test_hook_params_reach_the_poke_hook(emulator: KumulosEmulator) -> None:
    # The connection waits 60 s for an answer; hook_params cut that to 0.2 s and the retry succeeds.
    user_id = emulator.user_ids()[0]
    emulator.script_faults([Fault.slow(3.0)])
    op = sensor(user_id=user_id, hook_params={"timeout": 0.2, "max_retries": 1})
    assert op.execute(CONTEXT) == emulator.get_attributes(user_id)
    assert sorted(r.fault or "" for r in logged(emulator, 2)) == ["", "slow"]


@pytest.mark.parametrize(
    ("hook_params", "parameter", "problem"),
    [
        ({"pool_size": 2}, "hook_params", "'pool_size' is not a hook argument this task passes on"),
        (
            {"timout": 2},
            "hook_params",
            "'timout' is not a hook argument this task passes on. Use only timeout, connect_timeout, "
            "max_retries, backoff_base, backoff_max, max_retry_after, verify.",
        ),
        ({"backoff_max": -1}, "hook_params['backoff_max']", "-1 is not a number of seconds >= 0"),
        ({"verify": ""}, "hook_params['verify']", "'' is not a bool or a path"),
        ("timeout=3", "hook_params", "expected a mapping of hook arguments, got str"),
    ],
)
def test_bad_hook_params_fail_when_the_sensor_is_built(
    emulator: KumulosEmulator, hook_params: Any, parameter: str, problem: str
) -> None:
    with pytest.raises(KumulosInputError, match=re.escape(problem)) as caught:
        sensor(user_id="anyone", hook_params=hook_params)
    assert caught.value.parameter == parameter
    assert emulator.requests == []


def test_poke_mode_times_out(emulator: KumulosEmulator) -> None:
    started = time.monotonic()
    with pytest.raises(AirflowSensorTimeout):
        sensor(user_id="ghost", poke_interval=0.2, timeout=1).execute(CONTEXT)
    assert 1 <= time.monotonic() - started < 5
    assert {r.status for r in emulator.requests} == {404}


def test_soft_fail_turns_the_timeout_into_a_skip(emulator: KumulosEmulator) -> None:
    with pytest.raises(AirflowSkipException):
        sensor(user_id="ghost", poke_interval=0.2, timeout=0.5, soft_fail=True).execute(CONTEXT)


@pytest.mark.parametrize("deferrable", [False, True])
def test_bad_credentials_fail_at_once(connect: Callable[..., KumulosEmulator], deferrable: bool) -> None:
    emulator = connect(password="revoked-server-key")
    started = time.monotonic()
    with pytest.raises(KumulosAuthError, match="server key"):
        run_deferrable(sensor(user_id="anyone", timeout=60, poke_interval=5, deferrable=deferrable))
    assert time.monotonic() - started < 5
    assert [r.status for r in emulator.requests] == [401]


def test_a_422_fails_at_once(emulator: KumulosEmulator) -> None:
    emulator.reject_users({"odd": (422, {"errors": {"id": ["invalid"]}})})
    with pytest.raises(KumulosValidationError) as caught:
        sensor(user_id="odd", timeout=60).execute(CONTEXT)
    assert caught.value.body == {"errors": {"id": ["invalid"]}}
    assert len(emulator.requests) == 1


@pytest.mark.parametrize(
    ("kwargs", "parameter"),
    [
        ({"user_id": ""}, "user_id"),
        ({"user_id": 12}, "user_id"),
        ({"user_id": "ok", "attributes_match": "onboarded"}, "attributes_match"),
        ({"user_id": "ok", "attributes_match": {"score": float("nan")}}, "attributes_match"),
    ],
)
@pytest.mark.parametrize("deferrable", [False, True])
def test_bad_arguments_fail_before_any_request(
    emulator: KumulosEmulator, kwargs: dict[str, Any], parameter: str, deferrable: bool
) -> None:
    with pytest.raises(KumulosInputError) as caught:
        sensor(deferrable=deferrable, **kwargs).execute(CONTEXT)
    assert caught.value.parameter == parameter
    assert emulator.requests == []


# --- deferrable mode --------------------------------------------------------------------------


def test_deferrable_existing_user_finishes_without_deferring(emulator: KumulosEmulator) -> None:
    user_id = emulator.user_ids()[1]
    assert sensor(user_id=user_id, deferrable=True).execute(CONTEXT) == emulator.get_attributes(user_id)


def test_deferrable_hands_over_to_the_trigger(emulator: KumulosEmulator) -> None:
    op = sensor(user_id="later", deferrable=True, timeout=120, poke_interval=15, attributes_match={"a": 1})
    with pytest.raises(TaskDeferred) as caught:
        op.execute(CONTEXT)
    deferred = caught.value
    assert deferred.method_name == "execute_complete"
    assert 119 <= deferred.timeout.total_seconds() <= 120
    classpath, kwargs = deferred.trigger.serialize()
    assert classpath == "airflow_provider_kumulos.triggers.kumulos.KumulosUserTrigger"
    assert kwargs["user_id"] == "later" and kwargs["kumulos_conn_id"] == "kumulos_default"
    assert kwargs["poke_interval"] == 15 and kwargs["attributes_match"] == {"a": 1}
    assert kwargs["hook_params"] == {}
    assert 118 <= kwargs["end_time"] - time.time() <= 120
    assert [r.status for r in emulator.requests] == [404]


def test_deferrable_completes_through_the_trigger(
    emulator: KumulosEmulator, appear_later: Callable[..., None]
) -> None:
    appear_later("deferred-user", {"onboarded": True}, delay=0.3, after=2)  # the trigger's first check
    op = sensor(user_id="deferred-user", deferrable=True, attributes_match={"onboarded": True})
    assert run_deferrable(op) == {"onboarded": True}
    # The worker checks, the triggerer waits, and the resumed task reads the attributes it returns.
    agents = [r.headers["User-Agent"].split("/")[0] for r in emulator.requests]
    assert agents[0] == agents[-1] == "python-requests" and set(agents[1:-1]) == {"python-httpx"}
    assert len(agents) >= 4


@pytest.mark.parametrize(
    ("statuses", "error"),
    [([401], KumulosAuthError), ([404], KumulosUserNotFoundError), ([503, 503], KumulosServerError)],
)
def test_a_failed_read_on_resume_raises_the_typed_error(
    emulator: KumulosEmulator, statuses: list[int], error: type[Exception]
) -> None:
    # The trigger found the user, but reading its attributes afterwards fails (revoked key, user
    # deleted meanwhile, server down past the retries): the task fails with the typed error.
    user_id = emulator.user_ids()[0]
    emulator.script_faults([Fault.status_code(status) for status in statuses])
    with pytest.raises(error) as caught:
        sensor(user_id=user_id).execute_complete(CONTEXT, event={"status": "success", "user_id": user_id})
    assert type(caught.value) is error
    assert [r.status for r in emulator.requests] == statuses


def test_hook_params_reach_the_trigger_through_its_serialised_form(emulator: KumulosEmulator) -> None:
    # The poke finds no user; the trigger, rebuilt from what the sensor serialised, gives up the slow
    # answer after hook_params' 0.2 s (the connection would wait 60 s) and its retry finds the user.
    emulator.add_user("slow-user", {"a": 1})
    emulator.script_faults([Fault.status_code(404), Fault.slow(3.0)])
    op = sensor(user_id="slow-user", deferrable=True, poke_interval=0.05, hook_params={"timeout": 0.2})
    with pytest.raises(TaskDeferred) as caught:
        op.execute(CONTEXT)
    classpath, kwargs = caught.value.trigger.serialize()
    assert classpath == "airflow_provider_kumulos.triggers.kumulos.KumulosUserTrigger"
    assert kwargs["hook_params"] == {"timeout": 0.2}
    trigger = KumulosUserTrigger(**json.loads(json.dumps(kwargs)))

    async def first_event() -> Any:
        return await anext(trigger.run())

    event = asyncio.run(first_event())
    assert op.execute_complete(CONTEXT, event=event.payload) == {"a": 1}
    # The poke's 404, the trigger's retry, the resumed sensor's read; the slow answer is logged last.
    assert [r.fault or r.status for r in logged(emulator, 4)] == ["status", 200, 200, "slow"]


def test_deferrable_times_out_with_a_sensor_timeout(emulator: KumulosEmulator) -> None:
    started = time.monotonic()
    with pytest.raises(AirflowSensorTimeout, match="'ghost' did not appear"):
        run_deferrable(sensor(user_id="ghost", deferrable=True, poke_interval=0.2, timeout=1))
    assert 0.8 <= time.monotonic() - started < 5


def test_deferrable_auth_failure_in_the_trigger_raises_the_sync_error(emulator: KumulosEmulator) -> None:
    # The first poke sees no user; then the server key is revoked while the trigger waits.
    emulator.script_faults([Fault.status_code(404), Fault.status_code(401)])
    with pytest.raises(KumulosAuthError) as deferred_error:
        run_deferrable(sensor(user_id="anyone", deferrable=True, timeout=60))
    emulator.script_faults([Fault.status_code(401)])
    with pytest.raises(KumulosAuthError) as sync_error:
        sensor(user_id="anyone", timeout=60).execute(CONTEXT)
    assert str(deferred_error.value) == str(sync_error.value)
    assert deferred_error.value.status == sync_error.value.status == 401


@pytest.mark.parametrize(
    ("event", "error"),
    [
        (
            {
                "status": "error",
                "error": {"error": "KumulosUserNotFoundError", "message": "m", "details": {}},
            },
            KumulosUserNotFoundError,
        ),
        ({"status": "error", "error": {"error": "Mystery", "message": "m"}}, KumulosError),
        ({"status": "bogus"}, KumulosError),
        (None, KumulosError),
    ],
)
def test_execute_complete_raises_typed_errors(event: Any, error: type[Exception]) -> None:
    with pytest.raises(error) as caught:
        sensor(user_id="x").execute_complete(CONTEXT, event=event)
    assert type(caught.value) is error
