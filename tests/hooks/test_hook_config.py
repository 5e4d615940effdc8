"""How a connection becomes client settings: host forms, port, extras, overrides, TLS, bad configs."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from airflow_provider_kumulos.exceptions import KumulosConfigError, KumulosTransportError
from airflow_provider_kumulos.hooks.kumulos import KumulosCRMHook
from airflow_provider_kumulos.testing.emulator import KumulosEmulator, make_self_signed_cert


@pytest.fixture
def connect(monkeypatch: pytest.MonkeyPatch) -> Callable[..., KumulosCRMHook]:
    """``connect(conn_dict, **hook_kwargs)``: define connection ``kumulos_cfg`` and return a hook on it."""

    def make(conn: dict[str, Any], **hook_kwargs: Any) -> KumulosCRMHook:
        monkeypatch.setenv("AIRFLOW_CONN_KUMULOS_CFG", json.dumps({"conn_type": "kumulos", **conn}))
        return KumulosCRMHook("kumulos_cfg", **hook_kwargs)

    return make


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    """A self-signed certificate and key for 127.0.0.1."""
    return make_self_signed_cert(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def tls_emulator(tls_files: tuple[str, str]) -> Iterator[KumulosEmulator]:
    """An emulator serving HTTPS with the self-signed certificate."""
    cert, key = tls_files
    with KumulosEmulator(users=3, tls_cert=cert, tls_key=key) as emulator:
        yield emulator


def credentials(emulator: KumulosEmulator) -> dict[str, str]:
    return {"login": emulator.api_key, "password": emulator.server_key}


def test_defaults(connect: Callable[..., KumulosCRMHook]) -> None:
    config = connect({"login": "k", "password": "s"}).config
    assert config.base_url == "https://crm.kumulos.com"
    assert (config.connect_timeout, config.read_timeout, config.verify) == (10.0, 60.0, True)
    assert (config.retry.max_retries, config.retry.max_retry_after) == (5, 120.0)


@pytest.mark.parametrize(
    ("host", "port", "base_url"),
    [
        ("crm.kumulos.com", None, "https://crm.kumulos.com"),
        ("https://crm.kumulos.com/", None, "https://crm.kumulos.com"),
        ("http://127.0.0.1", 8080, "http://127.0.0.1:8080"),
        ("http://127.0.0.1:9000", 8080, "http://127.0.0.1:9000"),
        ("  HTTPS://eu.example.com  ", None, "HTTPS://eu.example.com"),
        ("https://proxy.example.com/kumulos/", 8443, "https://proxy.example.com:8443/kumulos"),
        ("http://[::1]", 8080, "http://[::1]:8080"),
        ("http://[::1]:9000", 8080, "http://[::1]:9000"),
    ],
)
def test_base_url_forms(
    connect: Callable[..., KumulosCRMHook], host: str, port: int | None, base_url: str
) -> None:
    assert connect({"host": host, "port": port, "login": "k", "password": "s"}).config.base_url == base_url


def test_host_without_scheme_means_https(
    connect: Callable[..., KumulosCRMHook], tls_emulator: KumulosEmulator, tls_files: tuple[str, str]
) -> None:
    hook = connect(
        {
            "host": f"127.0.0.1:{tls_emulator.port}",
            **credentials(tls_emulator),
            "extra": {"verify": tls_files[0]},
        }
    )
    assert hook.config.base_url == f"https://127.0.0.1:{tls_emulator.port}"
    assert hook.get_users_page(1, 3)["totalUsers"] == 3
    assert len(tls_emulator.requests) == 1


def test_port_field_is_used(
    connect: Callable[..., KumulosCRMHook], kumulos_emulator: KumulosEmulator
) -> None:
    hook = connect(
        {"host": "http://127.0.0.1", "port": kumulos_emulator.port, **credentials(kumulos_emulator)}
    )
    assert hook.test_connection()[0] is True


def test_untrusted_certificate_is_a_config_error_without_retries(
    connect: Callable[..., KumulosCRMHook], tls_emulator: KumulosEmulator
) -> None:
    hook = connect({"host": tls_emulator.base_url, **credentials(tls_emulator), "extra": {"max_retries": 4}})
    with pytest.raises(KumulosConfigError, match=r"TLS verification failed.*CA bundle path") as caught:
        hook.get_users_page(1, 1)
    assert caught.value.operation == "list users"
    assert hook.stats.requests == {("list users", "tls_error"): 1}
    assert hook.stats.retries == 0


def test_verify_false_skips_certificate_checks(
    connect: Callable[..., KumulosCRMHook], tls_emulator: KumulosEmulator
) -> None:
    hook = connect({"host": tls_emulator.base_url, **credentials(tls_emulator), "extra": {"verify": "false"}})
    assert hook.config.verify is False
    from urllib3.exceptions import InsecureRequestWarning

    with pytest.warns(InsecureRequestWarning):
        assert hook.get_users_page(1, 1)["totalUsers"] == 3


def test_extras_are_read(connect: Callable[..., KumulosCRMHook], tls_files: tuple[str, str]) -> None:
    extra = {
        "timeout": "12.5",
        "connect_timeout": 3,
        "max_retries": "1",
        "backoff_base": 0.2,
        "backoff_max": 4,
        "max_retry_after": 9,
        "verify": tls_files[0],
    }
    config = connect({"login": "k", "password": "s", "extra": extra}).config
    assert (config.read_timeout, config.connect_timeout, config.verify) == (12.5, 3.0, tls_files[0])
    retry = config.retry
    assert (retry.max_retries, retry.backoff_base, retry.backoff_max, retry.max_retry_after) == (
        1,
        0.2,
        4.0,
        9.0,
    )


def test_hook_arguments_override_extras(connect: Callable[..., KumulosCRMHook]) -> None:
    extra = {"timeout": 12, "max_retries": 1, "verify": "true", "max_retry_after": 9}
    hook = connect({"login": "k", "password": "s", "extra": extra}, timeout=2, max_retries=0, verify=False)
    config = hook.config
    assert (config.read_timeout, config.retry.max_retries, config.verify) == (2.0, 0, False)
    assert config.retry.max_retry_after == 9.0


def test_timeout_extra_applies_to_requests(
    connect: Callable[..., KumulosCRMHook], kumulos_emulator: KumulosEmulator
) -> None:
    from airflow_provider_kumulos.testing.emulator import Fault

    conn = {"host": kumulos_emulator.base_url, **credentials(kumulos_emulator), "extra": {"timeout": 0.2}}
    hook = connect(conn, max_retries=0)
    kumulos_emulator.script_faults([Fault.slow(0.6)])
    with pytest.raises(KumulosTransportError, match=r"read 0\.2s"):
        hook.get_users_page(1, 1)


@pytest.mark.parametrize("missing", ["login", "password"])
def test_missing_credentials_are_a_config_error(connect: Callable[..., KumulosCRMHook], missing: str) -> None:
    conn = {"login": "k", "password": "s"}
    del conn[missing]
    with pytest.raises(KumulosConfigError, match="API key as login and its server key as password"):
        connect(conn).get_users_page(1, 1)


def test_undefined_connection_is_a_config_error(undefined_conn_id: str) -> None:
    with pytest.raises(KumulosConfigError, match=f"'{undefined_conn_id}' is not defined"):
        KumulosCRMHook(undefined_conn_id).get_users_page(1, 1)


@pytest.mark.parametrize(
    ("conn", "message"),
    [
        ({"host": "ftp://files.example.com"}, "got scheme 'ftp'"),
        ({"host": "https://crm.example.com:https"}, "has a port that is not a number"),
        ({"host": "https://crm.example.com:70000"}, "has a port that is not a number"),
        ({"extra": {"timeout": "soon"}}, "'timeout' must be a number of seconds"),
        ({"extra": {"connect_timeout": 0}}, "'connect_timeout' must be > 0"),
        ({"extra": {"max_retries": "many"}}, "must be numbers >= 0"),
        ({"extra": {"max_retries": -1}}, "max_retries: -1 is negative"),
        ({"extra": {"backoff_base": -1}}, "must be numbers >= 0"),
        ({"extra": {"verify": "/no/such/ca-bundle.pem"}}, "does not exist"),
    ],
)
def test_bad_settings_are_config_errors(
    connect: Callable[..., KumulosCRMHook], conn: dict[str, Any], message: str
) -> None:
    with pytest.raises(KumulosConfigError, match=message):
        connect({"login": "k", "password": "s", **conn}).get_users_page(1, 1)


@pytest.mark.parametrize(
    ("word", "verify"),
    [("true", True), (" Yes ", True), ("Y", True), ("1", True), ("FALSE", False), ("n", False)],
)
def test_verify_extra_reads_yes_and_no_words(
    connect: Callable[..., KumulosCRMHook], word: str, verify: bool
) -> None:
    assert connect({"login": "k", "password": "s", "extra": {"verify": word}}).config.verify is verify


def test_credentials_in_the_host_are_refused_without_echoing_them(
    connect: Callable[..., KumulosCRMHook],
) -> None:
    hook = connect({"host": "https://key:hunter2-secret@crm.kumulos.com", "login": "k", "password": "s"})
    with pytest.raises(KumulosConfigError, match="must not contain credentials") as caught:
        hook.get_users_page(1, 1)
    assert "hunter2-secret" not in str(caught.value)


def test_requests_ca_bundle_from_the_environment_is_honoured(
    connect: Callable[..., KumulosCRMHook],
    tls_emulator: KumulosEmulator,
    tls_files: tuple[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", tls_files[0])
    hook = connect({"host": tls_emulator.base_url, **credentials(tls_emulator)})
    assert hook.config.verify is True
    assert hook.get_users_page(1, 1)["totalUsers"] == 3
