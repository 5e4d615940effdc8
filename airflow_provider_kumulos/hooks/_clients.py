"""Async clients shared on one event loop: one per resolved connection, open while someone uses it.

A triggerer runs hundreds of triggers on one event loop. Those waiting on the same connection
settings share one httpx client (one TLS context, one connection pool) and one request gate, so
that a 429 pauses them all. Clients are keyed on a salted digest of the full resolved settings,
credentials included: a rotated key or another connection gets a client of its own, and the key
holds no secret. The last user to leave closes the client.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import hmac
import os
import ssl
import weakref
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from airflow_provider_kumulos import _policy
from airflow_provider_kumulos.exceptions import KumulosConfigError
from airflow_provider_kumulos.hooks._config import ClientConfig
from airflow_provider_kumulos.hooks._gate import RequestGate

if TYPE_CHECKING:
    import httpx

#: Connections one shared client keeps open to its Kumulos host, and requests it has in flight.
POOL_SIZE = 8

_SALT = os.urandom(16)
_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, SharedClient]] = (
    weakref.WeakKeyDictionary()
)


@dataclass(eq=False)
class SharedClient:
    """One connection's client (built in a thread), its request gate, and how many users hold it.

    ``slots`` admits :data:`POOL_SIZE` requests at a time: the rest wait on the semaphore, in
    constant time, rather than in httpcore's pool, whose bookkeeping walks every queued request
    whenever one finishes (quadratic for a thousand waiting triggers).
    """

    key: str
    ready: asyncio.Future[httpx.AsyncClient]
    gate: RequestGate = field(default_factory=RequestGate)
    slots: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(POOL_SIZE))
    users: int = 0

    @property
    def client(self) -> httpx.AsyncClient:
        """The client; only after :func:`acquire` returned this."""
        return self.ready.result()


def client_key(config: ClientConfig) -> str:
    """A digest of every resolved setting (credentials included), salted per process: no secret in it."""
    material = repr(dataclasses.astuple(config)).encode()
    return hmac.new(_SALT, material, hashlib.sha256).hexdigest()


async def acquire(config: ClientConfig) -> SharedClient:
    """Join the shared client for ``config``, building it first if nobody holds one; pair with :func:`release`."""
    loop = asyncio.get_running_loop()
    clients = _clients.setdefault(loop, {})
    key = client_key(config)
    shared = clients.get(key)
    if shared is None:
        shared = clients[key] = SharedClient(key, loop.create_task(asyncio.to_thread(_new_client, config)))
    shared.users += 1
    try:
        await asyncio.shield(shared.ready)
    except BaseException:
        await release(shared)
        raise
    return shared


async def release(shared: SharedClient) -> None:
    """Leave the shared client; the last user out closes it."""
    shared.users -= 1
    if shared.users:
        return
    clients = _clients.get(asyncio.get_running_loop(), {})
    if clients.get(shared.key) is shared:
        del clients[shared.key]
    try:
        client = await asyncio.shield(shared.ready)
    except Exception:  # never built: nothing to close (the error went to whoever waited for it)
        return
    await client.aclose()


def _new_client(config: ClientConfig) -> httpx.AsyncClient:
    """The client with the hook's settings, built in a worker thread: a TLS context loads the CA
    bundle (about 20 ms of CPU), which must not stall the event loop."""
    import httpx
    import tenacity  # noqa: F401  (imported here, off the event loop, before the first retry loop needs it)

    return httpx.AsyncClient(
        base_url=config.base_url,
        auth=httpx.BasicAuth(config.api_key, config.server_key),
        headers=_policy.JSON_HEADERS,
        timeout=httpx.Timeout(config.read_timeout, connect=config.connect_timeout),
        limits=httpx.Limits(max_connections=POOL_SIZE, max_keepalive_connections=POOL_SIZE),
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
