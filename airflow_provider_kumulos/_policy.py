"""The one place that knows the Kumulos CRM API's rules. No I/O happens here.

It builds requests (paths, percent-encoded user ids, query checks), validates input before anything
is sent, turns a response into a result or a typed error, and decides whether an error is worth
retrying and after how long, and which typed error a failed exchange is. The sync hook (requests)
and the async hook (httpx) both call it, so they can never disagree about what a status means.
"""

from __future__ import annotations

import email.utils
import functools
import json
import math
import re
import time
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, cast
from urllib.parse import quote, urlencode

from airflow_provider_kumulos._checks import check_whole_number
from airflow_provider_kumulos.exceptions import (
    KumulosAuthError,
    KumulosConfigError,
    KumulosError,
    KumulosInputError,
    KumulosRateLimitError,
    KumulosResponseError,
    KumulosServerError,
    KumulosTransportError,
    KumulosUserNotFoundError,
    KumulosValidationError,
)

DEFAULT_BASE_URL = "https://crm.kumulos.com"
MAX_PER_PAGE = 1000
#: Undocumented by Kumulos; long enough for any real identifier, short enough for every URL limit.
MAX_USER_ID_LENGTH = 1024
#: Status codes worth another attempt; 400, 401, 404 and 422 never are.
RETRYABLE_STATUSES = frozenset({429, 500, 502, 503, 504})
#: How much response text an error message may quote.
MAX_ERROR_TEXT = 300

JSON_HEADERS = {"Content-Type": "application/json", "Accept": "application/json"}
#: A raw user that starts with its identifier written without escapes or control characters, so
#: that the captured UTF-8 bytes are exactly the identifier (how Kumulos writes its users).
_IDENTIFIER_FIRST = re.compile(rb'\{"identifier":"([^"\\\x00-\x1f]*)"')


@dataclass(frozen=True)
class Request:
    """A fully validated request, ready for any HTTP client."""

    method: str
    path: str
    operation: str
    params: dict[str, int] | None = None
    body: bytes | None = None
    user_id: str | None = None


@dataclass(frozen=True)
class Response:
    """The parts of an HTTP response the policy needs, whatever client fetched it."""

    status: int
    body: bytes
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class UsersPage:
    """One page of ``GET /v2/users`` (public as ``airflow_provider_kumulos.hooks.kumulos.UsersPage``).

    ``users`` holds dicts, or ``msgspec.Raw`` byte slices (the user objects exactly as sent, one
    line each) when the page was decoded raw; raw decoding skips building Python objects for
    pass-through exports. ``identifiers`` are the users' identifiers, in the same order.
    """

    users: list[Any]
    identifiers: list[str]
    total_users: int
    page: int
    page_size: int
    nbytes: int

    @property
    def per_page(self) -> int:
        """Deprecated name of :attr:`page_size`."""
        warnings.warn("UsersPage.per_page is deprecated; use page_size", DeprecationWarning, stacklevel=2)
        return self.page_size


# --- input validation -------------------------------------------------------------------------


def check_user_id(user_id: object, parameter: str = "user_id") -> str:
    """Return ``user_id`` if it can name exactly one Kumulos user, else raise ``KumulosInputError``."""
    if not isinstance(user_id, str):
        raise KumulosInputError(
            parameter,
            f"expected a string, got {type(user_id).__name__}",
            "Pass the identifier your app gives associateUserWithInstall() as a str.",
        )
    if not user_id:
        raise KumulosInputError(parameter, "it is empty", "Pass a non-empty user identifier.")
    if len(user_id) > MAX_USER_ID_LENGTH:
        raise KumulosInputError(
            parameter,
            f"it is {len(user_id)} characters long",
            f"Kumulos identifiers are limited here to {MAX_USER_ID_LENGTH} characters.",
        )
    try:
        user_id.encode("utf-8")
    except UnicodeEncodeError:
        raise KumulosInputError(
            parameter,
            "it contains characters that cannot be encoded as UTF-8 (lone surrogates)",
            "Pass a valid Unicode string.",
        ) from None
    return user_id


def encode_user_id(user_id: str) -> str:
    """Percent-encode ``user_id`` as exactly one path segment.

    ``quote(safe="")`` escapes ``/ ? # %`` and everything non-ASCII; a segment made only of dots is
    escaped too, because clients and proxies collapse ``.`` and ``..`` segments.
    """
    segment = quote(user_id, safe="")
    if set(user_id) == {"."}:
        segment = "%2E" * len(user_id)
    return segment


def check_attributes(attributes: object, parameter: str = "attributes") -> bytes:
    """Validate an attribute object and return its JSON encoding (the request body)."""
    if not isinstance(attributes, Mapping):
        raise KumulosInputError(
            parameter,
            f"expected a JSON object (dict), got {type(attributes).__name__}",
            'Pass a dict such as {"segment": "vip"}.',
        )
    bad_keys = [k for k in attributes if not isinstance(k, str)]
    if bad_keys:
        raise KumulosInputError(
            parameter,
            f"keys must be strings, found {type(bad_keys[0]).__name__} key {bad_keys[0]!r}",
            "Convert the keys to str.",
        )
    try:
        body = json.dumps(dict(attributes), allow_nan=False, separators=(",", ":")).encode("utf-8")
    except ValueError as exc:
        if _encodes_with_nan(attributes):
            raise KumulosInputError(
                parameter,
                "it contains NaN or Infinity, which JSON cannot carry",
                "Replace them with null or a number.",
            ) from None
        raise KumulosInputError(
            parameter,
            f"not serialisable as JSON ({exc})",
            "Pass plain JSON values without circular references.",
        ) from None
    except TypeError as exc:
        raise KumulosInputError(
            parameter,
            f"not serialisable as JSON ({exc})",
            "Use str, int, float, bool, None, list or dict values (convert dates to ISO strings).",
        ) from None
    except RecursionError:
        raise KumulosInputError(
            parameter, "it is nested too deeply to encode", "Flatten the attribute values."
        ) from None
    nested = _nested_non_string_key(attributes)
    if nested is not None:
        where, key = nested
        raise KumulosInputError(
            parameter,
            f"keys must be strings, found {type(key).__name__} key {key!r} at {parameter}{where}",
            "Convert nested keys to str too (JSON would silently turn them into strings).",
        )
    return body


def _nested_non_string_key(attributes: Mapping[str, Any]) -> tuple[str, object] | None:
    """Where a nested object has a non-string key, which ``json.dumps`` would silently stringify.

    Runs after a successful encoding, so the structure is known to be finite and acyclic; the walk is
    iterative because encodable nesting can be deeper than Python's recursion allows.
    """
    stack: list[tuple[str, object]] = [(f"[{name!r}]", value) for name, value in attributes.items()]
    while stack:
        where, value = stack.pop()
        if isinstance(value, dict):
            for key, child in value.items():
                if not isinstance(key, str):
                    return where, key
                if isinstance(child, dict | list | tuple):
                    stack.append((f"{where}[{key!r}]", child))
        elif isinstance(value, list | tuple):
            stack.extend(
                (f"{where}[{index}]", child)
                for index, child in enumerate(value)
                if isinstance(child, dict | list | tuple)
            )
    return None


def _encodes_with_nan(attributes: Mapping[str, Any]) -> bool:
    """Whether the only thing stopping strict JSON encoding was a NaN or an infinity."""
    try:
        json.dumps(dict(attributes), allow_nan=True)
    except (ValueError, TypeError, RecursionError):
        return False
    return True


def check_per_page(value: object, parameter: str = "per_page") -> int:
    """Users per request: 1..1000, the most Kumulos serves per page."""
    return check_whole_number(
        parameter,
        value,
        1,
        MAX_PER_PAGE,
        f"Kumulos serves at most {MAX_PER_PAGE} users per page; use a value in 1..{MAX_PER_PAGE}.",
    )


def check_paging(
    page: object, per_page: object, *, page_parameter: str = "page", size_parameter: str = "per_page"
) -> tuple[int, int]:
    """Validate ``page`` (>= 1) and ``per_page`` (1..1000), named ``page_parameter`` and ``size_parameter``."""
    page = check_whole_number(page_parameter, page, 1, fix="Pages start at 1.")
    return page, check_per_page(per_page, size_parameter)


def check_page_window(
    start_page: object, end_page: object, *, rendered: bool = False
) -> tuple[int, int | None]:
    """``start_page`` >= 1 and ``end_page`` (inclusive) None or >= ``start_page``: the one window check."""
    start = check_whole_number("start_page", start_page, 1, fix="Pages start at 1.", rendered=rendered)
    if end_page is None:
        return start, None
    end = check_whole_number(
        "end_page", end_page, 1, fix="Use None (to the last page) or a page number >= 1.", rendered=rendered
    )
    if end < start:
        raise KumulosInputError(
            "end_page", f"{end} is before start_page {start}", "Use end_page >= start_page."
        )
    return start, end


# --- request building -------------------------------------------------------------------------


def users_page_request(page: int, page_size: int) -> Request:
    """``GET /v2/users?currentPage=&numberPerPage=``."""
    page, page_size = check_paging(page, page_size, size_parameter="page_size")
    return Request("GET", "/v2/users", "list users", params={"currentPage": page, "numberPerPage": page_size})


def request_target(request: Request) -> str:
    """Path and query exactly as they must go on the wire (ids stay percent-encoded)."""
    return f"{request.path}?{urlencode(request.params)}" if request.params else request.path


def _attributes_path(user_id: str) -> str:
    return f"/v1/users/{encode_user_id(user_id)}/attributes"


def get_attributes_request(user_id: str) -> Request:
    """``GET /v1/users/{id}/attributes``."""
    user_id = check_user_id(user_id)
    return Request("GET", _attributes_path(user_id), "get attributes", user_id=user_id)


def set_attributes_request(user_id: str, attributes: Mapping[str, Any]) -> Request:
    """``PUT /v1/users/{id}/attributes`` with the raw attribute object as body."""
    user_id = check_user_id(user_id)
    body = check_attributes(attributes)
    return Request("PUT", _attributes_path(user_id), "set attributes", body=body, user_id=user_id)


def delete_attributes_request(user_id: str) -> Request:
    """``DELETE /v1/users/{id}/attributes``."""
    user_id = check_user_id(user_id)
    return Request("DELETE", _attributes_path(user_id), "delete attributes", user_id=user_id)


# --- response interpretation ------------------------------------------------------------------


def _snippet(body: bytes) -> str:
    text = body[: MAX_ERROR_TEXT * 4].decode("utf-8", errors="replace").strip()
    return text if len(text) <= MAX_ERROR_TEXT else text[:MAX_ERROR_TEXT] + "..."


def describe(request: Request, status: int | None = None) -> str:
    """``Kumulos <operation> (<METHOD> <path>)``, plus ``returned HTTP <status>`` when given: message prefix."""
    where = f"Kumulos {request.operation} ({request.method} {request.path})"
    return f"{where} returned HTTP {status}" if status is not None else where


def malformed(request: Request, status: int, problem: str) -> KumulosResponseError:
    """The error for an answer that does not have the documented shape (``problem`` ends the message)."""
    return KumulosResponseError(
        f"{describe(request, status)} {problem}", status=status, operation=request.operation
    )


def transport_error(request: Request, problem: str) -> KumulosTransportError:
    """The error for a request that got no HTTP answer (whatever client sent it)."""
    return KumulosTransportError(f"{describe(request)}: {problem}", operation=request.operation)


def timeout_error(request: Request, connect: float, read: float, detail: str) -> KumulosTransportError:
    """The error for a request that got no answer in time (retryable like any transport error)."""
    return transport_error(
        request, f"no answer within the timeout (connect {connect}s, read {read}s): {detail}"
    )


#: OpenSSL's reasons for a TLS handshake answered by a server that does not speak TLS (plain HTTP):
#: its answer ("HTTP/1.1 400 ...") is read as a TLS record with a nonsensical version.
_PLAIN_HTTP_REASONS = ("WRONG_VERSION_NUMBER", "RECORD_LAYER_FAILURE", "HTTP_REQUEST")


def _linked_errors(error: BaseException) -> list[BaseException]:
    """``error`` and every error it wraps: causes, contexts, urllib3's ``reason``, exception args."""
    found: list[BaseException] = []
    pending: list[object] = [error]
    while pending:
        current = pending.pop()
        if not isinstance(current, BaseException) or any(current is seen for seen in found):
            continue
        found.append(current)
        pending += [current.__cause__, current.__context__, getattr(current, "reason", None), *current.args]
    return found


def _ssl_reasons(error: BaseException) -> list[str]:
    """The OpenSSL reasons (``ssl.SSLError.reason``) anywhere in ``error``'s chain."""
    import ssl

    return [
        link.reason
        for link in _linked_errors(error)
        if isinstance(link, ssl.SSLError) and isinstance(link.reason, str)
    ]


def plain_http_answer(error: BaseException | str) -> str | None:
    """The OpenSSL reason showing that a TLS handshake met a plain-HTTP server, else None.

    Takes the client's exception (any client: the chain is searched for ``ssl.SSLError``) or the
    text of one (``"[SSL: WRONG_VERSION_NUMBER] wrong version number"``, ``"record layer failure"``).
    """
    if isinstance(error, BaseException):
        reasons = _ssl_reasons(error)
        texts = [str(link) for link in _linked_errors(error)] if not reasons else []
    else:
        reasons, texts = [], [error]
    for reason in reasons:
        if reason.upper() in _PLAIN_HTTP_REASONS:
            return reason.upper()
    for text in texts:
        normalised = re.sub(r"[\s_]+", "_", text.upper())
        for reason in _PLAIN_HTTP_REASONS:
            if reason in normalised:
                return reason
    return None


def _plain_http_url(base_url: str) -> str:
    """``base_url`` with its scheme replaced by ``http://``: the fix for a plain-HTTP server."""
    return "http://" + base_url.split("://", 1)[-1]


def tls_error(request: Request, base_url: str, error: BaseException | str) -> KumulosConfigError:
    """The error for a failed TLS handshake: a configuration problem, so never retried.

    ``error`` is the client's exception (or its text, or just its class name); when it shows that
    the server answered in plain HTTP, the message says so and gives the ``http://`` URL to use.
    """
    reason = plain_http_answer(error)
    if reason is not None:
        return KumulosConfigError(
            f"{describe(request)}: {base_url} answered the TLS handshake in plain HTTP ({reason}): "
            "the server does not speak HTTPS, so no 'verify' setting can help. Set the connection host "
            f"to {_plain_http_url(base_url)} (a host without a scheme means https://).",
            operation=request.operation,
        )
    if isinstance(error, BaseException):
        reasons = _ssl_reasons(error)
        detail = type(error).__name__ + (f": {reasons[0]}" if reasons else "")
    else:
        detail = error
    return KumulosConfigError(
        f"{describe(request)}: TLS verification failed for {base_url} ({detail}). If the server uses a "
        "private CA, set the connection extra 'verify' to its CA bundle path; set it to false only for "
        "local testing.",
        operation=request.operation,
    )


def transport_failure(
    request: Request,
    error: BaseException,
    *,
    base_url: str,
    connect_timeout: float,
    read_timeout: float,
    timed_out: bool,
) -> tuple[str, KumulosError]:
    """The outcome label (for request counts) and typed error of a request that got no HTTP answer.

    Every client (requests in the hook, httpx in the async hook) hands its exception here, saying
    only whether its library called it a timeout; a TLS failure is found in the error's causes.
    """
    detail = type(error).__name__
    if timed_out:
        return "timeout", timeout_error(request, connect_timeout, read_timeout, detail)
    if _tls_cause(error) is not None:
        return "tls_error", tls_error(request, base_url, error)
    return "connection_error", transport_error(request, f"connection to {base_url} failed: {detail}")


def _tls_cause(error: BaseException) -> BaseException | None:
    """The TLS failure (certificate, handshake) among the errors ``error`` wraps, if any."""
    import ssl

    return next((link for link in _linked_errors(error) if isinstance(link, ssl.SSLError)), None)


def _parse_retry_after(headers: Mapping[str, str], now: float | None = None) -> float | None:
    """``Retry-After`` as seconds from now: delta-seconds or an HTTP date; None when absent/garbled."""
    value = next((v for k, v in headers.items() if k.lower() == "retry-after"), None)
    if value is None:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            parsed = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if parsed.tzinfo is None:
            return None
        seconds = parsed.timestamp() - (time.time() if now is None else now)
    if math.isnan(seconds) or math.isinf(seconds):
        return None
    return max(0.0, seconds)


def _decode_json(request: Request, response: Response) -> Any:
    try:
        return json.loads(response.body)
    except ValueError:
        raise malformed(
            request, response.status, f"with a body that is not JSON: {_snippet(response.body)!r}"
        ) from None
    except RecursionError:
        raise malformed(request, response.status, "with JSON nested too deeply to decode.") from None


def error_for(request: Request, response: Response) -> KumulosError:
    """Map a non-success status to its typed error (with ``retry_after`` where the server set one)."""
    status = response.status
    where = describe(request, status)
    error: KumulosError
    if status == 401:
        error = KumulosAuthError(
            f"{where}: authentication failed. Check the connection's API key (login) and "
            "server key (password) for this Kumulos app.",
            status=status,
            operation=request.operation,
        )
    elif status == 422:
        try:
            body: Any = json.loads(response.body)
        except ValueError:
            body = _snippet(response.body)
        error = KumulosValidationError(
            f"{where}: the server rejected the request: {_snippet(response.body)}",
            body=body,
            status=status,
            operation=request.operation,
        )
    elif request.user_id is not None and (
        (status == 404 and request.method == "GET") or (status == 400 and request.method == "DELETE")
    ):
        error = KumulosUserNotFoundError(
            f"{where}: user {request.user_id!r} does not exist.",
            user_id=request.user_id,
            status=status,
            operation=request.operation,
        )
    elif status == 429:
        error = KumulosRateLimitError(
            f"{where}: rate limited by Kumulos.", status=status, operation=request.operation
        )
    elif status >= 500:
        error = KumulosServerError(
            f"{where}: server error: {_snippet(response.body)}", status=status, operation=request.operation
        )
    else:
        error = KumulosServerError(
            f"{where}: unexpected status: {_snippet(response.body)}",
            status=status,
            operation=request.operation,
        )
    error.retry_after = _parse_retry_after(response.headers) if status in (429, 503) else None
    return error


def interpret(request: Request, response: Response) -> Any:
    """Return the documented result of ``request`` or raise its typed error.

    Results: attributes dict (GET), ``{"identifier", "attributes"}`` dict (PUT), None (DELETE).
    Users pages go through :func:`decode_users_page` instead.
    """
    expected = 204 if request.method == "DELETE" else 200
    if response.status != expected and not (request.method == "DELETE" and response.status == 200):
        raise error_for(request, response)
    if request.method == "DELETE":
        return None
    payload = _decode_json(request, response)
    if not isinstance(payload, dict):
        raise malformed(
            request, response.status, f"with a JSON {type(payload).__name__}, expected an object."
        )
    if request.method == "PUT" and not isinstance(payload.get("attributes", {}), dict):
        raise malformed(request, response.status, "without an attributes object.")
    return payload


def decode_users_page(request: Request, response: Response, *, raw: bool = False) -> UsersPage:
    """Check a users page's shape and decode it; ``raw=True`` keeps each user as bytes.

    A page is malformed (and retried like any garbled answer) unless every user is a JSON object
    with a string ``identifier``.
    """
    import msgspec

    if response.status != 200:
        raise error_for(request, response)
    params = request.params or {}
    try:
        decoded = msgspec.json.decode(response.body, type=_page_types()[1 if raw else 0])
    except msgspec.ValidationError as exc:
        raise malformed(
            request, 200, f"with a page that does not match the documented shape ({exc})."
        ) from None
    except msgspec.DecodeError:
        raise malformed(request, 200, f"with a body that is not JSON: {_snippet(response.body)!r}") from None
    users = decoded.users
    if raw and b"\n" in response.body:
        # Pretty-printed: re-encode each user compactly (same content) so that every user is one line.
        users = [msgspec.Raw(msgspec.json.format(user, indent=-1)) for user in users]
    identifiers = _raw_identifiers(users) if raw else _dict_identifiers(users)
    if identifiers is None:
        # Checked here, inside the retry loop, so that a garbled page is fetched again in both modes.
        raise malformed(
            request,
            200,
            "with a page that does not match the documented shape "
            "(a user is not a JSON object with a string identifier).",
        )
    return UsersPage(
        users=users,
        identifiers=identifiers,
        total_users=decoded.totalUsers,
        page=params.get("currentPage", 1),
        page_size=params.get("numberPerPage", MAX_PER_PAGE),
        nbytes=len(response.body),
    )


def _dict_identifiers(users: list[dict[str, Any]]) -> list[str] | None:
    identifiers = [user.get("identifier") for user in users]
    return identifiers if all(isinstance(identifier, str) for identifier in identifiers) else None  # type: ignore[return-value]


def _raw_identifiers(users: list[Any]) -> list[str] | None:
    """Identifiers of raw users: one C-level prefix match per page in the usual case, a decode of
    the identifiers alone otherwise; None if a user is not an object with a string identifier."""
    import msgspec

    matches = list(map(_IDENTIFIER_FIRST.match, users))
    if None not in matches:
        try:
            return [match[1].decode() for match in cast("list[re.Match[bytes]]", matches)]
        except UnicodeDecodeError:
            pass
    try:
        identified = msgspec.json.decode(b"[" + b",".join(users) + b"]", type=_page_types()[2])
    except msgspec.DecodeError:  # a user is not an object with a string identifier, or not UTF-8
        return None
    return [user.identifier for user in identified]


@functools.cache
def _page_types() -> tuple[Any, Any, Any]:
    """msgspec types for a users page, built on first use to keep msgspec out of module import.

    Built with ``defstruct`` because this module's postponed annotations would name ``msgspec``,
    which is not a module global.
    """
    import msgspec

    page = msgspec.defstruct("_Page", [("users", list[dict[str, Any]]), ("totalUsers", int)])
    raw_page = msgspec.defstruct("_RawPage", [("users", list[msgspec.Raw]), ("totalUsers", int)])
    identified = msgspec.defstruct("_Identified", [("identifier", str)])
    return page, raw_page, list[identified]  # type: ignore[valid-type]


# --- waiting for a user -----------------------------------------------------------------------


def check_attributes_match(expected: object, parameter: str = "attributes_match") -> dict[str, Any] | None:
    """Validate the attribute values a wait expects; None (or ``{}``) means any attributes will do."""
    if expected is None:
        return None
    check_attributes(expected, parameter)
    return dict(cast(Mapping[str, Any], expected))


def attributes_satisfy(attributes: Mapping[str, Any], expected: Mapping[str, Any] | None) -> bool:
    """Whether every expected attribute is present with the same JSON value (``true`` is not ``1``)."""
    return not expected or all(
        name in attributes and _json_equal(attributes[name], value) for name, value in expected.items()
    )


def _json_equal(left: Any, right: Any) -> bool:
    if isinstance(left, bool) or isinstance(right, bool):
        return isinstance(left, bool) and isinstance(right, bool) and left == right
    if isinstance(left, Mapping) and isinstance(right, Mapping):
        return left.keys() == right.keys() and all(_json_equal(left[key], right[key]) for key in left)
    if isinstance(left, list | tuple) and isinstance(right, list | tuple):
        return len(left) == len(right) and all(map(_json_equal, left, right))
    return bool(left == right)


# --- retry policy -----------------------------------------------------------------------------


def is_retryable(error: BaseException) -> bool:
    """Whether another attempt may succeed: 429, 5xx, transport errors, garbled bodies."""
    if isinstance(error, KumulosTransportError):
        return True
    if isinstance(error, KumulosResponseError):
        # A truncated or HTML body with status 200 is a proxy or network hiccup, worth one more try.
        return True
    if isinstance(error, KumulosRateLimitError | KumulosServerError):
        return error.status in RETRYABLE_STATUSES
    return False


def keeps_waiting(error: BaseException) -> bool:
    """Whether a wait for a user should poll again after ``error``: the user is missing, or it is transient."""
    return isinstance(error, KumulosUserNotFoundError) or is_retryable(error)


def retry_after(error: BaseException) -> float | None:
    """Seconds the server asked us to wait, if it did."""
    return error.retry_after if isinstance(error, KumulosError) else None


def backoff_seconds(
    attempt: int, error: BaseException | None, *, base: float, cap: float, max_retry_after: float
) -> float:
    """Delay before attempt ``attempt + 1``: the server's ``Retry-After`` (capped), else jittered exponential backoff.

    Jitter (uniform in the upper half of min(cap, base * 2**(attempt-1))) spreads concurrent workers
    apart while keeping a floor under each wait.
    """
    import random

    asked = retry_after(error) if error is not None else None
    if asked is not None:
        return min(asked, max_retry_after)
    ceiling = min(cap, base * (2 ** max(0, attempt - 1)))
    return random.uniform(ceiling / 2, ceiling)


__all__ = [
    "DEFAULT_BASE_URL",
    "JSON_HEADERS",
    "MAX_PER_PAGE",
    "KumulosTransportError",
    "Request",
    "Response",
    "UsersPage",
    "attributes_satisfy",
    "backoff_seconds",
    "check_attributes",
    "check_attributes_match",
    "check_page_window",
    "check_paging",
    "check_user_id",
    "decode_users_page",
    "delete_attributes_request",
    "describe",
    "encode_user_id",
    "error_for",
    "get_attributes_request",
    "interpret",
    "is_retryable",
    "keeps_waiting",
    "malformed",
    "plain_http_answer",
    "request_target",
    "retry_after",
    "set_attributes_request",
    "timeout_error",
    "tls_error",
    "transport_error",
    "transport_failure",
    "users_page_request",
]
