"""KumulosCRMAsyncHook against the emulator: shared clients per connection, their keys and lifetime."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable
from typing import Any

import pytest

from airflow_provider_kumulos import _policy
from airflow_provider_kumulos.exceptions import KumulosAuthError
from airflow_provider_kumulos.hooks import _clients
from airflow_provider_kumulos.hooks._config import ClientConfig
from airflow_provider_kumulos.hooks.kumulos import KumulosCRMAsyncHook
from airflow_provider_kumulos.testing.emulator import Fault, KumulosEmulator

FAST_RETRIES = {"max_retries": 2, "backoff_base": 0.01, "backoff_max": 0.05}


@pytest.fixture
def define(kumulos_emulator: KumulosEmulator, monkeypatch: pytest.MonkeyPatch) -> Callable[..., str]:
    """``define(conn_id, password=None, **extra)``: a connection to the emulator; returns its id."""

    def make(conn_id: str = "kumulos_async", password: str | None = None, **extra: Any) -> str:
        conn = json.loads(kumulos_emulator.connection_uri(**{**FAST_RETRIES, **extra}))
        if password is not None:
            conn["password"] = password
        monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(conn))
        return conn_id

    return make


@pytest.fixture
def builds(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The thread id of every shared client built (the real build runs, it is only counted)."""
    seen: list[int] = []
    build = _clients._new_client

    def counted(config: ClientConfig) -> Any:
        seen.append(threading.get_ident())
        return build(config)

    monkeypatch.setattr(_clients, "_new_client", counted)
    return seen


def test_finds_attributes_and_none_for_a_missing_user(
    define: Callable[..., str], kumulos_emulator: KumulosEmulator
) -> None:
    user_id = kumulos_emulator.user_ids()[0]

    async def scenario() -> tuple[Any, Any]:
        async with KumulosCRMAsyncHook(define()) as hook:
            return await hook.find_attributes("nobody"), await hook.find_attributes(user_id)

    assert asyncio.run(scenario()) == (None, kumulos_emulator.get_attributes(user_id))
    assert [r.status for r in kumulos_emulator.requests] == [404, 200]


def test_hooks_on_the_same_settings_share_one_client_built_off_the_event_loop(
    define: Callable[..., str], kumulos_emulator: KumulosEmulator, builds: list[int]
) -> None:
    user_ids = kumulos_emulator.user_ids()[:20]
    conn_id = define()

    async def scenario() -> int:
        hooks = [KumulosCRMAsyncHook(conn_id) for _ in user_ids]
        await asyncio.gather(*(hook.find_attributes(uid) for hook, uid in zip(hooks, user_ids, strict=True)))
        clients = {id(hook._shared) for hook in hooks}
        await asyncio.gather(*(hook.close() for hook in hooks))
        return len(clients)

    assert asyncio.run(scenario()) == 1
    assert len(builds) == 1 and builds[0] != threading.get_ident()
    assert len(kumulos_emulator.requests) == len(user_ids)


def test_another_connection_or_a_rotated_key_never_shares_a_client(
    define: Callable[..., str], kumulos_emulator: KumulosEmulator, builds: list[int]
) -> None:
    user_id = kumulos_emulator.user_ids()[0]
    good = define("kumulos_good")
    bad = define("kumulos_bad", password="a-key-that-was-rotated-away")

    async def scenario() -> None:
        async with KumulosCRMAsyncHook(good) as first, KumulosCRMAsyncHook(bad) as other:
            await first.find_attributes(user_id)
            with pytest.raises(KumulosAuthError):
                await other.find_attributes(user_id)
            # The same connection id after its key was rotated: new settings, a client of its own.
            define("kumulos_good", password="rotated-and-wrong")
            async with KumulosCRMAsyncHook(good) as rotated:
                with pytest.raises(KumulosAuthError):
                    await rotated.find_attributes(user_id)
                assert rotated._shared is not first._shared
            assert await first.find_attributes(user_id) is not None

    asyncio.run(scenario())
    assert len(builds) == 3
    assert [r.status for r in kumulos_emulator.requests] == [200, 401, 401, 200]


def test_the_client_closes_when_its_last_hook_closes(
    define: Callable[..., str], kumulos_emulator: KumulosEmulator, builds: list[int]
) -> None:
    user_id = kumulos_emulator.user_ids()[0]
    conn_id = define()

    async def scenario() -> None:
        first, second = KumulosCRMAsyncHook(conn_id), KumulosCRMAsyncHook(conn_id)
        await first.find_attributes(user_id)
        await second.find_attributes(user_id)
        assert first._shared is not None and second._shared is first._shared
        client = first._shared.client
        await first.close()
        assert not client.is_closed
        await second.find_attributes(user_id)
        await second.close()
        assert client.is_closed
        async with KumulosCRMAsyncHook(conn_id) as later:
            await later.find_attributes(user_id)
            assert later._shared is not None and later._shared.client is not client

    asyncio.run(scenario())
    assert len(builds) == 2


def test_the_key_is_a_digest_of_every_setting_without_the_secret() -> None:
    config = ClientConfig("https://crm.example", "api-key", "server-secret")
    rotated = ClientConfig("https://crm.example", "api-key", "server-secret-2")
    key = _clients.client_key(config)
    assert key == _clients.client_key(ClientConfig("https://crm.example", "api-key", "server-secret"))
    assert key != _clients.client_key(rotated)
    assert "server-secret" not in key and "api-key" not in key and len(key) == 64


def test_a_429_pauses_every_hook_on_the_connection(
    define: Callable[..., str], kumulos_emulator: KumulosEmulator
) -> None:
    user_id = kumulos_emulator.user_ids()[0]
    conn_id = define()
    kumulos_emulator.script_faults([Fault.rate_limited(1)])

    async def scenario() -> None:
        async with KumulosCRMAsyncHook(conn_id) as first, KumulosCRMAsyncHook(conn_id) as second:
            limited = asyncio.ensure_future(first.find_attributes(user_id))
            while not kumulos_emulator.requests:
                await asyncio.sleep(0.01)
            await asyncio.sleep(0.1)  # the 429 has arrived and closed the gate for a second
            await second.find_attributes(user_id)
            await limited

    asyncio.run(scenario())
    first_429, *after = kumulos_emulator.requests
    assert first_429.status == 429 and [r.status for r in after] == [200, 200]
    assert min(r.timestamp for r in after) - first_429.timestamp >= 0.95


def test_a_large_answer_is_decoded_in_a_worker_thread(
    define: Callable[..., str], kumulos_emulator: KumulosEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    attributes = {f"field_{n}": "x" * 100 for n in range(1000)}  # about 110 KB of JSON
    kumulos_emulator.add_user("big", attributes)
    decoded_in: list[int] = []
    interpret = _policy.interpret

    def spied(request: Any, response: Any) -> Any:
        decoded_in.append(threading.get_ident())
        return interpret(request, response)

    monkeypatch.setattr(_policy, "interpret", spied)
    conn_id = define()

    async def scenario() -> tuple[Any, Any]:
        async with KumulosCRMAsyncHook(conn_id) as hook:
            return await hook.find_attributes("big"), await hook.find_attributes(
                kumulos_emulator.user_ids()[0]
            )

    big, small = asyncio.run(scenario())
    assert big == attributes and small is not None
    assert decoded_in[0] != threading.get_ident() and decoded_in[1] == threading.get_ident()
