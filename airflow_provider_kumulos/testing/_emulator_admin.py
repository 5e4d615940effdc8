"""The ``/_emulator/`` admin API: the Python API over HTTP, for an emulator in another process.

Every route is one row of :data:`ADMIN_ROUTES`; dispatch and the README's table of routes both come
from it (:func:`routes_markdown`), so the documentation cannot drift from what is served.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from airflow_provider_kumulos.testing._emulator_faults import Fault
from airflow_provider_kumulos.testing._emulator_http import Request, Response
from airflow_provider_kumulos.testing._emulator_log import RecordedRequest

ADMIN_PREFIX = "/_emulator"
_FAULT_KEYS = {"script", "method", "path_prefix", "page", "rates", "latency", "reject", "drift", "outage"}
#: A path segment of a route that matches any one (percent-decoded) segment: the user identifier.
_ID = "{id}"


class EmulatorControl(Protocol):
    """What the admin API drives: the emulator's Python API (``emulator.KumulosEmulator`` has it).

    Declared here so that this module does not import the emulator, which imports it to dispatch.
    """

    @property
    def base_url(self) -> str: ...

    @property
    def requests(self) -> list[RecordedRequest]: ...

    def clear_requests(self) -> None: ...

    def stats(self) -> dict[str, Any]: ...

    def user_ids(self) -> list[str]: ...

    def get_user(self, identifier: str) -> dict[str, Any] | None: ...

    def add_user(
        self, identifier: str, attributes: dict[str, Any] | None = None, **fields: Any
    ) -> dict[str, Any]: ...

    def remove_user(self, identifier: str) -> None: ...

    def set_attributes(self, identifier: str, attributes: dict[str, Any]) -> None: ...

    def reset(self, users: int | None = None, seed: int | None = None) -> None: ...

    def script_faults(
        self,
        faults: Iterable[Fault],
        method: str | None = None,
        path_prefix: str | None = None,
        page: int | None = None,
    ) -> None: ...

    def set_fault_rates(self, *args: Any, **rates: Any) -> None: ...

    def reject_users(self, rejections: Mapping[str, Sequence[Any]]) -> None: ...

    def start_outage(self, *args: Any, **outage: Any) -> None: ...

    def set_latency(self, seconds: float) -> None: ...

    def schedule_drift(self, *args: Any, **drift: Any) -> None: ...

    def clear_faults(self) -> None: ...


Handler = Callable[[EmulatorControl, Request, list[str]], Response]


@dataclass(frozen=True)
class AdminRoute:
    """One admin route: ``method`` and ``path`` under ``/_emulator``, what it takes and answers."""

    method: str
    path: str
    body: str
    answer: str
    handler: Handler

    def matches(self, route: list[str]) -> list[str] | None:
        """The values of the route's ``{id}`` segments when ``route`` is this path, else None."""
        pattern = self.path.strip("/").split("/")
        if len(pattern) != len(route):
            return None
        values = []
        for expected, actual in zip(pattern, route, strict=True):
            if expected == _ID:
                values.append(actual)
            elif expected != actual:
                return None
        return values


def _body(request: Request) -> dict[str, Any]:
    """The JSON object body (empty object when there is no body)."""
    if not request.body.strip():
        return {}
    payload = json.loads(request.body)
    if not isinstance(payload, dict):
        raise ValueError("body must be a JSON object")
    return payload


def _configure_faults(emulator: EmulatorControl, body: dict[str, Any]) -> None:
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


def _missing(identifier: str) -> Response:
    return Response.error(404, f"User {identifier!r} does not exist")


def _health(emulator: EmulatorControl, request: Request, ids: list[str]) -> Response:
    return Response.json(
        200, {"status": "ok", "users": emulator.stats()["users"], "base_url": emulator.base_url}
    )


def _list_users(emulator: EmulatorControl, request: Request, ids: list[str]) -> Response:
    return Response.json(200, {"identifiers": emulator.user_ids()})


def _add_user(emulator: EmulatorControl, request: Request, ids: list[str]) -> Response:
    body = _body(request)
    identifier = body.pop("identifier", None)
    if not isinstance(identifier, str) or not identifier:
        raise ValueError("'identifier' must be a non-empty string")
    if emulator.get_user(identifier) is not None:
        return Response.error(409, f"User {identifier!r} already exists")
    return Response.json(201, emulator.add_user(identifier, body.pop("attributes", None), **body))


def _get_user(emulator: EmulatorControl, request: Request, ids: list[str]) -> Response:
    user = emulator.get_user(ids[0])
    return _missing(ids[0]) if user is None else Response.json(200, user)


def _remove_user(emulator: EmulatorControl, request: Request, ids: list[str]) -> Response:
    try:
        emulator.remove_user(ids[0])
    except KeyError:
        return _missing(ids[0])
    return Response.empty()


def _set_attributes(emulator: EmulatorControl, request: Request, ids: list[str]) -> Response:
    attributes = _body(request)
    created = emulator.get_user(ids[0]) is None
    emulator.set_attributes(ids[0], attributes)
    return Response.json(201 if created else 200, emulator.get_user(ids[0]))


def _list_requests(emulator: EmulatorControl, request: Request, ids: list[str]) -> Response:
    return Response.json(200, {"requests": [entry.to_dict() for entry in emulator.requests]})


def _clear_requests(emulator: EmulatorControl, request: Request, ids: list[str]) -> Response:
    emulator.clear_requests()
    return Response.empty()


def _set_faults(emulator: EmulatorControl, request: Request, ids: list[str]) -> Response:
    _configure_faults(emulator, _body(request))
    return Response.empty()


def _clear_faults(emulator: EmulatorControl, request: Request, ids: list[str]) -> Response:
    emulator.clear_faults()
    return Response.empty()


def _reset(emulator: EmulatorControl, request: Request, ids: list[str]) -> Response:
    body = _body(request)
    emulator.reset(users=body.get("users"), seed=body.get("seed"))
    return Response.json(200, {"users": len(emulator.user_ids())})


def _stats(emulator: EmulatorControl, request: Request, ids: list[str]) -> Response:
    return Response.json(200, emulator.stats())


_NONE = "none"
ADMIN_ROUTES: tuple[AdminRoute, ...] = (
    AdminRoute("GET", "/health", _NONE, '200 `{"status": "ok", "users", "base_url"}`', _health),
    AdminRoute("GET", "/users", _NONE, '200 `{"identifiers": [...]}` in paging order', _list_users),
    AdminRoute(
        "POST",
        "/users",
        '`{"identifier": "...", "attributes": {...}}`, plus optional top-level fields '
        "(`installs`, `lastActive`...)",
        "201 the new user; 409 if it exists",
        _add_user,
    ),
    AdminRoute("GET", "/users/{id}", _NONE, "200 the full user; 404 if unknown", _get_user),
    AdminRoute("DELETE", "/users/{id}", _NONE, "204; 404 if unknown", _remove_user),
    AdminRoute(
        "PUT",
        "/users/{id}/attributes",
        'the attribute object, e.g. `{"tier": "gold"}`',
        "replaces the user's attributes: 200 the user; 201 the new user when it did not exist "
        "(like the API's PUT)",
        _set_attributes,
    ),
    AdminRoute(
        "GET",
        "/requests",
        _NONE,
        '200 `{"requests": [...]}`: method, raw and decoded path, query, headers, body, status, fault',
        _list_requests,
    ),
    AdminRoute(
        "DELETE",
        "/requests",
        _NONE,
        "204: the request log emptied and the `/stats` counts zeroed (users and faults stay)",
        _clear_requests,
    ),
    AdminRoute(
        "POST",
        "/faults",
        "any of `script` (list of faults, with `method`, `path_prefix`, `page`), `rates`, `latency`, "
        '`reject` (`{"id": [status, body]}`), `drift` (`after_requests`, `add`, `remove`), '
        "`outage` (`seconds`, `status`)",
        "204",
        _set_faults,
    ),
    AdminRoute(
        "DELETE", "/faults", _NONE, "204: no faults, rejections, drift or added latency", _clear_faults
    ),
    AdminRoute(
        "POST",
        "/reset",
        '`{"users": N, "seed": S}` (both optional)',
        '200 `{"users": N}`: users regenerated, faults and log cleared',
        _reset,
    ),
    AdminRoute(
        "GET",
        "/stats",
        _NONE,
        "200 request counts by method and status and injected faults, since the start or the last "
        "`DELETE /_emulator/requests` or reset; users; pending faults",
        _stats,
    ),
)


def routes_markdown() -> str:
    """The admin routes as a Markdown table (the README carries exactly this)."""
    lines = ["| method | path | body | answer |", "| --- | --- | --- | --- |"]
    lines += [
        f"| `{route.method}` | `{ADMIN_PREFIX}{route.path}` | {route.body} | {route.answer} |"
        for route in ADMIN_ROUTES
    ]
    return "\n".join(lines) + "\n"


def _route(request: Request, emulator: EmulatorControl) -> Response:
    """Dispatch on ``(method, path)``; raises ValueError/TypeError/KeyError for bad input."""
    route = request.segments[2:]
    path_known = False
    for candidate in ADMIN_ROUTES:
        ids = candidate.matches(route)
        if ids is None:
            continue
        if candidate.method == request.method:
            return candidate.handler(emulator, request, ids)
        path_known = True
    if path_known:
        return Response.error(405, f"{request.method} not allowed on {request.path}")
    return Response.error(404, f"No admin route {request.path}")


def handle_admin(request: Request, emulator: EmulatorControl) -> Response:
    """Answer one admin request; bad input is a 422 with the reason."""
    try:
        return _route(request, emulator)
    except (ValueError, TypeError, KeyError) as exc:
        return Response.json(422, {"errors": {"body": [str(exc)]}})
