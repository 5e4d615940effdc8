"""Documented statuses map to their typed errors, final ones are never retried, garbled bodies are."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from airflow_provider_kumulos.exceptions import (
    KumulosAuthError,
    KumulosError,
    KumulosResponseError,
    KumulosServerError,
    KumulosUserNotFoundError,
    KumulosValidationError,
)
from airflow_provider_kumulos.hooks.kumulos import KumulosCRMHook
from airflow_provider_kumulos.testing.emulator import Fault, KumulosEmulator, RecordedRequest

Received = Callable[..., list[RecordedRequest]]

CALLS: dict[str, Callable[[KumulosCRMHook, str], Any]] = {
    "get_users_page": lambda hook, uid: hook.get_users_page(1, 10),
    "get_attributes": lambda hook, uid: hook.get_attributes(uid),
    "set_attributes": lambda hook, uid: hook.set_attributes(uid, {"a": 1}),
    "delete_attributes": lambda hook, uid: hook.delete_attributes(uid),
}


@pytest.fixture
def bad_key_hook(kumulos_emulator: KumulosEmulator, monkeypatch: pytest.MonkeyPatch) -> KumulosCRMHook:
    """A hook whose connection holds a server key the emulator rejects."""
    conn = json.loads(kumulos_emulator.connection_uri())
    monkeypatch.setenv("AIRFLOW_CONN_KUMULOS_BAD_KEY", json.dumps({**conn, "password": "rotated-server-key"}))
    return KumulosCRMHook("kumulos_bad_key", max_retries=3, backoff_base=0.01, backoff_max=0.05)


@pytest.mark.parametrize("call", CALLS)
def test_401_is_an_auth_error_sent_once(
    bad_key_hook: KumulosCRMHook, received: Received, user_id: str, call: str
) -> None:
    with pytest.raises(KumulosAuthError) as caught:
        CALLS[call](bad_key_hook, user_id)
    assert caught.value.status == 401
    assert "Check the connection's API key (login) and server key (password)" in str(caught.value)
    assert [r.status for r in received()] == [401]


def test_401_from_test_connection_is_a_failed_check(bad_key_hook: KumulosCRMHook, received: Received) -> None:
    ok, message = bad_key_hook.test_connection()
    assert ok is False
    assert message == "Authentication failed: check the API key (login) and server key (password)."
    assert len(received()) == 1


def test_404_on_get_is_user_not_found_sent_once(hook: KumulosCRMHook, received: Received) -> None:
    with pytest.raises(KumulosUserNotFoundError) as caught:
        hook.get_attributes("ghost")
    assert (caught.value.user_id, caught.value.status, caught.value.operation) == (
        "ghost",
        404,
        "get attributes",
    )
    assert [r.status for r in received()] == [404]


def test_400_on_delete_is_user_not_found_sent_once(hook: KumulosCRMHook, received: Received) -> None:
    with pytest.raises(KumulosUserNotFoundError) as caught:
        hook.delete_attributes("ghost")
    assert caught.value.status == 400
    assert [r.status for r in received()] == [400]


def test_422_carries_the_parsed_body_and_is_sent_once(
    hook: KumulosCRMHook, kumulos_emulator: KumulosEmulator, received: Received, user_id: str
) -> None:
    body = {"errors": {"age": ["must be a number"]}}
    kumulos_emulator.reject_users({user_id: (422, body)})
    with pytest.raises(KumulosValidationError) as caught:
        hook.set_attributes(user_id, {"age": "old"})
    assert caught.value.body == body and caught.value.status == 422
    assert "must be a number" in str(caught.value)
    assert [r.status for r in received()] == [422]


def test_400_on_put_is_not_retried(
    hook: KumulosCRMHook, kumulos_emulator: KumulosEmulator, received: Received, user_id: str
) -> None:
    kumulos_emulator.reject_users({user_id: (400, {"message": "bad"})})
    with pytest.raises(KumulosServerError) as caught:
        hook.set_attributes(user_id, {"a": 1})
    assert caught.value.status == 400
    assert len(received()) == 1


def test_delete_answered_with_200_counts_as_success(
    hook: KumulosCRMHook, kumulos_emulator: KumulosEmulator, user_id: str
) -> None:
    kumulos_emulator.reject_users({user_id: (200, {})})
    assert hook.delete_attributes(user_id) is None


@pytest.mark.parametrize(
    ("fault", "call"),
    [
        (Fault.truncated(), "get_attributes"),
        (Fault.non_json(), "get_attributes"),
        (Fault.truncated(), "get_users_page"),
        (Fault.non_json(), "get_users_page"),
        (Fault.missing_field("users"), "get_users_page"),
        (Fault.missing_field("totalUsers"), "get_users_page"),
    ],
)
def test_malformed_bodies_raise_response_error_after_retries(
    hook: KumulosCRMHook,
    kumulos_emulator: KumulosEmulator,
    received: Received,
    user_id: str,
    fault: Fault,
    call: str,
) -> None:
    kumulos_emulator.script_faults([fault] * 3)
    with pytest.raises(KumulosResponseError) as caught:
        CALLS[call](hook, user_id)
    assert caught.value.status == 200
    assert [r.fault for r in received()] == [fault.kind] * 3
    assert hook.stats.retries == 2


def test_a_garbled_body_then_a_good_one_succeeds(
    hook: KumulosCRMHook, kumulos_emulator: KumulosEmulator, received: Received
) -> None:
    kumulos_emulator.script_faults([Fault.non_json()])
    assert hook.get_users_page(1, 3)["totalUsers"] == 50
    assert [r.fault for r in received()] == ["non_json", None]


def test_a_json_non_object_success_body_is_a_response_error(
    hook: KumulosCRMHook, kumulos_emulator: KumulosEmulator, user_id: str
) -> None:
    kumulos_emulator.reject_users({user_id: (200, ["not", "an", "object"])})
    with pytest.raises(KumulosResponseError, match="JSON list, expected an object"):
        hook.get_attributes(user_id)


def test_every_error_is_a_kumulos_error_with_operation(
    hook: KumulosCRMHook, kumulos_emulator: KumulosEmulator
) -> None:
    kumulos_emulator.script_faults([Fault.status_code(500)] * 3)
    with pytest.raises(KumulosError) as caught:
        hook.get_users_page(1, 1)
    assert caught.value.operation == "list users"
    assert "Kumulos list users (GET /v2/users) returned HTTP 500" in str(caught.value)
