"""The server key never shows up in logs (DEBUG, urllib3 included), reprs or any error text."""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from airflow_provider_kumulos.exceptions import KumulosError
from airflow_provider_kumulos.hooks.kumulos import KumulosCRMHook
from airflow_provider_kumulos.testing.emulator import Fault, KumulosEmulator

SERVER_KEY = "sk-Very-Secret-Server-Key-4711"
API_KEY = "ak-app-key-0815"


@pytest.fixture
def secret_emulator() -> Iterator[KumulosEmulator]:
    """An emulator whose server key is easy to search for."""
    with KumulosEmulator(users=5, api_key=API_KEY, server_key=SERVER_KEY) as emulator:
        yield emulator


@pytest.fixture
def secret_hook(secret_emulator: KumulosEmulator, monkeypatch: pytest.MonkeyPatch) -> KumulosCRMHook:
    monkeypatch.setenv("AIRFLOW_CONN_KUMULOS_SECRET", secret_emulator.connection_uri())
    return KumulosCRMHook("kumulos_secret", max_retries=1, backoff_base=0.01, backoff_max=0.02, timeout=0.3)


def forbidden() -> list[str]:
    """The server key and every encoding of it a client could leak."""
    basic = base64.b64encode(f"{API_KEY}:{SERVER_KEY}".encode()).decode()
    return [SERVER_KEY, basic, f"{API_KEY}:{SERVER_KEY}"]


def failures(hook: KumulosCRMHook, emulator: KumulosEmulator) -> list[str]:
    """Drive every failure path and return the text of each error raised."""
    user_id = emulator.user_ids()[0]
    scenarios: list[tuple[list[Fault], Callable[[], Any]]] = [
        ([Fault.status_code(500)] * 2, lambda: hook.get_attributes(user_id)),
        ([Fault.rate_limited(0)] * 2, lambda: hook.get_users_page(1, 1)),
        ([Fault.dropped()] * 2, lambda: hook.set_attributes(user_id, {"a": 1})),
        ([Fault.slow(0.6)] * 2, lambda: hook.get_attributes(user_id)),
        ([Fault.non_json()] * 2, lambda: hook.get_users_page(1, 1)),
        ([Fault.truncated()] * 2, lambda: hook.get_attributes(user_id)),
        ([Fault.status_code(401)], lambda: hook.delete_attributes(user_id)),
        ([Fault.status_code(422)], lambda: hook.set_attributes(user_id, {"a": 1})),
        ([], lambda: hook.get_attributes("ghost")),
        ([], lambda: hook.set_attributes(user_id, {"bad": float("nan")})),
    ]
    texts = []
    for faults, call in scenarios:
        emulator.script_faults(faults)
        with pytest.raises(KumulosError) as caught:
            call()
        texts.extend([str(caught.value), repr(caught.value), json.dumps(caught.value.to_dict(), default=str)])
    texts.append(hook.test_connection()[1])
    return texts


def test_server_key_never_logged_or_shown(
    secret_hook: KumulosCRMHook,
    secret_emulator: KumulosEmulator,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    for name in ("urllib3", "requests", "airflow_provider_kumulos"):
        caplog.set_level(logging.DEBUG, logger=name)
    assert secret_hook.get_users_page(1, 2)["totalUsers"] == 5
    texts = failures(secret_hook, secret_emulator)
    texts += [repr(secret_hook), repr(secret_hook.config), str(secret_hook.config), caplog.text]
    texts += [record.getMessage() for record in caplog.records]
    # The log really captured the client's DEBUG chatter, so its absence of secrets means something.
    assert any(record.name.startswith("urllib3") for record in caplog.records)
    assert any("retrying in" in record.getMessage() for record in caplog.records)
    for text in texts:
        for secret in forbidden():
            assert secret not in text


def test_a_bad_server_key_is_not_echoed(
    secret_emulator: KumulosEmulator, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    wrong = "sk-Wrong-Key-That-Must-Stay-Hidden"
    conn = json.loads(secret_emulator.connection_uri())
    monkeypatch.setenv("AIRFLOW_CONN_KUMULOS_WRONG", json.dumps({**conn, "password": wrong}))
    hook = KumulosCRMHook("kumulos_wrong")
    with pytest.raises(KumulosError) as caught:
        hook.get_attributes("anyone")
    ok, message = hook.test_connection()
    assert ok is False
    for text in (str(caught.value), message, caplog.text, repr(hook.config)):
        assert wrong not in text
