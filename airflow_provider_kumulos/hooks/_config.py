"""Turn an Airflow connection (plus explicit overrides) into the settings every Kumulos client uses.

The sync and the async hook both resolve their connection here (the async hook through the
async connection getter), so a connection's host, credentials and extras mean exactly the same
thing to both. Airflow is imported inside the functions to keep module import cheap.
"""

from __future__ import annotations

import asyncio
import os
import weakref
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import urlsplit, urlunsplit

from airflow_provider_kumulos import _compat, _policy
from airflow_provider_kumulos._checks import yes_no
from airflow_provider_kumulos.exceptions import KumulosConfigError, KumulosInputError
from airflow_provider_kumulos.hooks._retry import RetrySettings

DEFAULT_CONNECT_TIMEOUT = 10.0
DEFAULT_READ_TIMEOUT = 60.0


class ConnectionLike(Protocol):
    """The connection fields the resolution reads (SDK and ORM connections both have them)."""

    host: str | None
    port: int | None
    login: str | None
    password: str | None


#: Connection lookups under way, per event loop and connection id.
_lookups: weakref.WeakKeyDictionary[
    asyncio.AbstractEventLoop, dict[str, asyncio.Task[tuple[ConnectionLike, dict[str, Any]]]]
] = weakref.WeakKeyDictionary()


@dataclass(frozen=True)
class ClientConfig:
    """Everything needed to talk to one Kumulos app, resolved from the connection and hook args."""

    base_url: str
    api_key: str
    server_key: str = field(repr=False)
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT
    read_timeout: float = DEFAULT_READ_TIMEOUT
    verify: bool | str = True
    retry: RetrySettings = field(default_factory=RetrySettings)


def _as_float(name: str, value: Any, default: float) -> float:
    if value is None or value == "":
        return default
    try:
        result = float(value)
    except (TypeError, ValueError):
        raise KumulosConfigError(
            f"Connection extra {name!r} must be a number of seconds, got {value!r}."
        ) from None
    if result <= 0:
        raise KumulosConfigError(f"Connection extra {name!r} must be > 0, got {value!r}.")
    return result


def _as_verify(value: Any) -> bool | str:
    if value is None or value == "":
        return True
    if isinstance(value, bool):
        return value
    text = str(value).strip()
    word = yes_no(text)
    if word is not None:
        return word
    if not os.path.exists(text):
        raise KumulosConfigError(
            f"Connection extra 'verify' must be true, false or the path of a CA bundle; {text!r} does not exist."
        )
    return text


def _base_url(host: str | None, port: int | None) -> str:
    """The connection's host as given (``https://`` when it names no scheme), with ``port`` added when
    the host names none; the trailing slash dropped."""
    url = (host or "").strip().rstrip("/") or _policy.DEFAULT_BASE_URL
    if "://" not in url:
        url = f"https://{url}"
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise KumulosConfigError(
            f"Connection host must be an http(s) base URL such as {_policy.DEFAULT_BASE_URL}, "
            f"got scheme {parts.scheme!r}."
        )
    if "@" in parts.netloc:
        raise KumulosConfigError(
            "Connection host must not contain credentials: put the API key in login and the server key "
            "in password."
        )
    try:
        named_port = parts.port
    except ValueError:
        raise KumulosConfigError(
            f"Connection host {url!r} has a port that is not a number from 0 to 65535."
        ) from None
    if port and named_port is None:
        url = urlunsplit(parts._replace(netloc=f"{parts.netloc}:{port}"))
    return url


def _retry_settings(conn_id: str, pick: Any) -> RetrySettings:
    defaults = RetrySettings()

    def number(name: str, default: float) -> float:
        value = pick(name)
        return default if value is None else float(value)

    try:
        max_retries = pick("max_retries")
        return RetrySettings(
            max_retries=defaults.max_retries if max_retries is None else int(max_retries),
            backoff_base=number("backoff_base", defaults.backoff_base),
            backoff_max=number("backoff_max", defaults.backoff_max),
            max_retry_after=number("max_retry_after", defaults.max_retry_after),
        )
    except (TypeError, ValueError) as exc:
        detail = f" {exc}" if isinstance(exc, KumulosInputError) else ""
        raise KumulosConfigError(
            f"Connection {conn_id!r}: max_retries, backoff_base, backoff_max and max_retry_after must be "
            f"numbers >= 0.{detail}"
        ) from None


def resolve_client_config(
    conn_id: str, conn: ConnectionLike, extra: Mapping[str, Any], overrides: Mapping[str, Any]
) -> ClientConfig:
    """Build the client settings; non-None ``overrides`` (hook arguments) win over connection extras."""

    def pick(name: str) -> Any:
        override = overrides.get(name)
        return override if override is not None else extra.get(name)

    if not conn.login or not conn.password:
        raise KumulosConfigError(
            f"Connection {conn_id!r} needs the app's API key as login and its server key as password."
        )
    return ClientConfig(
        base_url=_base_url(conn.host, conn.port),
        api_key=conn.login,
        server_key=conn.password,
        connect_timeout=_as_float("connect_timeout", pick("connect_timeout"), DEFAULT_CONNECT_TIMEOUT),
        read_timeout=_as_float("timeout", pick("timeout"), DEFAULT_READ_TIMEOUT),
        verify=_as_verify(pick("verify")),
        retry=_retry_settings(conn_id, pick),
    )


def _undefined(conn_id: str) -> KumulosConfigError:
    return KumulosConfigError(
        f"Connection {conn_id!r} is not defined. Create a connection of type 'kumulos' with this id "
        "(login = API key, password = server key)."
    )


def connection_config(conn_id: str, overrides: Mapping[str, Any]) -> ClientConfig:
    """Fetch connection ``conn_id`` and resolve it (for synchronous callers such as the hook)."""
    from airflow.sdk import BaseHook

    try:
        conn = BaseHook.get_connection(conn_id)
    except _compat.not_found_errors():
        raise _undefined(conn_id) from None
    return resolve_client_config(conn_id, conn, conn.extra_dejson or {}, overrides)


async def aconnection_config(conn_id: str, overrides: Mapping[str, Any]) -> ClientConfig:
    """Fetch connection ``conn_id`` without blocking the event loop and resolve it (for triggers).

    Callers on one event loop asking for the same connection while a lookup of it is under way
    join that lookup, so a burst of triggers starting together costs one lookup, not hundreds on
    the loop at once; a call after it finished looks again (a rotated key is seen).
    """
    loop = asyncio.get_running_loop()
    lookups = _lookups.setdefault(loop, {})
    lookup = lookups.get(conn_id)
    if lookup is None:
        lookup = lookups[conn_id] = loop.create_task(_aget_connection(conn_id))
        lookup.add_done_callback(lambda _: lookups.pop(conn_id, None))
    conn, extra = await asyncio.shield(lookup)
    return resolve_client_config(conn_id, conn, extra, overrides)


async def _aget_connection(conn_id: str) -> tuple[ConnectionLike, dict[str, Any]]:
    """The connection and its extras, from the async getters where Airflow has them.

    From Airflow 3.3.2 (``Connection.aextra_dejson``) the async getters mask secrets asynchronously.
    Before that they mask with a blocking call to the supervisor, which fails on a busy event loop,
    so the synchronous lookup runs in a worker thread instead.
    """
    from airflow.sdk import BaseHook
    from asgiref.sync import sync_to_async

    native_async = _compat.async_connection_getters()
    try:
        if native_async:
            conn = await BaseHook.aget_connection(conn_id)
        else:
            conn = await sync_to_async(BaseHook.get_connection)(conn_id)
    except _compat.not_found_errors():
        raise _undefined(conn_id) from None
    extra = await conn.aextra_dejson() if native_async else await sync_to_async(lambda: conn.extra_dejson)()
    return conn, extra or {}
