"""The Kumulos CRM API routes (auth, users pages, attributes) and the shapes of injected faults."""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import re
from dataclasses import dataclass
from typing import Any

from airflow_provider_kumulos.testing._emulator_faults import Fault, FaultPlan
from airflow_provider_kumulos.testing._emulator_http import Request, Response
from airflow_provider_kumulos.testing._emulator_store import UserStore

USERS_PATH = "/v2/users"
MAX_PER_PAGE = 1000
_INTEGER = re.compile(r"-?[0-9]+")
_ATTRIBUTE_METHODS = "GET, PUT, DELETE"
#: Deepest attribute nesting stored. Like a depth-limited JSON parser, the emulator refuses deeper
#: objects with a 422, so whether one is stored never depends on the Python stack of the thread
#: that handles it (copying a stored object recurses once per level).
MAX_NESTING = 200
_HTML_ERROR = (
    b"<!DOCTYPE html>\n<html><head><title>502 Bad Gateway</title></head>\n"
    b"<body><h1>502 Bad Gateway</h1><p>The upstream server returned an invalid response.</p></body></html>\n"
)


@dataclass(frozen=True)
class ApiResult:
    """The answer plus what the request log wants to know about it."""

    response: Response
    identifier: str | None = None
    rejected: bool = False


def _authorized(request: Request, api_key: str, server_key: str) -> bool:
    """HTTP Basic with the API key as user name and the server key as password."""
    scheme, _, token = request.headers.get("Authorization", "").strip().partition(" ")
    if scheme.lower() != "basic":
        return False
    try:
        user, sep, password = base64.b64decode(token.strip(), validate=True).decode("utf-8").partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return False
    return bool(sep) and hmac.compare_digest(user.encode(), api_key.encode()) & hmac.compare_digest(
        password.encode(), server_key.encode()
    )


def _page_params(query: dict[str, list[str]]) -> tuple[int, int] | dict[str, list[str]]:
    """``(currentPage, numberPerPage)`` or the 422 ``errors`` object naming the bad keys."""
    errors: dict[str, list[str]] = {}
    values: dict[str, int] = {}
    for key, low, high in (("currentPage", 1, None), ("numberPerPage", 1, MAX_PER_PAGE)):
        raw = query.get(key)
        if raw is None:
            errors[key] = ["is required"]
        elif not _INTEGER.fullmatch(raw[0]):
            errors[key] = ["must be an integer"]
        elif int(raw[0]) < low:
            errors[key] = [f"must be at least {low}"]
        elif high is not None and int(raw[0]) > high:
            errors[key] = [f"must be at most {high}"]
        else:
            values[key] = int(raw[0])
    return errors or (values["currentPage"], values["numberPerPage"])


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _nesting(value: Any) -> int:
    """How many objects and arrays deep ``value`` goes (iterative: it may be deeper than the stack)."""
    deepest, pending = 0, [(value, 1)]
    while pending:
        current, depth = pending.pop()
        if isinstance(current, dict | list):
            deepest = max(deepest, depth)
            pending += [
                (item, depth + 1) for item in (current.values() if isinstance(current, dict) else current)
            ]
    return deepest


def _attributes(request: Request, store: UserStore, identifier: str) -> Response:
    """GET / PUT / DELETE ``/v1/users/{id}/attributes``."""
    if request.method == "GET":
        attributes = store.get_attributes(identifier)
        if attributes is None:
            return Response.error(404, f"User with identifier {identifier!r} does not exist")
        return Response.json(200, attributes)
    if request.method == "PUT":
        try:
            payload = json.loads(request.body.decode("utf-8"), parse_constant=_reject_constant)
        except (UnicodeDecodeError, ValueError, RecursionError):
            return Response.json(422, {"errors": {"body": ["must be valid JSON"]}})
        if not isinstance(payload, dict):
            return Response.json(422, {"errors": {"body": ["must be a JSON object of attributes"]}})
        if _nesting(payload) > MAX_NESTING:
            return Response.json(422, {"errors": {"body": ["is nested too deeply"]}})
        user = store.put_attributes(identifier, payload)
        return Response.json(200, {"identifier": identifier, "attributes": user["attributes"]})
    if request.method == "DELETE":
        if not store.delete_attributes(identifier):
            return Response.error(400, f"User with identifier {identifier!r} could not be found")
        return Response.empty(204)
    return Response.error(405, "Method not allowed", [("Allow", _ATTRIBUTE_METHODS)])


def handle_api(
    request: Request, store: UserStore, faults: FaultPlan, api_key: str, server_key: str
) -> ApiResult:
    """Answer one Kumulos API request against ``store``."""
    if not _authorized(request, api_key, server_key):
        message = "Missing or malformed Authorization header, or wrong API key / server key"
        return ApiResult(Response.error(401, message, [("WWW-Authenticate", 'Basic realm="Kumulos"')]))
    segments = request.segments
    if segments == ["", "v2", "users"]:
        if request.method != "GET":
            return ApiResult(Response.error(405, "Method not allowed", [("Allow", "GET")]))
        params = _page_params(request.query)
        if isinstance(params, dict):
            return ApiResult(Response.json(422, {"errors": params}))
        body = store.page(*params)
        store.users_page_answered()
        return ApiResult(Response(200, body))
    if (
        len(segments) == 5
        and segments[:3] == ["", "v1", "users"]
        and segments[4] == "attributes"
        and segments[3]
    ):
        identifier = segments[3]
        rejection = faults.rejection(identifier) if request.method in ("GET", "PUT", "DELETE") else None
        if rejection is not None:
            status, payload = rejection
            response = Response.empty(status) if status == 204 else Response.json(status, payload)
            return ApiResult(response, identifier, rejected=True)
        return ApiResult(_attributes(request, store, identifier), identifier)
    return ApiResult(Response.error(404, f"No route for {request.path}"))


def fault_response(fault: Fault, request: Request, answer: Response | None) -> Response:
    """What the client receives for a fault; ``answer`` is the real response (None for ``status``)."""
    if fault.kind == "status" or answer is None:
        status = fault.status or 500
        headers = [] if fault.retry_after is None else [("Retry-After", str(fault.retry_after))]
        return Response.error(status, "The server could not handle the request, try again later", headers)
    if fault.kind == "truncated":
        return Response(200, answer.body[: len(answer.body) // 2], answer.content_type or "application/json")
    if fault.kind == "non_json":
        return Response(200, _HTML_ERROR, "text/html; charset=utf-8")
    if fault.kind == "missing_field":
        payload: dict[str, Any] = {}
        if request.segments == ["", "v2", "users"] and answer.status == 200:
            payload = json.loads(answer.body)
            payload.pop(fault.field or "users", None)
        return Response.json(200, payload)
    if fault.kind == "replace_field" and answer.status == 200 and answer.body:
        replaced = json.loads(answer.body)
        if isinstance(replaced, dict):
            replaced[fault.field or ""] = fault.value
            return Response.json(200, replaced)
    return answer
