"""KumulosCRMHook and KumulosCRMAsyncHook: every HTTP call to the Kumulos CRM API goes through here.

The hooks own the clients (pooling, Basic auth, JSON headers, TLS), timeouts, retries (tenacity)
and the counting of requests; the API's rules, and the mapping of failures to typed errors, live
in ``_policy``. Both hooks resolve the same connection settings, retry with the same settings and
log retries through one ``before_sleep``; only the transport differs (``requests`` for tasks,
``httpx`` on the triggerer's event loop). ``requests``, ``httpx`` and ``tenacity`` are imported on
first use so that DAG files importing operators stay cheap to parse.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import threading
import warnings
from collections.abc import Callable, Generator, Iterator, Mapping
from functools import cached_property
from typing import TYPE_CHECKING, Any, TypeVar, cast

from airflow.sdk import BaseHook

from airflow_provider_kumulos import UI_FIELD_BEHAVIOUR, _policy
from airflow_provider_kumulos._stats import RequestStats
from airflow_provider_kumulos.exceptions import (
    KumulosAuthError,
    KumulosError,
    KumulosUserNotFoundError,
)
from airflow_provider_kumulos.hooks import _clients
from airflow_provider_kumulos.hooks._config import (
    DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_READ_TIMEOUT,
    ClientConfig,
    aconnection_config,
    connection_config,
)
from airflow_provider_kumulos.hooks._gate import RequestGate
from airflow_provider_kumulos.hooks._paging import check_ahead, walk_pages
from airflow_provider_kumulos.hooks._retry import RetryNote, retry_kwargs

if TYPE_CHECKING:
    import requests
    from tenacity import RetryCallState

__all__ = [
    "DEFAULT_CONNECT_TIMEOUT",
    "DEFAULT_READ_TIMEOUT",
    "ClientConfig",
    "KumulosCRMAsyncHook",
    "KumulosCRMHook",
    "RequestStats",
    "UsersPage",
]

log = logging.getLogger(__name__)
#: Answers larger than this are decoded in a worker thread by the async hook, off the event loop.
LARGE_BODY = 64 * 1024

#: One page of users, as the paging methods return it (see :class:`~airflow_provider_kumulos._policy.UsersPage`).
UsersPage = _policy.UsersPage

_Method = TypeVar("_Method", bound=Callable[..., Any])


def _page_size_alias(method: _Method) -> _Method:
    """Accept the deprecated keyword ``per_page`` as ``page_size``, with a deprecation warning."""

    @functools.wraps(method)
    def accepting(*args: Any, **kwargs: Any) -> Any:
        if "per_page" in kwargs:
            from airflow.exceptions import AirflowProviderDeprecationWarning

            if "page_size" in kwargs:
                raise TypeError(f"{method.__name__}() takes page_size or its old name per_page, not both")
            warnings.warn(
                f"{method.__name__}(per_page=...) is deprecated; pass page_size instead",
                AirflowProviderDeprecationWarning,
                stacklevel=2,
            )
            kwargs["page_size"] = kwargs.pop("per_page")
        return method(*args, **kwargs)

    return cast("_Method", accepting)


class _KumulosHookBase(BaseHook):
    """What the sync and the async hook share: connection, setting overrides, counts, retry logging."""

    conn_name_attr = "kumulos_conn_id"
    default_conn_name = "kumulos_default"
    conn_type = "kumulos"
    hook_name = "Kumulos CRM"
    #: Every request passes it; a 429 closes it for the ``Retry-After`` time.
    gate: RequestGate

    def __init__(
        self,
        kumulos_conn_id: str = default_conn_name,
        *,
        timeout: float | None = None,
        connect_timeout: float | None = None,
        max_retries: int | None = None,
        backoff_base: float | None = None,
        backoff_max: float | None = None,
        max_retry_after: float | None = None,
        verify: bool | str | None = None,
    ) -> None:
        super().__init__()
        self.kumulos_conn_id = kumulos_conn_id
        self._overrides: dict[str, Any] = {
            "timeout": timeout,
            "connect_timeout": connect_timeout,
            "max_retries": max_retries,
            "backoff_base": backoff_base,
            "backoff_max": backoff_max,
            "max_retry_after": max_retry_after,
            "verify": verify,
        }
        self.stats = RequestStats()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(kumulos_conn_id={self.kumulos_conn_id!r})"

    def _failed(
        self, request: _policy.Request, config: ClientConfig, error: BaseException, timed_out: bool
    ) -> KumulosError:
        """Count a request that got no HTTP answer and return its typed error (``_policy`` decides which)."""
        outcome, failure = _policy.transport_failure(
            request,
            error,
            base_url=config.base_url,
            connect_timeout=config.connect_timeout,
            read_timeout=config.read_timeout,
            timed_out=timed_out,
        )
        self.stats.record(request.operation, outcome)
        return failure

    def _before_sleep(self, retry_state: RetryCallState) -> None:
        """tenacity ``before_sleep`` of both hooks: pause the gate on a 429, count and log the retry."""
        note = RetryNote.of(retry_state)
        if note.rate_limited:
            self.gate.hold(note.sleep)
        self.stats.record_retry(note.operation, note.reason, note.sleep, note.rate_limited)
        log.debug(
            "Kumulos %s: attempt %d failed (%s); retrying in %.2fs",
            note.operation,
            note.attempt,
            note.error_name,
            note.sleep,
        )


class KumulosCRMHook(_KumulosHookBase):
    """Talk to the Kumulos CRM API (users, attributes) with pooled connections and safe retries.

    :param kumulos_conn_id: Airflow connection of type ``kumulos``: login = API key,
        password = server key, host = base URL (default ``https://crm.kumulos.com``).
    :param timeout: read timeout in seconds (connection extra ``timeout``; default 60).
    :param connect_timeout: connect timeout in seconds (extra ``connect_timeout``; default 10).
    :param max_retries: extra attempts on 429, 5xx, network errors (extra ``max_retries``; default 5).
    :param backoff_base: first backoff in seconds, doubled each retry (extra ``backoff_base``).
    :param backoff_max: longest backoff in seconds (extra ``backoff_max``; default 30).
    :param max_retry_after: cap on a server's ``Retry-After`` in seconds (default 120).
    :param verify: TLS verification: True, False or a CA bundle path (extra ``verify``).
    :param pool_size: connections kept open to Kumulos (raise it for concurrent bulk writes).
    :param max_requests_per_second: optional cap on the request rate of this hook.
    """

    def __init__(
        self,
        kumulos_conn_id: str = _KumulosHookBase.default_conn_name,
        *,
        timeout: float | None = None,
        connect_timeout: float | None = None,
        max_retries: int | None = None,
        backoff_base: float | None = None,
        backoff_max: float | None = None,
        max_retry_after: float | None = None,
        verify: bool | str | None = None,
        pool_size: int = 10,
        max_requests_per_second: float | None = None,
    ) -> None:
        super().__init__(
            kumulos_conn_id,
            timeout=timeout,
            connect_timeout=connect_timeout,
            max_retries=max_retries,
            backoff_base=backoff_base,
            backoff_max=backoff_max,
            max_retry_after=max_retry_after,
            verify=verify,
        )
        self.pool_size = pool_size
        self.gate = RequestGate(max_requests_per_second)
        self._session: requests.Session | None = None
        self._environment: dict[str, Any] = {}
        self._template: requests.PreparedRequest | None = None
        self._session_lock = threading.Lock()

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        """Connection form layout for Airflow releases that read it from the hook."""
        return {
            key: (value.copy() if hasattr(value, "copy") else value)
            for key, value in UI_FIELD_BEHAVIOUR.items()
        }

    # --- configuration ----------------------------------------------------------------------

    @cached_property
    def config(self) -> ClientConfig:
        """The resolved client settings (hook arguments win over connection extras)."""
        return connection_config(self.kumulos_conn_id, self._overrides)

    def get_conn(self) -> requests.Session:
        """The hook's pooled session, created once (thread-safe) and shared by all its calls."""
        if self._session is None:
            with self._session_lock:
                if self._session is None:
                    import requests

                    session = self._new_session()
                    # Every request goes to one host with the same headers and auth, so what
                    # Session.request works out for each (headers, auth, proxies and CA bundle from
                    # the environment) is worked out once here: bench/export_machinery.py measured
                    # 10 us per request this way against 512 us for Session.request's own steps.
                    base_url = self.config.base_url
                    self._template = session.prepare_request(requests.Request("GET", base_url))
                    self._environment = dict(
                        session.merge_environment_settings(base_url, {}, True, self.config.verify, None)
                    )
                    self._session = session
        return self._session

    def _new_session(self) -> requests.Session:
        import requests
        from requests.adapters import HTTPAdapter

        config = self.config
        session = requests.Session()
        session.auth = (config.api_key, config.server_key)
        session.headers.update(_policy.JSON_HEADERS)
        session.verify = config.verify
        adapter = HTTPAdapter(pool_connections=1, pool_maxsize=max(1, self.pool_size), max_retries=0)
        session.mount("https://", adapter)
        session.mount("http://", adapter)
        return session

    def close(self) -> None:
        """Close pooled connections; the hook opens a new session if used again."""
        with self._session_lock:
            if self._session is not None:
                self._session.close()
                self._session = None
                self._template = None

    # --- transport --------------------------------------------------------------------------

    def _send_once(self, request: _policy.Request) -> _policy.Response:
        """One HTTP exchange; client failures become typed errors, statuses are left to the policy."""
        import requests
        import urllib3

        config = self.config
        session = self.get_conn()
        assert self._template is not None
        prepared = self._template.copy()
        prepared.prepare_method(request.method)
        # Set as is: preparing would re-quote the URL and turn an id's %2E%2E back into "..".
        prepared.url = config.base_url + _policy.request_target(request)
        prepared.prepare_body(request.body, None)
        if session.cookies:
            prepared.prepare_cookies(session.cookies)
        environment = self._environment
        self.gate.wait()
        try:
            response = session.send(
                prepared, timeout=(config.connect_timeout, config.read_timeout), **environment
            )
            # One read of the whole body: requests' ``.content`` joins 10 KiB chunks, a fifth slower
            # on 1 MB user pages. The connection goes back to the pool once the body is read.
            body = response.raw.read(decode_content=True)
            response.raw.release_conn()
        except (requests.exceptions.RequestException, urllib3.exceptions.HTTPError, OSError) as exc:
            timed_out = isinstance(exc, requests.exceptions.Timeout | urllib3.exceptions.ReadTimeoutError)
            raise self._failed(request, config, exc, timed_out) from None
        self.stats.record(request.operation, response.status_code)
        return _policy.Response(response.status_code, body, response.headers)

    def _call(
        self,
        request: _policy.Request,
        interpret: Callable[[_policy.Request, _policy.Response], Any] = _policy.interpret,
        abandoned: threading.Event | None = None,
    ) -> Any:
        """Send ``request`` with retries; ``interpret(request, response)`` returns the result or raises.

        Once ``abandoned`` is set (nobody waits for the answer any more), no further attempt is made.
        """
        import tenacity

        settings = retry_kwargs(self.config.retry, self._before_sleep)
        if abandoned is not None:
            settings["stop"] = settings["stop"] | tenacity.stop_when_event_set(abandoned)
        for attempt in tenacity.Retrying(**settings):
            with attempt:
                return interpret(request, self._send_once(request))
        raise AssertionError("unreachable: tenacity reraises the last error")  # pragma: no cover

    # --- public API -------------------------------------------------------------------------

    @_page_size_alias
    def get_users_page(self, page: int, page_size: int) -> dict[str, Any]:
        """One page of ``GET /v2/users`` as a dict: ``users``, ``totalUsers``, ``currentPage``."""
        result = self.fetch_users_page(page, page_size)
        return {"users": result.users, "totalUsers": result.total_users, "currentPage": result.page}

    @_page_size_alias
    def fetch_users_page(self, page: int, page_size: int, *, raw: bool = False) -> UsersPage:
        """One page as a checked :class:`UsersPage`.

        ``raw=True`` keeps each user as the exact JSON bytes Kumulos sent (``msgspec.Raw``; a
        pretty-printed page has its users re-encoded on one line each, same content), which lets
        exports write users through without decoding and re-encoding them. Either way the page's
        ``identifiers`` are read, and a user without a string identifier makes the page malformed.
        """
        return self._fetch_page(page, page_size, raw)

    def _fetch_page(
        self, page: int, page_size: int, raw: bool, abandoned: threading.Event | None = None
    ) -> UsersPage:
        request = _policy.users_page_request(page, page_size)
        return self._call(request, lambda req, resp: _policy.decode_users_page(req, resp, raw=raw), abandoned)

    @_page_size_alias
    def iter_pages(
        self,
        page_size: int = _policy.MAX_PER_PAGE,
        start_page: int = 1,
        end_page: int | None = None,
        *,
        raw: bool = False,
        ahead: int = 0,
    ) -> Generator[UsersPage]:
        """Pages ``start_page``..``end_page`` (inclusive), stopping early at an empty page or at ``totalUsers``.

        ``ahead`` (0..8) pages are fetched in background threads while the caller works on the
        current one, overlapping Kumulos' response time with the caller's work; pages still come
        out in order, and an error is raised where its page would have been. Close the iterator
        (or exhaust it) to stop the background requests.
        """
        start_page, end_page = _policy.check_page_window(start_page, end_page)
        _policy.check_per_page(page_size, "page_size")
        check_ahead("ahead", ahead, 0)
        closed = threading.Event()  # set when the walk ends: requests still on their way stop retrying
        return walk_pages(
            lambda page: self._fetch_page(page, page_size, raw, closed), start_page, end_page, ahead, closed
        )

    @_page_size_alias
    def iter_users(
        self, page_size: int = _policy.MAX_PER_PAGE, start_page: int = 1, end_page: int | None = None
    ) -> Iterator[dict[str, Any]]:
        """Every user, page by page; never holds more than one page."""
        for page in self.iter_pages(page_size, start_page, end_page):
            yield from page.users

    def get_attributes(self, user_id: str) -> dict[str, Any]:
        """The user's attribute object (``{}`` if none); ``KumulosUserNotFoundError`` if no such user."""
        return self._call(_policy.get_attributes_request(user_id))

    def set_attributes(self, user_id: str, attributes: Mapping[str, Any]) -> dict[str, Any]:
        """Replace the user's attributes (creating the user if missing); returns ``{"identifier", "attributes"}``."""
        return self._call(_policy.set_attributes_request(user_id, attributes))

    def delete_attributes(self, user_id: str) -> None:
        """Delete every attribute of the user; ``KumulosUserNotFoundError`` if no such user."""
        self._call(_policy.delete_attributes_request(user_id))

    def user_exists(self, user_id: str) -> bool:
        """Whether Kumulos knows ``user_id``."""
        try:
            self.get_attributes(user_id)
        except KumulosUserNotFoundError:
            return False
        return True

    def test_connection(self) -> tuple[bool, str]:
        """One cheap authenticated call (a one-user page), for the connection form's Test button."""
        try:
            page = self.fetch_users_page(1, 1)
        except KumulosAuthError:
            return False, "Authentication failed: check the API key (login) and server key (password)."
        except KumulosError as exc:
            return False, str(exc)
        return True, f"Connected to Kumulos: the app has {page.total_users} users."


class KumulosCRMAsyncHook(_KumulosHookBase):
    """The Kumulos CRM API from coroutines (triggers), with the settings and retries of :class:`KumulosCRMHook`.

    Hooks on one event loop whose connection resolves to the same settings share one client (one
    TLS context, one connection pool) and one request gate, so a 429 pauses all of them for its
    ``Retry-After``. The client is built in a worker thread and closed when its last hook closes:
    use the hook as ``async with``, or call :meth:`close`.

    :param kumulos_conn_id: Airflow connection of type ``kumulos``, as for :class:`KumulosCRMHook`.
    :param timeout: read timeout in seconds (connection extra ``timeout``; default 60).
    :param connect_timeout: connect timeout in seconds (extra ``connect_timeout``; default 10).
    :param max_retries: extra attempts on 429, 5xx, network errors (extra ``max_retries``; default 5).
    :param backoff_base: first backoff in seconds, doubled each retry (extra ``backoff_base``).
    :param backoff_max: longest backoff in seconds (extra ``backoff_max``; default 30).
    :param max_retry_after: cap on a server's ``Retry-After`` in seconds (default 120).
    :param verify: TLS verification: True, False or a CA bundle path (extra ``verify``).
    """

    _config: ClientConfig | None = None
    _shared: _clients.SharedClient | None = None

    async def __aenter__(self) -> KumulosCRMAsyncHook:
        """Resolve the connection and take a share of its client, held until the block ends.

        Taking it up front, not at the first request, keeps one client for hooks that start together
        even when some finish before others send anything.
        """
        await self._acquire(await self.get_config())
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def get_config(self) -> ClientConfig:
        """The resolved client settings, looked up without blocking the event loop (once per hook)."""
        if self._config is None:
            self._config = await aconnection_config(self.kumulos_conn_id, self._overrides)
        return self._config

    async def close(self) -> None:
        """Let go of the shared client; the last hook using it closes its connections."""
        shared, self._shared = self._shared, None
        if shared is not None:
            await _clients.release(shared)

    async def find_attributes(self, user_id: str) -> dict[str, Any] | None:
        """The user's attribute object (``{}`` if none), or None if Kumulos does not know the user.

        A missing user is an answer here, not an exception: a waiting trigger meets it at every
        check, and an exception through the retry loop leaves reference cycles for the garbage
        collector, whose full passes stall the triggerer's event loop.
        """
        result: dict[str, Any] | None = await self._call(
            _policy.get_attributes_request(user_id), _attributes_or_none
        )
        return result

    async def _call(
        self,
        request: _policy.Request,
        interpret: Callable[[_policy.Request, _policy.Response], Any] = _policy.interpret,
    ) -> Any:
        """Send ``request`` with the sync hook's retry settings; ``interpret`` as there.

        Large answers are decoded in a worker thread so that the event loop keeps running.
        """
        import tenacity

        config = await self.get_config()
        shared = await self._acquire(config)
        async for attempt in tenacity.AsyncRetrying(**retry_kwargs(config.retry, self._before_sleep)):
            with attempt:
                response = await self._send_once(shared, config, request)
                if len(response.body) > LARGE_BODY:
                    return await asyncio.to_thread(interpret, request, response)
                return interpret(request, response)
        raise AssertionError("unreachable: tenacity reraises the last error")  # pragma: no cover

    async def _acquire(self, config: ClientConfig) -> _clients.SharedClient:
        if self._shared is None:
            self._shared = await _clients.acquire(config)
            self.gate = self._shared.gate
        return self._shared

    async def _send_once(
        self, shared: _clients.SharedClient, config: ClientConfig, request: _policy.Request
    ) -> _policy.Response:
        """One HTTP exchange, once the connection's gate and a pool slot let it through; counted like the sync hook's."""
        import httpx

        try:
            async with shared.slots:
                await self.gate.wait_async()
                response = await shared.client.request(
                    request.method, _policy.request_target(request), content=request.body
                )
        except (httpx.HTTPError, OSError) as exc:
            raise self._failed(request, config, exc, isinstance(exc, httpx.TimeoutException)) from None
        self.stats.record(request.operation, response.status_code)
        return _policy.Response(response.status_code, response.content, response.headers)


def _attributes_or_none(request: _policy.Request, response: _policy.Response) -> dict[str, Any] | None:
    """:func:`_policy.interpret` of a ``GET`` of attributes, with None for a user Kumulos does not know."""
    try:
        result: dict[str, Any] = _policy.interpret(request, response)
    except KumulosUserNotFoundError:
        return None
    return result
