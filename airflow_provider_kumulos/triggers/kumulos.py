"""KumulosUserTrigger: wait in the triggerer, without holding a worker slot, until a user exists.

Only the transport differs from the hook (``httpx.AsyncClient`` instead of ``requests``): requests
are built, answers interpreted, and retries decided by the same ``_policy`` and ``_retry`` code.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow_provider_kumulos import _metrics, _policy
from airflow_provider_kumulos.exceptions import KumulosConfigError, KumulosError, KumulosUserNotFoundError
from airflow_provider_kumulos.hooks._config import ClientConfig, aconnection_config
from airflow_provider_kumulos.hooks._retry import RetryNote, retry_kwargs

if TYPE_CHECKING:
    import httpx
    from tenacity import RetryCallState

#: ``status`` values of the single event the trigger fires.
SUCCESS, TIMEOUT, ERROR = "success", "timeout", "error"


class KumulosUserTrigger(BaseTrigger):
    """Poll a user's attributes every ``poke_interval`` seconds until the user exists (and matches).

    Fires exactly one event: ``{"status": "success", "attributes": {...}}``; ``{"status": "timeout",
    "message": ...}`` once ``end_time`` (epoch seconds) passes; or ``{"status": "error", "error":
    {...}}`` (the error's :meth:`~airflow_provider_kumulos.exceptions.KumulosError.to_dict`) for a
    failure that waiting cannot fix. A missing user, or a transient failure that outlived the
    connection's retries, means "not yet". Credentials are read inside :meth:`run`, never serialised.

    :param user_id: the Kumulos user identifier to wait for.
    :param kumulos_conn_id: Airflow connection of type ``kumulos``.
    :param poke_interval: seconds between checks.
    :param attributes_match: attribute values the user must also have (None: any).
    :param end_time: epoch seconds after which the trigger gives up with a timeout event.
    """

    def __init__(
        self,
        user_id: str,
        kumulos_conn_id: str = "kumulos_default",
        poke_interval: float = 60.0,
        attributes_match: dict[str, Any] | None = None,
        end_time: float | None = None,
    ) -> None:
        super().__init__()
        self.user_id = user_id
        self.kumulos_conn_id = kumulos_conn_id
        self.poke_interval = float(poke_interval)
        self.attributes_match = attributes_match
        self.end_time = end_time

    def serialize(self) -> tuple[str, dict[str, Any]]:
        """Class path and primitive kwargs (no credentials: only the connection id)."""
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "user_id": self.user_id,
                "kumulos_conn_id": self.kumulos_conn_id,
                "poke_interval": self.poke_interval,
                "attributes_match": self.attributes_match,
                "end_time": self.end_time,
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        """Poll until done, then yield the one event; the HTTP client is closed on every exit path."""
        try:
            payload = await self._wait()
        except KumulosError as exc:
            payload = {"status": ERROR, "error": exc.to_dict()}
        except Exception as exc:
            self.log.exception("Waiting for Kumulos user failed unexpectedly")
            payload = {"status": ERROR, "error": {"error": type(exc).__name__, "message": str(exc)}}
        yield TriggerEvent(payload)

    async def _wait(self) -> dict[str, Any]:
        request = _policy.get_attributes_request(self.user_id)
        expected = _policy.check_attributes_match(self.attributes_match)
        config = await aconnection_config(self.kumulos_conn_id, {})
        async with _client(config) as client:
            while True:
                attributes = await self._attributes_or_none(client, config, request)
                if attributes is not None and _policy.attributes_satisfy(attributes, expected):
                    return {"status": SUCCESS, "attributes": attributes}
                remaining = None if self.end_time is None else self.end_time - time.time()
                if remaining is not None and remaining <= 0:
                    return {
                        "status": TIMEOUT,
                        "message": f"Kumulos user {self.user_id!r} did not appear"
                        + (" with the expected attributes" if expected else "")
                        + " before the timeout.",
                    }
                await asyncio.sleep(
                    self.poke_interval if remaining is None else min(self.poke_interval, remaining)
                )

    async def _attributes_or_none(
        self, client: httpx.AsyncClient, config: ClientConfig, request: _policy.Request
    ) -> dict[str, Any] | None:
        """The user's attributes, or None while waiting should go on (missing user, transient failure)."""
        import tenacity

        try:
            async for attempt in tenacity.AsyncRetrying(**retry_kwargs(config.retry, self._before_sleep)):
                with attempt:
                    result: dict[str, Any] = _policy.interpret(request, await _send(client, config, request))
                    return result
        except KumulosError as exc:
            if not _policy.keeps_waiting(exc):
                raise
            if not isinstance(exc, KumulosUserNotFoundError):
                self.log.warning("Kumulos still failing after retries, will check again: %s", exc)
        return None

    def _before_sleep(self, retry_state: RetryCallState) -> None:
        note = RetryNote.of(retry_state)
        _metrics.retry(note.operation, note.reason)
        if note.rate_limited:
            _metrics.rate_limit_wait(note.operation, note.sleep)
        self.log.debug(
            "Kumulos %s: attempt %d failed (%s); retrying in %.2fs",
            note.operation,
            note.attempt,
            note.error_name,
            note.sleep,
        )


def _client(config: ClientConfig) -> httpx.AsyncClient:
    """An async client with the hook's settings: Basic auth, JSON headers, timeouts, TLS verification."""
    import httpx

    return httpx.AsyncClient(
        base_url=config.base_url,
        auth=httpx.BasicAuth(config.api_key, config.server_key),
        headers=_policy.JSON_HEADERS,
        timeout=httpx.Timeout(config.read_timeout, connect=config.connect_timeout),
        verify=config.verify if isinstance(config.verify, bool) else _ca_context(config.verify),
    )


def _ca_context(ca_bundle: str) -> ssl.SSLContext:
    """A verifying TLS context trusting ``ca_bundle`` (httpx wants a context, not a path)."""
    try:
        return ssl.create_default_context(cafile=ca_bundle)
    except (ssl.SSLError, OSError) as exc:
        raise KumulosConfigError(
            f"Connection extra 'verify': cannot load the CA bundle {ca_bundle!r} ({type(exc).__name__})."
        ) from None


async def _send(
    client: httpx.AsyncClient, config: ClientConfig, request: _policy.Request
) -> _policy.Response:
    """One HTTP exchange; client failures become the policy's typed errors. Counted like the hook's."""
    import httpx

    try:
        response = await client.request(request.method, _policy.request_target(request), content=request.body)
    except httpx.TimeoutException as exc:
        _metrics.request(request.operation, "timeout")
        raise _policy.timeout_error(
            request, config.connect_timeout, config.read_timeout, type(exc).__name__
        ) from None
    except httpx.HTTPError as exc:
        if _caused_by_tls(exc):
            _metrics.request(request.operation, "tls_error")
            raise _policy.tls_error(request, config.base_url, exc) from None
        _metrics.request(request.operation, "connection_error")
        raise _policy.transport_error(
            request, f"connection to {config.base_url} failed: {type(exc).__name__}"
        ) from None
    _metrics.request(request.operation, response.status_code)
    return _policy.Response(response.status_code, response.content, response.headers)


def _caused_by_tls(error: BaseException) -> bool:
    """Whether a TLS failure (certificate, handshake) is somewhere in the error's cause chain."""
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, ssl.SSLError):
            return True
        seen = seen.__cause__ or seen.__context__
    return False
