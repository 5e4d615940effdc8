"""Requests to the Kumulos CRM API: input checked before anything is sent, paths, percent-encoded ids.

Every request leaves here as a :class:`Request` whose user id, attributes and paging already passed
the API's rules, so a bad argument fails with a ``KumulosInputError`` before any I/O.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode

from airflow_provider_kumulos._checks import check_whole_number
from airflow_provider_kumulos.exceptions import KumulosInputError

DEFAULT_BASE_URL = "https://crm.kumulos.com"
MAX_PER_PAGE = 1000
#: Undocumented by Kumulos; long enough for any real identifier, short enough for every URL limit.
MAX_USER_ID_LENGTH = 1024

JSON_HEADERS = {"Content-Type": "application/json", "Accept": "application/json"}


@dataclass(frozen=True)
class Request:
    """A fully validated request, ready for any HTTP client."""

    method: str
    path: str
    operation: str
    params: dict[str, int] | None = None
    body: bytes | None = None
    user_id: str | None = None


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


def describe(request: Request, status: int | None = None) -> str:
    """``Kumulos <operation> (<METHOD> <path>)``, plus ``returned HTTP <status>`` when given: message prefix."""
    where = f"Kumulos {request.operation} ({request.method} {request.path})"
    return f"{where} returned HTTP {status}" if status is not None else where
