"""Answers of the Kumulos CRM API: a response becomes its documented result or a typed error.

Whatever client fetched it, a response is a :class:`Response`; :func:`interpret` and
:func:`decode_users_page` return the result, :func:`error_for` the typed error of a failed status
(with the server's ``Retry-After``), :func:`malformed` the error of an answer of the wrong shape.
"""

from __future__ import annotations

import functools
import json
import re
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, cast

from airflow_provider_kumulos._policy.requests import MAX_PER_PAGE, Request, describe
from airflow_provider_kumulos.exceptions import (
    KumulosAuthError,
    KumulosError,
    KumulosRateLimitError,
    KumulosResponseError,
    KumulosServerError,
    KumulosUserNotFoundError,
    KumulosValidationError,
)

#: How much response text an error message may quote.
MAX_ERROR_TEXT = 300
#: A raw user that starts with its identifier written without escapes or control characters, so
#: that the captured UTF-8 bytes are exactly the identifier (how Kumulos writes its users).
_IDENTIFIER_FIRST = re.compile(rb'\{"identifier":"([^"\\\x00-\x1f]*)"')


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


def _snippet(body: bytes) -> str:
    text = body[: MAX_ERROR_TEXT * 4].decode("utf-8", errors="replace").strip()
    return text if len(text) <= MAX_ERROR_TEXT else text[:MAX_ERROR_TEXT] + "..."


def malformed(request: Request, status: int, problem: str) -> KumulosResponseError:
    """The error for an answer that does not have the documented shape (``problem`` ends the message)."""
    return KumulosResponseError(
        f"{describe(request, status)} {problem}", status=status, operation=request.operation
    )


def _parse_retry_after(headers: Mapping[str, str]) -> float | None:
    """``Retry-After`` as seconds from now, read by urllib3's parser (whole seconds or an HTTP date,
    as RFC 9110 writes them); None when absent or in neither form, so that the usual backoff applies."""
    value = next((v for k, v in headers.items() if k.lower() == "retry-after"), None)
    if value is None:
        return None
    from urllib3.exceptions import InvalidHeader  # loaded with requests already; off the import path
    from urllib3.util.retry import Retry

    try:
        return float(Retry(0).parse_retry_after(value))
    except InvalidHeader:
        return None


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
    except (msgspec.DecodeError, UnicodeDecodeError):  # msgspec before 0.20 raises the latter on bad UTF-8
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
    except (msgspec.DecodeError, UnicodeDecodeError):  # not an object with a string identifier, or not UTF-8
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
