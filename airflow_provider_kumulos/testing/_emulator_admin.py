"""The ``/_emulator/`` admin API: the Python API over HTTP, for an emulator in another process."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from airflow_provider_kumulos.testing._emulator_faults import Fault
from airflow_provider_kumulos.testing._emulator_http import Request, Response

if TYPE_CHECKING:
    from airflow_provider_kumulos.testing.emulator import KumulosEmulator

ADMIN_PREFIX = "/_emulator"
_FAULT_KEYS = {"script", "method", "path_prefix", "page", "rates", "latency", "reject", "drift", "outage"}


def _body(request: Request) -> dict[str, Any]:
    """The JSON object body (empty object when there is no body)."""
    if not request.body.strip():
        return {}
    payload = json.loads(request.body)
    if not isinstance(payload, dict):
        raise ValueError("body must be a JSON object")
    return payload


def _configure_faults(emulator: KumulosEmulator, body: dict[str, Any]) -> None:
    """Apply a ``POST /_emulator/faults`` body; each key maps to one Python API call."""
    unknown = set(body) - _FAULT_KEYS
    if unknown:
        raise ValueError(f"unknown keys {sorted(unknown)}; expected some of {sorted(_FAULT_KEYS)}")
    if "script" in body:
        faults = [Fault.from_dict(item) for item in body["script"]]
        page = body.get("page")
        if page is not None and (isinstance(page, bool) or not isinstance(page, int)):
            raise ValueError(f"page must be a whole number, got {page!r}")
        emulator.script_faults(
            faults, method=body.get("method"), path_prefix=body.get("path_prefix"), page=page
        )
    if "rates" in body:
        emulator.set_fault_rates(**body["rates"])
    if "latency" in body:
        emulator.set_latency(float(body["latency"]))
    if "reject" in body:
        emulator.reject_users(
            {ident: (status, payload) for ident, (status, payload) in body["reject"].items()}
        )
    if "drift" in body:
        emulator.schedule_drift(**body["drift"])
    if "outage" in body:
        emulator.start_outage(**body["outage"])


def _route(request: Request, emulator: KumulosEmulator) -> Response:
    """Dispatch on ``(method, path)``; raises ValueError/TypeError/KeyError for bad input."""
    route = request.segments[2:]
    method = request.method
    if route == ["health"] and method == "GET":
        return Response.json(
            200, {"status": "ok", "users": emulator.stats()["users"], "base_url": emulator.base_url}
        )
    if route == ["users"] and method == "GET":
        return Response.json(200, {"identifiers": emulator.user_ids()})
    if route == ["users"] and method == "POST":
        body = _body(request)
        identifier = body.pop("identifier", None)
        if not isinstance(identifier, str) or not identifier:
            raise ValueError("'identifier' must be a non-empty string")
        if emulator.get_user(identifier) is not None:
            return Response.error(409, f"User {identifier!r} already exists")
        return Response.json(201, emulator.add_user(identifier, body.pop("attributes", None), **body))
    if len(route) == 2 and route[0] == "users" and method in ("GET", "DELETE"):
        missing = Response.error(404, f"User {route[1]!r} does not exist")
        if method == "GET":
            user = emulator.get_user(route[1])
            return missing if user is None else Response.json(200, user)
        try:
            emulator.remove_user(route[1])
        except KeyError:
            return missing
        return Response.empty()
    if route == ["requests"] and method == "GET":
        return Response.json(200, {"requests": [entry.to_dict() for entry in emulator.requests]})
    if route == ["requests"] and method == "DELETE":
        emulator.clear_requests()
        return Response.empty()
    if route == ["faults"] and method == "POST":
        _configure_faults(emulator, _body(request))
        return Response.empty()
    if route == ["faults"] and method == "DELETE":
        emulator.clear_faults()
        return Response.empty()
    if route == ["reset"] and method == "POST":
        body = _body(request)
        emulator.reset(users=body.get("users"), seed=body.get("seed"))
        return Response.json(200, {"users": len(emulator.user_ids())})
    if route == ["stats"] and method == "GET":
        return Response.json(200, emulator.stats())
    known = {("health",), ("users",), ("requests",), ("faults",), ("reset",), ("stats",)}
    if tuple(route) in known or (len(route) == 2 and route[0] == "users"):
        return Response.error(405, f"{method} not allowed on {request.path}")
    return Response.error(404, f"No admin route {request.path}")


def handle_admin(request: Request, emulator: KumulosEmulator) -> Response:
    """Answer one admin request; bad input is a 422 with the reason."""
    try:
        return _route(request, emulator)
    except (ValueError, TypeError, KeyError) as exc:
        return Response.json(422, {"errors": {"body": [str(exc)]}})
