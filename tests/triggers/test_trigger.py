"""KumulosUserTrigger driven directly with asyncio against the emulator over real sockets."""

from __future__ import annotations

import asyncio
import importlib
import json
import threading
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote

import psutil
import pytest

from airflow_provider_kumulos.testing.emulator import Fault, KumulosEmulator
from airflow_provider_kumulos.triggers.kumulos import KumulosUserTrigger

CONN_ID = "kumulos_trigger"
FAST_RETRIES = {"max_retries": 2, "backoff_base": 0.01, "backoff_max": 0.05}


@pytest.fixture
def connection(kumulos_emulator: KumulosEmulator, monkeypatch: pytest.MonkeyPatch) -> Callable[..., str]:
    """``connection(**overrides)``: define the trigger's connection on the emulator; returns its id."""

    def define(password: str | None = None, **extra: Any) -> str:
        conn = json.loads(kumulos_emulator.connection_uri(**{**FAST_RETRIES, **extra}))
        if password is not None:
            conn["password"] = password
        monkeypatch.setenv(f"AIRFLOW_CONN_{CONN_ID.upper()}", json.dumps(conn))
        return CONN_ID

    return define


def events(trigger: KumulosUserTrigger) -> list[dict[str, Any]]:
    """Every event payload the trigger fires, running it to completion on a fresh event loop."""

    async def collect() -> list[dict[str, Any]]:
        return [event.payload async for event in trigger.run()]

    return asyncio.run(collect())


def later(seconds: float, action: Callable[[], Any]) -> threading.Timer:
    """Run ``action`` in ``seconds`` from another thread (as a mobile app would create the user)."""
    timer = threading.Timer(seconds, action)
    timer.start()
    return timer


def logged(emulator: KumulosEmulator, count: int) -> list[Any]:
    """The requests the emulator logged, once there are ``count`` (it logs a slow answer when it sends it,
    after the client gave up on it), waiting up to 5 s."""
    deadline = time.monotonic() + 5
    while len(emulator.requests) < count and time.monotonic() < deadline:
        time.sleep(0.02)
    return emulator.requests


def test_existing_user_succeeds_at_once(
    connection: Callable[..., str], kumulos_emulator: KumulosEmulator
) -> None:
    user_id = kumulos_emulator.user_ids()[3]
    (event,) = events(KumulosUserTrigger(user_id, connection(), poke_interval=5))
    assert event == {"status": "success", "user_id": user_id}
    assert len(kumulos_emulator.requests) == 1


def test_the_event_holds_no_attribute_values(
    connection: Callable[..., str], kumulos_emulator: KumulosEmulator
) -> None:
    # Airflow logs every trigger event; attribute values are user data and stay out of it.
    user_id = kumulos_emulator.user_ids()[3]
    attributes = kumulos_emulator.get_attributes(user_id)
    (event,) = events(
        KumulosUserTrigger(
            user_id, connection(), poke_interval=5, attributes_match={"plan": attributes["plan"]}
        )
    )
    logged = json.dumps(event, ensure_ascii=False)
    assert set(event) == {"status", "user_id"}
    for name in ("name", "email", "age", "score"):
        assert str(attributes[name]) not in logged, name


def test_waits_until_the_user_appears(
    connection: Callable[..., str], kumulos_emulator: KumulosEmulator
) -> None:
    timer = later(0.6, lambda: kumulos_emulator.add_user("late-user", {"plan": "free"}))
    (event,) = events(
        KumulosUserTrigger("late-user", connection(), poke_interval=0.1, end_time=time.time() + 10)
    )
    timer.join()
    assert event == {"status": "success", "user_id": "late-user"}
    statuses = [r.status for r in kumulos_emulator.requests]
    assert statuses[-1] == 200 and set(statuses[:-1]) == {404} and len(statuses) >= 3


def test_attributes_match_waits_for_the_values(
    connection: Callable[..., str], kumulos_emulator: KumulosEmulator
) -> None:
    kumulos_emulator.add_user("onboarding", {"onboarded": False, "name": "Ada"})
    timer = later(
        0.6, lambda: kumulos_emulator.set_attributes("onboarding", {"onboarded": True, "name": "Ada"})
    )
    trigger = KumulosUserTrigger(
        "onboarding",
        connection(),
        poke_interval=0.1,
        attributes_match={"onboarded": True},
        end_time=time.time() + 10,
    )
    (event,) = events(trigger)
    timer.join()
    assert event == {"status": "success", "user_id": "onboarding"}
    assert "Ada" not in json.dumps(event)
    assert len(kumulos_emulator.requests) >= 3
    assert {r.status for r in kumulos_emulator.requests} == {200}


def test_times_out_at_end_time(connection: Callable[..., str], kumulos_emulator: KumulosEmulator) -> None:
    started = time.monotonic()
    (event,) = events(
        KumulosUserTrigger("ghost", connection(), poke_interval=0.2, end_time=time.time() + 0.7)
    )
    elapsed = time.monotonic() - started
    assert event["status"] == "timeout"
    assert "'ghost' did not appear" in event["message"]
    assert 0.6 <= elapsed < 3
    assert len(kumulos_emulator.requests) >= 3


def test_bad_credentials_fire_an_auth_error_event_at_once(
    connection: Callable[..., str], kumulos_emulator: KumulosEmulator
) -> None:
    started = time.monotonic()
    (event,) = events(
        KumulosUserTrigger(
            "anyone", connection(password="wrong-secret-key"), poke_interval=0.1, end_time=time.time() + 30
        )
    )
    assert time.monotonic() - started < 5
    assert event["status"] == "error"
    error = event["error"]
    assert (error["error"], error["status"], error["operation"]) == (
        "KumulosAuthError",
        401,
        "get attributes",
    )
    assert "API key (login) and server key (password)" in error["message"]
    assert [r.status for r in kumulos_emulator.requests] == [401]
    assert "wrong-secret-key" not in json.dumps(event)


def test_transient_errors_are_retried_then_succeed(
    connection: Callable[..., str], kumulos_emulator: KumulosEmulator
) -> None:
    user_id = kumulos_emulator.user_ids()[0]
    kumulos_emulator.script_faults(
        [Fault.status_code(503), Fault.rate_limited(0), Fault.dropped(), Fault.non_json()]
    )
    (event,) = events(
        KumulosUserTrigger(user_id, connection(max_retries=5), poke_interval=5, end_time=time.time() + 30)
    )
    assert event["status"] == "success"
    assert [r.status for r in kumulos_emulator.requests] == [503, 429, None, 200, 200]


def test_errors_outlasting_retries_mean_not_yet(
    connection: Callable[..., str], kumulos_emulator: KumulosEmulator, capsys: pytest.CaptureFixture[str]
) -> None:
    user_id = kumulos_emulator.user_ids()[0]
    kumulos_emulator.script_faults([Fault.status_code(502)] * 4)
    (event,) = events(
        KumulosUserTrigger(user_id, connection(max_retries=1), poke_interval=0.05, end_time=time.time() + 30)
    )
    assert event["status"] == "success"
    assert [r.status for r in kumulos_emulator.requests] == [502, 502, 502, 502, 200]
    # Triggers log through structlog, which writes to stdout.
    assert capsys.readouterr().out.count("Kumulos still failing after retries, will check again") == 2


def test_read_timeouts_are_retried(connection: Callable[..., str], kumulos_emulator: KumulosEmulator) -> None:
    user_id = kumulos_emulator.user_ids()[0]
    kumulos_emulator.script_faults([Fault.slow(0.8)])
    (event,) = events(
        KumulosUserTrigger(user_id, connection(timeout=0.2), poke_interval=5, end_time=time.time() + 30)
    )
    assert event["status"] == "success"


def test_hostile_ids_stay_one_segment(
    connection: Callable[..., str], kumulos_emulator: KumulosEmulator
) -> None:
    for user_id in ("..", "a/b?c#d", "%41 é"):
        kumulos_emulator.add_user(user_id, {"id": user_id})
        (event,) = events(KumulosUserTrigger(user_id, connection(), poke_interval=1))
        assert event == {"status": "success", "user_id": user_id}
        segment = kumulos_emulator.requests[-1].raw_path.split("/")[3]
        assert unquote(segment) == user_id and segment not in (".", "..")
        assert kumulos_emulator.requests[-1].raw_path.count("/") == 4


@pytest.mark.parametrize(
    ("kwargs", "parameter"),
    [
        ({"user_id": ""}, "user_id"),
        ({"user_id": "ok", "attributes_match": ["onboarded"]}, "attributes_match"),
    ],
)
def test_invalid_arguments_fire_an_input_error_without_requests(
    connection: Callable[..., str], kumulos_emulator: KumulosEmulator, kwargs: dict[str, Any], parameter: str
) -> None:
    (event,) = events(KumulosUserTrigger(kumulos_conn_id=connection(), poke_interval=0.1, **kwargs))
    assert event["error"]["error"] == "KumulosInputError"
    assert event["error"]["details"] == {"parameter": parameter}
    assert kumulos_emulator.requests == []


def test_undefined_connection_fires_a_config_error(undefined_conn_id: str) -> None:
    (event,) = events(KumulosUserTrigger("someone", undefined_conn_id, poke_interval=0.1))
    assert event["error"]["error"] == "KumulosConfigError"
    assert f"'{undefined_conn_id}' is not defined" in event["error"]["message"]


def test_unreadable_ca_bundle_fires_a_config_error(connection: Callable[..., str], tmp_path: Any) -> None:
    bundle = tmp_path / "not-a-certificate.pem"
    bundle.write_text("garbage")
    (event,) = events(KumulosUserTrigger("someone", connection(verify=str(bundle)), poke_interval=0.1))
    assert event["error"]["error"] == "KumulosConfigError"
    assert "cannot load the CA bundle" in event["error"]["message"]


def test_an_unexpected_failure_still_fires_one_error_event(connection: Callable[..., str]) -> None:
    # Corrupt kwargs (as from a hand-edited trigger row) must not kill the triggerer's loop.
    trigger = KumulosUserTrigger("ghost", connection(), poke_interval=0.1, end_time="soon")  # type: ignore[arg-type]
    (event,) = events(trigger)
    assert event["status"] == "error" and event["error"]["error"] == "TypeError"


def client_connections(port: int) -> list[Any]:
    """This process's established TCP connections to ``port`` (the client side only)."""
    process = psutil.Process()
    listing = getattr(process, "net_connections", None) or process.connections  # psutil < 6
    return [
        conn
        for conn in listing(kind="tcp")
        if conn.raddr and conn.raddr.port == port and conn.status == psutil.CONN_ESTABLISHED
    ]


def test_cancellation_closes_the_client(
    connection: Callable[..., str], kumulos_emulator: KumulosEmulator
) -> None:
    trigger = KumulosUserTrigger("ghost", connection(), poke_interval=0.2, end_time=time.time() + 60)

    async def cancel_while_waiting() -> tuple[int, int]:
        task = asyncio.ensure_future(anext(trigger.run()))
        while len(kumulos_emulator.requests) < 2:
            await asyncio.sleep(0.02)
        open_before = len(client_connections(kumulos_emulator.port))
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return open_before, len(client_connections(kumulos_emulator.port))

    open_before, open_after = asyncio.run(cancel_while_waiting())
    assert open_before == 1
    assert open_after == 0


def test_serialize_round_trips_without_credentials(
    connection: Callable[..., str], kumulos_emulator: KumulosEmulator
) -> None:
    trigger = KumulosUserTrigger(
        "u-1",
        connection(),
        poke_interval=7,
        attributes_match={"a": [1, True]},
        end_time=123.5,
        hook_params={"timeout": 2.5, "max_retries": 1, "verify": False},
    )
    classpath, kwargs = trigger.serialize()
    assert classpath == "airflow_provider_kumulos.triggers.kumulos.KumulosUserTrigger"
    assert kwargs == {
        "user_id": "u-1",
        "kumulos_conn_id": CONN_ID,
        "poke_interval": 7.0,
        "attributes_match": {"a": [1, True]},
        "end_time": 123.5,
        "hook_params": {"timeout": 2.5, "max_retries": 1, "verify": False},
    }
    text = json.dumps(kwargs)
    assert kumulos_emulator.server_key not in text and kumulos_emulator.api_key not in text
    module, _, name = classpath.rpartition(".")
    rebuilt = getattr(importlib.import_module(module), name)(**json.loads(text))
    assert rebuilt.serialize() == (classpath, kwargs)


def rebuilt(trigger: KumulosUserTrigger) -> KumulosUserTrigger:
    """The trigger the triggerer builds from ``trigger``'s serialised form, through JSON as it is stored."""
    classpath, kwargs = trigger.serialize()
    module, _, name = classpath.rpartition(".")
    again: KumulosUserTrigger = getattr(importlib.import_module(module), name)(
        **json.loads(json.dumps(kwargs))
    )
    return again


def test_hook_params_reach_the_hook_after_the_round_trip(
    connection: Callable[..., str], kumulos_emulator: KumulosEmulator
) -> None:
    # The connection waits 60 s for an answer; hook_params cut that to 0.2 s, so the slow answer is
    # given up and the retry succeeds.
    user_id = kumulos_emulator.user_ids()[0]
    kumulos_emulator.script_faults([Fault.slow(3.0)])
    trigger = KumulosUserTrigger(user_id, connection(), poke_interval=5, hook_params={"timeout": 0.2})
    (event,) = events(rebuilt(trigger))
    assert event["status"] == "success"
    assert sorted(r.fault or "" for r in logged(kumulos_emulator, 2)) == ["", "slow"]


@pytest.mark.parametrize(
    ("hook_params", "parameter", "problem"),
    [
        ({"pool_size": 4}, "hook_params", "'pool_size' is not a hook argument"),
        ({"timeout": 0}, "hook_params['timeout']", "0 is not a number of seconds > 0"),
        ({"max_retries": "3"}, "hook_params['max_retries']", "'3' is not a whole number"),
        (["timeout"], "hook_params", "expected a mapping of hook arguments, got list"),
    ],
)
def test_bad_hook_params_fire_an_input_error_without_requests(
    connection: Callable[..., str],
    kumulos_emulator: KumulosEmulator,
    hook_params: Any,
    parameter: str,
    problem: str,
) -> None:
    (event,) = events(
        rebuilt(KumulosUserTrigger("u", connection(), poke_interval=0.1, hook_params=hook_params))
    )
    assert event["error"]["error"] == "KumulosInputError"
    assert event["error"]["details"] == {"parameter": parameter}
    assert problem in event["error"]["message"]
    assert kumulos_emulator.requests == []


def run_together(triggers: list[KumulosUserTrigger]) -> list[dict[str, Any]]:
    """Run the triggers side by side on one event loop (as a triggerer does); their events in order."""

    async def all_events() -> list[dict[str, Any]]:
        events = await asyncio.gather(*(anext(trigger.run()) for trigger in triggers))
        return [event.payload for event in events]

    return asyncio.run(all_events())


def test_triggers_on_one_connection_share_one_client_closed_by_the_last(
    connection: Callable[..., str], kumulos_emulator: KumulosEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    from airflow_provider_kumulos.hooks import _clients

    built: list[Any] = []
    build = _clients._new_client

    def counted(config: Any) -> Any:
        built.append(build(config))
        return built[-1]

    monkeypatch.setattr(_clients, "_new_client", counted)
    user_ids = kumulos_emulator.user_ids()[:5]
    conn_id = connection()
    triggers = [KumulosUserTrigger(uid, conn_id, poke_interval=0.1) for uid in user_ids]
    triggers.append(KumulosUserTrigger("ghost", conn_id, poke_interval=0.1, end_time=time.time() + 1))
    payloads = run_together(triggers)
    assert [p["status"] for p in payloads] == ["success"] * 5 + ["timeout"]
    (client,) = built
    assert client.is_closed


def test_a_429_pauses_every_trigger_on_the_connection_for_its_retry_after(
    connection: Callable[..., str], kumulos_emulator: KumulosEmulator
) -> None:
    conn_id = connection()
    retry_after = 2.0
    deadline = time.time() + 5
    triggers = [
        KumulosUserTrigger(f"not-yet-{n}", conn_id, poke_interval=0.1, end_time=deadline) for n in range(20)
    ]

    def rate_limit_once_they_poll() -> None:
        while len(kumulos_emulator.requests) < 40:
            time.sleep(0.01)
        kumulos_emulator.script_faults([Fault.rate_limited(int(retry_after))])

    limiter = threading.Thread(target=rate_limit_once_they_poll, daemon=True)
    limiter.start()
    payloads = run_together(triggers)
    limiter.join()
    assert {p["status"] for p in payloads} == {"timeout"}
    requests = kumulos_emulator.requests
    (limited,) = [r for r in requests if r.status == 429]
    # Requests already on their way when the 429 was sent may land just after it; none may follow.
    during = [
        r for r in requests if limited.timestamp + 0.3 <= r.timestamp < limited.timestamp + retry_after - 0.05
    ]
    assert during == []
    after = [r for r in requests if r.timestamp >= limited.timestamp + retry_after - 0.05]
    assert len({r.identifier for r in after}) == len(triggers)  # every trigger polled again afterwards
