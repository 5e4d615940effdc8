"""A host without a scheme on a plain-HTTP server: the error says what happened and gives the exact fix.

A host without a scheme means ``https://``; a plain-HTTP server answers the TLS handshake with an HTTP
error page, which no ``verify`` setting can fix. Hook and trigger are checked against the real
emulator over sockets, with verification on and off.
"""

from __future__ import annotations

import asyncio
import json
import ssl
from typing import Any

import pytest

from airflow_provider_kumulos import _policy
from airflow_provider_kumulos.exceptions import KumulosConfigError
from airflow_provider_kumulos.hooks.kumulos import KumulosCRMHook
from airflow_provider_kumulos.testing.emulator import KumulosEmulator
from airflow_provider_kumulos.triggers.kumulos import KumulosUserTrigger

CONN_ID = "kumulos_schemeless"


def _define(monkeypatch: pytest.MonkeyPatch, emulator: KumulosEmulator, verify: bool) -> str:
    """A connection naming the plain-HTTP emulator as ``127.0.0.1:<port>``; returns that host."""
    host = f"127.0.0.1:{emulator.port}"
    conn = {
        "conn_type": "kumulos",
        "host": host,
        "login": emulator.api_key,
        "password": emulator.server_key,
        "extra": {"verify": verify, "max_retries": 3, "backoff_base": 0.01, "backoff_max": 0.05},
    }
    monkeypatch.setenv(f"AIRFLOW_CONN_{CONN_ID.upper()}", json.dumps(conn))
    return host


def _assert_plain_http_message(message: str, host: str) -> None:
    assert "answered the TLS handshake in plain HTTP" in message
    assert f"Set the connection host to http://{host} " in message
    assert "TLS verification failed" not in message
    assert "set it to false" not in message


@pytest.mark.parametrize("verify", [True, False])
def test_hook_says_the_server_speaks_plain_http(
    kumulos_emulator: KumulosEmulator, monkeypatch: pytest.MonkeyPatch, verify: bool
) -> None:
    host = _define(monkeypatch, kumulos_emulator, verify)
    hook = KumulosCRMHook(CONN_ID)
    with pytest.raises(KumulosConfigError) as caught:
        hook.get_users_page(1, 1)
    _assert_plain_http_message(str(caught.value), host)
    assert caught.value.operation == "list users"
    assert hook.stats.requests == {("list users", "tls_error"): 1}
    assert hook.stats.retries == 0
    assert kumulos_emulator.server_key not in str(caught.value)


def test_the_suggested_host_works(kumulos_emulator: KumulosEmulator, monkeypatch: pytest.MonkeyPatch) -> None:
    host = _define(monkeypatch, kumulos_emulator, True)
    with pytest.raises(KumulosConfigError) as caught:
        KumulosCRMHook(CONN_ID).get_users_page(1, 1)
    suggested = str(caught.value).split("Set the connection host to ", 1)[1].split(" ", 1)[0]
    assert suggested == f"http://{host}"
    conn = json.loads(kumulos_emulator.connection_uri())
    monkeypatch.setenv(f"AIRFLOW_CONN_{CONN_ID.upper()}", json.dumps({**conn, "host": suggested}))
    assert KumulosCRMHook(CONN_ID).get_users_page(1, 1)["totalUsers"] == 50


@pytest.mark.parametrize("verify", [True, False])
def test_trigger_says_the_server_speaks_plain_http(
    kumulos_emulator: KumulosEmulator, monkeypatch: pytest.MonkeyPatch, verify: bool
) -> None:
    host = _define(monkeypatch, kumulos_emulator, verify)

    async def collect() -> list[dict[str, Any]]:
        return [event.payload async for event in KumulosUserTrigger("x", CONN_ID, poke_interval=0.1).run()]

    (event,) = asyncio.run(collect())
    assert event["status"] == "error"
    assert event["error"]["error"] == "KumulosConfigError"
    _assert_plain_http_message(event["error"]["message"], host)


# -- the classification itself (a pure function: any client's exception, or its text) ---------

GET = _policy.users_page_request(1, 1)


def _ssl_error(reason: str) -> ssl.SSLError:
    error = ssl.SSLError(1, f"[SSL: {reason}] {reason.lower().replace('_', ' ')} (_ssl.c:1006)")
    error.reason = reason  # what the ssl module sets from OpenSSL's error queue
    return error


@pytest.mark.parametrize(
    "error",
    [
        "[SSL: WRONG_VERSION_NUMBER] wrong version number (_ssl.c:1006)",
        "[SSL] record layer failure (_ssl.c:1010)",
        "SSLError: http request",
        _ssl_error("WRONG_VERSION_NUMBER"),
        _ssl_error("RECORD_LAYER_FAILURE"),
    ],
)
def test_plain_http_answers_are_recognised(error: BaseException | str) -> None:
    assert _policy.plain_http_answer(error) is not None


def test_plain_http_is_found_deep_in_a_clients_chain() -> None:
    try:
        try:
            raise _ssl_error("WRONG_VERSION_NUMBER")
        except ssl.SSLError as inner:
            raise ConnectionError("wrapped") from inner
    except ConnectionError as outer:
        wrapper = RuntimeError("client error", outer)
    assert _policy.plain_http_answer(wrapper) == "WRONG_VERSION_NUMBER"


@pytest.mark.parametrize(
    "error",
    [
        "SSLError",
        "[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: self-signed certificate",
        _ssl_error("CERTIFICATE_VERIFY_FAILED"),
        _ssl_error("SSLV3_ALERT_HANDSHAKE_FAILURE"),
        ConnectionResetError("reset"),
    ],
)
def test_other_tls_failures_keep_the_verification_advice(error: BaseException | str) -> None:
    assert _policy.plain_http_answer(error) is None
    message = str(_policy.tls_error(GET, "https://crm.example.com", error))
    assert "TLS verification failed for https://crm.example.com" in message
    assert "CA bundle path" in message


def test_a_certificate_failure_names_its_reason() -> None:
    message = str(_policy.tls_error(GET, "https://x", _ssl_error("CERTIFICATE_VERIFY_FAILED")))
    assert "(SSLError: CERTIFICATE_VERIFY_FAILED)" in message


def test_the_fix_keeps_the_host_port_and_path() -> None:
    error = _policy.tls_error(GET, "https://10.0.0.5:8443/kumulos", "wrong version number")
    assert isinstance(error, KumulosConfigError)
    assert "Set the connection host to http://10.0.0.5:8443/kumulos " in str(error)
    assert not _policy.is_retryable(error)
