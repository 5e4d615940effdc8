"""The Kumulos CRM emulator, exercised over real sockets with plain HTTP clients."""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import ssl
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import requests

from airflow_provider_kumulos.testing.emulator import Fault, KumulosEmulator, make_self_signed_cert

ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00$")
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
REFERENCE = datetime.fromisoformat("2026-11-01T00:00:00+00:00")
INSTALL_FIELDS = {
    "id",
    "subscribedToPushNotifications",
    "os",
    "osVersion",
    "sdkType",
    "sdkVersion",
    "lastActive",
    "appVersion",
    "countryIsoCode",
    "timezone",
    "locale",
    "deviceModel",
    "deviceName",
}
USER_FIELDS = {
    "identifier",
    "attributes",
    "firstActive",
    "lastActive",
    "inAppEnabled",
    "createdAt",
    "updatedAt",
    "installs",
}


@pytest.fixture
def emu() -> Iterator[KumulosEmulator]:
    with KumulosEmulator(users=120, seed=7) as emulator:
        yield emulator


@pytest.fixture
def api(emu: KumulosEmulator) -> Iterator[requests.Session]:
    """An authenticated keep-alive session."""
    with requests.Session() as session:
        session.auth = (emu.api_key, emu.server_key)
        session.headers.update({"Accept": "application/json"})
        yield session


def attributes_url(emu: KumulosEmulator, identifier: str) -> str:
    return f"{emu.base_url}/v1/users/{quote(identifier, safe='')}/attributes"


def page(emu: KumulosEmulator, session: requests.Session, current: int, per: int) -> dict[str, Any]:
    response = session.get(f"{emu.base_url}/v2/users", params={"currentPage": current, "numberPerPage": per})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


# -- users pages -------------------------------------------------------------------------------


def test_users_page_has_documented_shape(emu: KumulosEmulator, api: requests.Session) -> None:
    response = api.get(f"{emu.base_url}/v2/users?currentPage=1&numberPerPage=50")
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/json"
    assert int(response.headers["Content-Length"]) == len(response.content)
    body = response.json()
    assert set(body) == {"users", "totalUsers", "currentPage"}
    assert (body["totalUsers"], body["currentPage"], len(body["users"])) == (120, 1, 50)
    for user in body["users"]:
        assert set(user) == USER_FIELDS
        assert isinstance(user["attributes"], dict) and isinstance(user["inAppEnabled"], bool)
        stamps = [user[key] for key in ("firstActive", "lastActive", "createdAt", "updatedAt")]
        assert 1 <= len(user["installs"]) <= 3
        for install in user["installs"]:
            assert set(install) == INSTALL_FIELDS
            assert install["os"] in {"iOS", "Android"}
            assert UUID.match(install["id"])
            stamps.append(install["lastActive"])
        for stamp in stamps:
            assert ISO.match(stamp), stamp
            assert REFERENCE - timedelta(days=121) <= datetime.fromisoformat(stamp) <= REFERENCE
        assert user["createdAt"] <= user["firstActive"] <= user["lastActive"]
        assert user["createdAt"] <= user["updatedAt"]
    # Compact ASCII JSON, byte for byte what json.dumps would write for the same data.
    assert json.dumps(body, separators=(",", ":")).encode() == response.content


def test_paging_covers_every_user_once_in_order(emu: KumulosEmulator, api: requests.Session) -> None:
    seen: list[str] = []
    for current in range(1, 19):
        body = page(emu, api, current, 7)
        assert body["totalUsers"] == 120 and body["currentPage"] == current
        assert len(body["users"]) == (7 if current < 18 else 120 - 17 * 7)
        seen += [user["identifier"] for user in body["users"]]
    assert seen == emu.user_ids()
    assert len(set(seen)) == 120
    past_end = page(emu, api, 19, 7)
    assert past_end == {"users": [], "totalUsers": 120, "currentPage": 19}
    assert len(page(emu, api, 1, 1000)["users"]) == 120


def test_page_users_match_direct_state(emu: KumulosEmulator, api: requests.Session) -> None:
    body = page(emu, api, 2, 40)
    assert body["users"] == [emu.get_user(user["identifier"]) for user in body["users"]]
    assert body["users"] == emu.users()[40:80]


@pytest.mark.parametrize(
    ("query", "errors"),
    [
        ("", {"currentPage": ["is required"], "numberPerPage": ["is required"]}),
        ("?currentPage=1", {"numberPerPage": ["is required"]}),
        ("?currentPage=x&numberPerPage=10", {"currentPage": ["must be an integer"]}),
        ("?currentPage=1.5&numberPerPage=10", {"currentPage": ["must be an integer"]}),
        ("?currentPage=0&numberPerPage=10", {"currentPage": ["must be at least 1"]}),
        ("?currentPage=1&numberPerPage=0", {"numberPerPage": ["must be at least 1"]}),
        ("?currentPage=1&numberPerPage=1001", {"numberPerPage": ["must be at most 1000"]}),
        (
            "?currentPage=-1&numberPerPage=",
            {"currentPage": ["must be at least 1"], "numberPerPage": ["must be an integer"]},
        ),
    ],
)
def test_bad_page_parameters_are_422_naming_the_keys(
    emu: KumulosEmulator, api: requests.Session, query: str, errors: dict[str, list[str]]
) -> None:
    response = api.get(f"{emu.base_url}/v2/users{query}")
    assert response.status_code == 422
    assert response.json() == {"errors": errors}


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Basic !!not-base64!!"},
        {"Authorization": "Bearer dGVzdC1hcGkta2V5OnRlc3Qtc2VydmVyLWtleQ=="},
        {"Authorization": "Basic dGVzdC1hcGkta2V5"},  # "test-api-key" without ":password"
    ],
    ids=["missing", "not-base64", "wrong-scheme", "no-password"],
)
@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v2/users?currentPage=1&numberPerPage=1"),
        ("GET", "/v1/users/user-000001/attributes"),
        ("PUT", "/v1/users/user-000001/attributes"),
        ("DELETE", "/v1/users/user-000001/attributes"),
        ("POST", "/nowhere"),
    ],
)
def test_missing_or_malformed_auth_is_401_everywhere(
    emu: KumulosEmulator, method: str, path: str, headers: dict[str, str]
) -> None:
    response = requests.request(method, emu.base_url + path, headers=headers, json={"a": 1})
    assert response.status_code == 401
    assert response.json()["error"] == "Unauthorized"
    assert emu.get_attributes("user-000001") != {"a": 1}


@pytest.mark.parametrize("auth", [("test-api-key", "wrong"), ("wrong", "test-server-key")])
def test_wrong_keys_are_401(emu: KumulosEmulator, auth: tuple[str, str]) -> None:
    response = requests.get(f"{emu.base_url}/v2/users?currentPage=1&numberPerPage=1", auth=auth)
    assert response.status_code == 401


def test_unknown_paths_are_404_and_wrong_methods_405(emu: KumulosEmulator, api: requests.Session) -> None:
    for path in ["/v1/users", "/v2/users/user-000001", "/v1/users/user-000001", "/v1/users//attributes"]:
        response = api.get(emu.base_url + path)
        assert response.status_code == 404, path
        assert response.json()["status"] == 404
    assert api.get(f"{emu.base_url}/v1/users/a/b/attributes").status_code == 404  # unencoded "/"
    response = api.post(f"{emu.base_url}/v2/users?currentPage=1&numberPerPage=1")
    assert (response.status_code, response.headers["Allow"]) == (405, "GET")
    response = api.patch(attributes_url(emu, "user-000001"), json={})
    assert (response.status_code, response.headers["Allow"]) == (405, "GET, PUT, DELETE")


# -- attributes --------------------------------------------------------------------------------


def test_get_attributes(emu: KumulosEmulator, api: requests.Session) -> None:
    ids = emu.user_ids()
    for identifier in ids[:20]:
        response = api.get(attributes_url(emu, identifier))
        assert response.status_code == 200
        assert response.json() == emu.get_user(identifier)["attributes"]  # type: ignore[index]
    missing = api.get(attributes_url(emu, "nobody"))
    assert missing.status_code == 404 and missing.json()["status"] == 404


def test_put_replaces_attributes_and_refreshes_pages(emu: KumulosEmulator, api: requests.Session) -> None:
    identifier = emu.user_ids()[0]
    before = emu.get_user(identifier)
    assert before is not None
    page(emu, api, 1, 10)  # rendered and cached
    response = api.put(attributes_url(emu, identifier), json={"tier": "gold", "n": 2})
    assert response.status_code == 200
    assert response.json() == {"identifier": identifier, "attributes": {"tier": "gold", "n": 2}}
    after = emu.get_user(identifier)
    assert after is not None
    assert after["attributes"] == {"tier": "gold", "n": 2}  # replaced, old keys gone
    assert after["createdAt"] == before["createdAt"] and after["installs"] == before["installs"]
    assert abs(datetime.now(timezone.utc) - datetime.fromisoformat(after["updatedAt"])) < timedelta(minutes=1)
    assert page(emu, api, 1, 10)["users"][0]["attributes"] == {"tier": "gold", "n": 2}


def test_put_creates_missing_user_at_the_end(emu: KumulosEmulator, api: requests.Session) -> None:
    response = api.put(attributes_url(emu, "brand-new"), json={"name": "Mark", "isCustomer": True, "age": 40})
    assert response.status_code == 200
    user = emu.get_user("brand-new")
    assert user is not None
    assert set(user) == USER_FIELDS
    assert user["installs"] == [] and user["createdAt"] == user["updatedAt"]
    assert ISO.match(user["createdAt"])
    assert emu.user_ids()[-1] == "brand-new"
    last = page(emu, api, 1, 1000)
    assert last["totalUsers"] == 121 and last["users"][-1] == user


@pytest.mark.parametrize(
    "body",
    [b"", b"{not json", b"[1, 2]", b'"text"', b"null", b'{"x": NaN}', b'{"x": "\xff"}'],
    ids=["empty", "malformed", "array", "string", "null", "nan", "bad-utf8"],
)
def test_put_needs_a_json_object(emu: KumulosEmulator, api: requests.Session, body: bytes) -> None:
    response = api.put(
        attributes_url(emu, "someone"), data=body, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 422
    assert "body" in response.json()["errors"]
    assert emu.get_user("someone") is None


def test_put_accepts_a_chunked_body(emu: KumulosEmulator, api: requests.Session) -> None:
    chunks = iter([b'{"a": ', b'[1, {"b": null}]}'])
    response = api.put(attributes_url(emu, "chunky"), data=chunks)
    assert response.status_code == 200
    assert emu.get_attributes("chunky") == {"a": [1, {"b": None}]}
    assert emu.requests[-1].headers["transfer-encoding"] == "chunked"


def test_delete_clears_attributes_and_a_repeat_is_400(emu: KumulosEmulator, api: requests.Session) -> None:
    identifier = next(i for i in emu.user_ids() if emu.get_attributes(i))
    response = api.delete(attributes_url(emu, identifier))
    assert (response.status_code, response.content) == (204, b"")
    assert "Content-Length" not in response.headers
    assert emu.get_attributes(identifier) == {}
    assert api.get(attributes_url(emu, identifier)).json() == {}
    assert identifier in emu.user_ids()  # the user stays
    repeat = api.delete(attributes_url(emu, identifier))
    assert repeat.status_code == 400 and repeat.json()["status"] == 400
    assert api.put(attributes_url(emu, identifier), json={"k": 1}).status_code == 200
    assert api.delete(attributes_url(emu, identifier)).status_code == 204
    missing = api.delete(attributes_url(emu, "nobody"))
    assert missing.status_code == 400 and "nobody" in missing.json()["message"]


@pytest.mark.parametrize(
    "identifier", ["a/b", "50%", "what?x=1", "hash#tag", "with space", "plus+sign", "ünïcødé ✓", "%2F"]
)
def test_encoded_identifiers_land_on_the_right_user(
    emu: KumulosEmulator, api: requests.Session, identifier: str
) -> None:
    url = attributes_url(emu, identifier)
    assert api.put(url, json={"id": identifier}).status_code == 200
    assert emu.get_attributes(identifier) == {"id": identifier}
    assert api.get(url).json() == {"id": identifier}
    assert api.delete(url).status_code == 204
    entries = emu.requests
    assert [entry.identifier for entry in entries] == [identifier] * 3
    raw_segment = quote(identifier, safe="")
    assert entries[0].raw_path == f"/v1/users/{raw_segment}/attributes"
    assert entries[0].path == f"/v1/users/{identifier}/attributes"
    assert entries[0].query == {}
    assert emu.user_ids().count(identifier) == 1


def test_dot_segments_are_identifiers_when_encoded(emu: KumulosEmulator) -> None:
    # Clients normalise a literal ".." away, so it has to travel as %2E%2E.
    conn = http.client.HTTPConnection("127.0.0.1", emu.port, timeout=5)
    headers = {"Authorization": requests.auth._basic_auth_str(emu.api_key, emu.server_key)}
    conn.request("PUT", "/v1/users/%2E%2E/attributes", body=b'{"dots": 2}', headers=headers)
    assert json.loads(conn.getresponse().read()) == {"identifier": "..", "attributes": {"dots": 2}}
    conn.close()
    assert emu.get_attributes("..") == {"dots": 2}
    assert (emu.requests[0].raw_path, emu.requests[0].path) == (
        "/v1/users/%2E%2E/attributes",
        "/v1/users/../attributes",
    )


def test_request_log_records_everything(emu: KumulosEmulator, api: requests.Session) -> None:
    api.put(attributes_url(emu, "logged"), json={"a": 1}, headers={"X-Trace": "t1"})
    api.get(f"{emu.base_url}/v2/users?currentPage=2&numberPerPage=5&extra=a&extra=b")
    requests.get(f"{emu.base_url}/_emulator/health")  # admin calls are not logged
    put, get = emu.requests
    assert (put.method, put.status, put.fault, put.json()) == ("PUT", 200, None, {"a": 1})
    assert put.headers["x-trace"] == put.headers["X-TRACE"] == "t1"
    assert put.headers.get("Content-Type") == "application/json" and "AUTHORIZATION" in put.headers
    assert get.query == {"currentPage": ["2"], "numberPerPage": ["5"], "extra": ["a", "b"]}
    assert get.raw_path == "/v2/users?currentPage=2&numberPerPage=5&extra=a&extra=b"
    assert put.timestamp <= get.timestamp <= time.time()
    assert emu.stats()["requests"] == {"GET 200": 1, "PUT 200": 1}
    emu.clear_requests()
    assert emu.requests == []
    assert (emu.stats()["total"], emu.stats()["requests"], emu.stats()["faults"]) == (0, {}, {})


def test_keep_alive_reuses_one_connection(emu: KumulosEmulator) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", emu.port, timeout=5)
    headers = {"Authorization": requests.auth._basic_auth_str(emu.api_key, emu.server_key)}
    conn.request("GET", "/v2/users?currentPage=1&numberPerPage=3", headers=headers)
    first = conn.getresponse()
    first.read()
    sock = conn.sock
    for current in (2, 3):
        conn.request("GET", f"/v2/users?currentPage={current}&numberPerPage=3", headers=headers)
        response = conn.getresponse()
        assert response.status == 200 and json.loads(response.read())["currentPage"] == current
    assert conn.sock is sock and first.getheader("Connection") is None
    conn.close()


def test_stop_closes_open_keep_alive_connections() -> None:
    emulator = KumulosEmulator(users=3).start()
    conn = http.client.HTTPConnection("127.0.0.1", emulator.port, timeout=5)
    headers = {"Authorization": requests.auth._basic_auth_str(emulator.api_key, emulator.server_key)}
    conn.request("GET", "/v1/users/user-000001/attributes", headers=headers)
    response = conn.getresponse()
    assert response.status == 200 and json.loads(response.read())
    emulator.stop()
    emulator.stop()  # idempotent
    with pytest.raises((ConnectionError, http.client.HTTPException)):
        conn.request("GET", "/v1/users/user-000001/attributes", headers=headers)
        conn.getresponse()
    conn.close()
    assert len(emulator.requests) == 1


# -- generated data ----------------------------------------------------------------------------


def test_users_are_deterministic_by_seed() -> None:
    with KumulosEmulator(users=300, seed=3) as a, KumulosEmulator(users=300, seed=3) as b:
        assert a.users() == b.users()
        pages = [
            requests.get(
                f"{e.base_url}/v2/users?currentPage=2&numberPerPage=100", auth=(e.api_key, e.server_key)
            )
            for e in (a, b)
        ]
        assert pages[0].content == pages[1].content
    with KumulosEmulator(users=300, seed=4) as c:
        assert c.users() != a.users()


def test_users_are_varied() -> None:
    emulator = KumulosEmulator(users=2000, seed=1)  # state is usable without serving
    users = emulator.users()
    ids = [user["identifier"] for user in users]
    anonymous = [i for i in ids if UUID.match(i)]
    assert 0.03 < len(anonymous) / len(ids) < 0.08
    assert all(ident in anonymous or ident == f"user-{n + 1:06d}" for n, ident in enumerate(ids))
    assert len(set(ids)) == 2000
    attributes = [user["attributes"] for user in users]
    assert 0.05 < sum(not a for a in attributes) / len(attributes) < 0.25
    values = [v for a in attributes for v in a.values()]
    for kind in (bool, int, float, str, dict, list):
        assert any(type(v) is kind for v in values), kind
    assert {len(user["installs"]) for user in users} == {1, 2, 3}
    installs = [install for user in users for install in user["installs"]]
    assert {install["os"] for install in installs} == {"iOS", "Android"}
    assert len({install["id"] for install in installs}) == len(installs)
    assert {user["inAppEnabled"] for user in users} == {True, False}


def test_direct_state_access() -> None:
    emulator = KumulosEmulator(users=5)
    created = emulator.add_user("direct", {"a": 1}, installs=[{"id": "i-1"}], inAppEnabled=True)
    assert (
        created["attributes"] == {"a": 1}
        and created["installs"] == [{"id": "i-1"}]
        and created["inAppEnabled"]
    )
    created["attributes"]["a"] = 99  # copies, not the stored object
    assert emulator.get_attributes("direct") == {"a": 1}
    with pytest.raises(ValueError):
        emulator.add_user("direct")
    with pytest.raises(TypeError):
        emulator.add_user("other", bogus=1)
    emulator.set_attributes("direct", {"b": 2})
    emulator.set_attributes("fresh", {})
    assert emulator.get_attributes("direct") == {"b": 2}
    assert emulator.user_ids()[-2:] == ["direct", "fresh"]
    first = emulator.user_ids()[0]
    emulator.remove_user(first)
    assert emulator.get_user(first) is None and emulator.get_attributes(first) is None
    with pytest.raises(KeyError):
        emulator.remove_user(first)
    assert len(emulator.users()) == 6
    emulator.reset(users=8, seed=2)
    assert len(emulator.user_ids()) == 8 and emulator.get_user("direct") is None
    assert emulator.users() == KumulosEmulator(users=8, seed=2).users()


def test_connection_uri() -> None:
    with KumulosEmulator(users=1, api_key="K", server_key="S") as emulator:
        conn = json.loads(emulator.connection_uri(timeout=5, verify=False))
        assert conn == {
            "conn_type": "kumulos",
            "host": emulator.base_url,
            "login": "K",
            "password": "S",
            "extra": {"timeout": 5, "verify": False},
        }
        assert emulator.base_url == f"http://127.0.0.1:{emulator.port}"


# -- faults ------------------------------------------------------------------------------------


def test_status_faults_leave_state_alone(emu: KumulosEmulator, api: requests.Session) -> None:
    emu.script_faults([Fault.status_code(503), Fault.status_code(500)])
    response = api.put(attributes_url(emu, "user-000001"), json={"x": 1})
    assert response.status_code == 503 and response.json()["status"] == 503
    assert "Retry-After" not in response.headers
    assert api.get(attributes_url(emu, "user-000001")).status_code == 500
    assert emu.get_attributes("user-000001") != {"x": 1}
    assert [(e.status, e.fault) for e in emu.requests] == [(503, "status"), (500, "status")]


@pytest.mark.parametrize("retry_after", [7, "Wed, 21 Oct 2026 07:28:00 GMT"])
def test_rate_limit_sends_retry_after_verbatim(
    emu: KumulosEmulator, api: requests.Session, retry_after: int | str
) -> None:
    emu.script_faults([Fault.rate_limited(retry_after=retry_after), Fault.rate_limited()])
    limited = api.get(f"{emu.base_url}/v2/users?currentPage=1&numberPerPage=1")
    assert limited.status_code == 429 and limited.headers["Retry-After"] == str(retry_after)
    bare = api.get(f"{emu.base_url}/v2/users?currentPage=1&numberPerPage=1")
    assert bare.status_code == 429 and "Retry-After" not in bare.headers


def test_drop_loses_the_answer_of_a_processed_request(emu: KumulosEmulator, api: requests.Session) -> None:
    identifier = next(i for i in emu.user_ids() if emu.get_attributes(i))
    emu.script_faults([Fault.dropped()])
    with pytest.raises(requests.ConnectionError):
        api.delete(attributes_url(emu, identifier))
    assert emu.get_attributes(identifier) == {}
    assert api.delete(attributes_url(emu, identifier)).status_code == 400  # the retry
    assert [(e.status, e.fault) for e in emu.requests] == [(None, "drop"), (400, None)]


def test_slow_and_latency(emu: KumulosEmulator, api: requests.Session) -> None:
    url = f"{emu.base_url}/v2/users?currentPage=1&numberPerPage=2"
    emu.script_faults([Fault.slow(0.3)])
    started = time.monotonic()
    assert api.get(url).status_code == 200
    assert time.monotonic() - started >= 0.3
    emu.set_latency(0.2)
    started = time.monotonic()
    assert api.get(url).status_code == 200
    assert time.monotonic() - started >= 0.2
    assert requests.get(f"{emu.base_url}/_emulator/health").elapsed.total_seconds() < 0.2
    emu.set_latency(0)
    assert [e.fault for e in emu.requests] == ["slow", None]


def test_truncated_non_json_and_missing_field(emu: KumulosEmulator, api: requests.Session) -> None:
    url = f"{emu.base_url}/v2/users?currentPage=1&numberPerPage=20"
    full = api.get(url).content
    emu.script_faults(
        [Fault.truncated(), Fault.non_json(), Fault.missing_field(), Fault.missing_field("totalUsers")]
    )
    truncated = api.get(url)
    assert truncated.status_code == 200
    assert truncated.content == full[: len(full) // 2]
    assert int(truncated.headers["Content-Length"]) == len(full) // 2
    with pytest.raises(ValueError):
        truncated.json()
    html = api.get(url)
    assert html.status_code == 200 and html.headers["Content-Type"].startswith("text/html")
    assert html.text.startswith("<!DOCTYPE html>")
    no_users = api.get(url).json()
    assert "users" not in no_users and no_users["totalUsers"] == 120
    no_total = api.get(url).json()
    assert "totalUsers" not in no_total and len(no_total["users"]) == 20
    assert api.get(url).content == full  # script used up: normal again
    assert emu.stats()["faults"] == {"missing_field": 2, "non_json": 1, "truncated": 1}


def test_replace_field_gives_a_field_the_wrong_type(emu: KumulosEmulator, api: requests.Session) -> None:
    url = f"{emu.base_url}/v2/users?currentPage=1&numberPerPage=20"
    user_id = emu.user_ids()[0]
    emu.script_faults([Fault.replaced_field("totalUsers", "120"), Fault.replaced_field("users", {"a": 1})])
    assert api.get(url).json()["totalUsers"] == "120"
    wrong_users = api.get(url).json()
    assert wrong_users["users"] == {"a": 1} and wrong_users["totalUsers"] == 120
    emu.script_faults([Fault.replaced_field("attributes", "text")], method="PUT")
    put = api.put(f"{emu.base_url}/v1/users/{user_id}/attributes", json={"k": 1})
    assert put.json() == {"identifier": user_id, "attributes": "text"}
    assert emu.get_attributes(user_id) == {"k": 1}  # the request itself was processed
    assert Fault.from_dict(Fault.replaced_field("users", 5).to_dict()) == Fault.replaced_field("users", 5)
    with pytest.raises(ValueError, match="needs the field"):
        Fault("replace_field")


def test_script_filters_by_method_and_path(emu: KumulosEmulator, api: requests.Session) -> None:
    emu.script_faults(
        [Fault.status_code(502), Fault.status_code(504)], method="PUT", path_prefix="/v1/users/"
    )
    users_url = f"{emu.base_url}/v2/users?currentPage=1&numberPerPage=1"
    assert api.get(users_url).status_code == 200
    assert api.get(attributes_url(emu, "user-000001")).status_code == 200
    assert api.put(attributes_url(emu, "p"), json={}).status_code == 502
    assert api.put(attributes_url(emu, "p"), json={}).status_code == 504
    assert api.put(attributes_url(emu, "p"), json={}).status_code == 200
    assert emu.stats()["pending_faults"] == 0


def test_script_can_target_one_users_page_whatever_the_arrival_order(
    emu: KumulosEmulator, api: requests.Session
) -> None:
    emu.script_faults([Fault.status_code(503), Fault.status_code(401)], page=3)

    def page(number: int) -> int:
        return api.get(f"{emu.base_url}/v2/users?currentPage={number}&numberPerPage=10").status_code

    assert [page(4), page(2), page(3), page(1), page(3), page(3)] == [200, 200, 503, 200, 401, 200]
    assert api.get(attributes_url(emu, "user-000001")).status_code == 200
    emu.script_faults([Fault.status_code(502)], page=2)
    assert (
        requests.post(
            f"{emu.base_url}/_emulator/faults",
            json={"script": [{"kind": "status", "status": 500}], "page": 5},
        ).status_code
        == 204
    )
    assert [page(5), page(2), page(5)] == [500, 502, 200]
    assert emu.stats()["pending_faults"] == 0


def test_random_fault_rates_are_seeded(emu: KumulosEmulator, api: requests.Session) -> None:
    url = f"{emu.base_url}/v1/users/user-000001/attributes"

    def run() -> list[int]:
        emu.set_fault_rates(error_5xx=0.3, rate_limit=0.2, retry_after=3, seed=11)
        return [api.get(url).status_code for _ in range(150)]

    first = run()
    assert run() == first
    assert set(first) <= {200, 429, 500, 502, 503, 504}
    assert 20 < first.count(429) < 55 and 25 < sum(s >= 500 for s in first) < 70
    emu.set_fault_rates()
    assert {api.get(url).status_code for _ in range(20)} == {200}
    with pytest.raises(ValueError):
        emu.set_fault_rates(error_5xx=0.7, drop=0.5)


def test_outage_answers_every_request_until_it_is_over(emu: KumulosEmulator, api: requests.Session) -> None:
    emu.script_faults([Fault.status_code(500)])
    emu.start_outage(0.6)
    users = f"{emu.base_url}/v2/users?currentPage=1&numberPerPage=5"
    during = [api.get(users), api.put(attributes_url(emu, "user-000002"), json={"x": 1})]
    assert [(r.status_code, r.json()["status"]) for r in during] == [(503, 503), (503, 503)]
    assert emu.get_attributes("user-000002") != {"x": 1}, "a request during the outage changed state"
    assert requests.get(f"{emu.base_url}/_emulator/health").status_code == 200  # admin API stays up
    time.sleep(0.7)
    assert api.get(users).status_code == 500, "the scripted fault waited for the outage to end"
    assert api.get(users).status_code == 200
    logged = [(e.status, e.fault) for e in emu.requests]
    assert logged == [(503, "status"), (503, "status"), (500, "status"), (200, None)]


def test_outage_over_the_admin_api_and_ended_early(emu: KumulosEmulator, api: requests.Session) -> None:
    users = f"{emu.base_url}/v2/users?currentPage=1&numberPerPage=5"
    faults = f"{emu.base_url}/_emulator/faults"
    assert requests.post(faults, json={"outage": {"seconds": 30, "status": 502}}).status_code == 204
    assert api.get(users).status_code == 502
    emu.start_outage(0)
    assert api.get(users).status_code == 200
    assert requests.post(faults, json={"outage": {"seconds": 30}}).status_code == 204
    assert api.get(users).status_code == 503
    assert requests.delete(faults).status_code == 204
    assert api.get(users).status_code == 200
    for bad in ({"seconds": -1}, {"seconds": 5, "status": 99}, {"minutes": 1}):
        answer = requests.post(faults, json={"outage": bad})
        assert answer.status_code == 422, bad
    assert api.get(users).status_code == 200


def test_faults_never_touch_the_admin_api(emu: KumulosEmulator) -> None:
    emu.script_faults([Fault.dropped()])
    emu.set_fault_rates(error_5xx=1.0)
    emu.set_latency(1.0)
    started = time.monotonic()
    assert requests.get(f"{emu.base_url}/_emulator/health").status_code == 200
    assert time.monotonic() - started < 0.5
    assert emu.stats()["pending_faults"] == 1 and emu.requests == []


def test_reject_users(emu: KumulosEmulator, api: requests.Session) -> None:
    emu.reject_users({"user-000007": (422, {"errors": {"name": ["invalid"]}}), "gone": (404, {"error": "x"})})
    for method in ("GET", "PUT", "DELETE", "PUT"):
        response = api.request(method, attributes_url(emu, "user-000007"), json={"name": 1})
        assert (response.status_code, response.json()) == (422, {"errors": {"name": ["invalid"]}})
    assert api.get(attributes_url(emu, "gone")).status_code == 404
    assert api.get(attributes_url(emu, "user-000008")).status_code == 200
    assert emu.get_attributes("user-000007") != {"name": 1}
    assert [e.fault for e in emu.requests][:4] == ["reject"] * 4
    emu.reject_users({})
    assert api.get(attributes_url(emu, "user-000007")).status_code == 200


def test_drift_changes_the_set_between_pages(emu: KumulosEmulator, api: requests.Session) -> None:
    emu.schedule_drift(after_requests=1, add=["drifter"], remove=["user-000002"])
    first = page(emu, api, 1, 10)
    assert first["totalUsers"] == 120 and emu.get_user("drifter") is not None
    assert emu.get_user("user-000002") is None
    assert page(emu, api, 1, 1000)["totalUsers"] == 120
    assert emu.get_user("drifter")["installs"]  # type: ignore[index]


def test_random_drift_makes_a_paging_client_see_shifts() -> None:
    with KumulosEmulator(users=200, seed=5) as emulator, requests.Session() as session:
        session.auth = (emulator.api_key, emulator.server_key)
        emulator.schedule_drift(after_requests=2, add=30, remove=10)
        seen: list[str] = []
        totals = []
        for current in range(1, 12):
            body = page(emulator, session, current, 20)
            totals.append(body["totalUsers"])
            seen += [user["identifier"] for user in body["users"]]
        assert totals[:2] == [200, 200] and set(totals[2:]) == {220}
        final = emulator.user_ids()
        assert len(final) == 220 and len(set(final)) == 220
        # Shifting pages: the client saw duplicates, or missed users that exist.
        assert len(seen) != len(set(seen)) or set(final) - set(seen)


# -- admin API ---------------------------------------------------------------------------------


def test_admin_api(emu: KumulosEmulator, api: requests.Session) -> None:
    admin = f"{emu.base_url}/_emulator"
    assert requests.get(f"{admin}/health").json() == {"status": "ok", "users": 120, "base_url": emu.base_url}
    assert requests.get(f"{admin}/users").json() == {"identifiers": emu.user_ids()}
    first = emu.user_ids()[0]
    assert requests.get(f"{admin}/users/{first}").json() == emu.get_user(first)
    assert requests.get(f"{admin}/users/nobody").status_code == 404

    created = requests.post(f"{admin}/users", json={"identifier": "a/b", "attributes": {"x": 1}})
    assert created.status_code == 201 and created.json()["attributes"] == {"x": 1}
    assert requests.post(f"{admin}/users", json={"identifier": "a/b"}).status_code == 409
    assert requests.post(f"{admin}/users", json={"attributes": {}}).status_code == 422
    assert requests.get(f"{admin}/users/a%2Fb").json()["identifier"] == "a/b"
    assert requests.delete(f"{admin}/users/a%2Fb").status_code == 204
    assert requests.delete(f"{admin}/users/a%2Fb").status_code == 404

    api.put(attributes_url(emu, "logged"), json={"é": "ü"})
    log = requests.get(f"{admin}/requests").json()["requests"]
    assert [(r["method"], r["status"], r["body"]) for r in log] == [("PUT", 200, '{"\\u00e9": "\\u00fc"}')]
    assert requests.delete(f"{admin}/requests").status_code == 204 and emu.requests == []

    faults = {
        "script": [{"kind": "status", "status": 429, "retry_after": 2}, {"kind": "drop"}],
        "method": "GET",
        "reject": {"bad": [400, {"errors": {"id": ["bad"]}}]},
        "latency": 0.0,
    }
    assert requests.post(f"{admin}/faults", json=faults).status_code == 204
    limited = api.get(attributes_url(emu, first))
    assert (limited.status_code, limited.headers["Retry-After"]) == (429, "2")
    with pytest.raises(requests.ConnectionError):
        api.get(attributes_url(emu, first))
    assert api.put(attributes_url(emu, "bad"), json={}).status_code == 400
    assert requests.post(f"{admin}/faults", json={"rates": {"error_5xx": 1.0}}).status_code == 204
    assert api.get(attributes_url(emu, first)).status_code >= 500
    assert requests.delete(f"{admin}/faults").status_code == 204
    assert api.put(attributes_url(emu, "bad"), json={}).status_code == 200
    assert requests.post(f"{admin}/faults", json={"script": [{"kind": "nope"}]}).status_code == 422
    assert requests.post(f"{admin}/faults", json={"unknown": 1}).status_code == 422
    drift = {"drift": {"after_requests": 1, "add": ["late"]}}
    assert requests.post(f"{admin}/faults", json=drift).status_code == 204
    page(emu, api, 1, 1)
    assert emu.get_user("late") is not None

    stats = requests.get(f"{admin}/stats").json()
    assert stats["faults"] == {"drop": 1, "reject": 1, "status": 2}
    assert stats["requests"]["GET 429"] == 1 and stats["requests"]["GET dropped"] == 1
    assert stats["total"] == len(requests.get(f"{admin}/requests").json()["requests"])

    # Emptying the request log zeroes the counts too: the log and /stats describe the same requests.
    assert requests.delete(f"{admin}/requests").status_code == 204
    assert requests.get(f"{admin}/requests").json() == {"requests": []}
    cleared = requests.get(f"{admin}/stats").json()
    assert (cleared["total"], cleared["requests"], cleared["faults"]) == (0, {}, {})
    assert cleared["users"] == stats["users"]
    page(emu, api, 1, 1)
    assert requests.get(f"{admin}/stats").json()["requests"] == {"GET 200": 1}
    assert len(requests.get(f"{admin}/requests").json()["requests"]) == 1

    reset = requests.post(f"{admin}/reset", json={"users": 10, "seed": 9})
    assert reset.json() == {"users": 10}
    assert emu.users() == KumulosEmulator(users=10, seed=9).users()
    assert requests.get(f"{admin}/stats").json()["total"] == 0
    assert requests.get(f"{admin}/nope").status_code == 404
    assert requests.put(f"{admin}/stats").status_code == 405


# -- process, TLS, concurrency, pytest plugin --------------------------------------------------


def test_cli_serves_until_sigterm(tmp_path: Path) -> None:
    ready = tmp_path / "ready.txt"
    command = [sys.executable, "-m", "airflow_provider_kumulos.testing.emulator", "--port", "0"]
    command += ["--users", "25", "--api-key", "K", "--server-key", "S", "--ready-file", str(ready)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 20
        while not ready.exists():
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline, "emulator did not start"
            time.sleep(0.05)
        base_url = ready.read_text()
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+", base_url)
        assert process.stdout is not None
        assert process.stdout.readline() == f"Kumulos CRM emulator listening on {base_url} (25 users)\n"
        body = requests.get(f"{base_url}/v2/users?currentPage=1&numberPerPage=100", auth=("K", "S")).json()
        assert body["totalUsers"] == 25
        assert requests.get(f"{base_url}/v2/users?currentPage=1&numberPerPage=1").status_code == 401
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
        assert not ready.exists()
        assert process.stderr is not None and process.stderr.read() == ""
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_tls_with_self_signed_cert(tmp_path: Path) -> None:
    cert, key = make_self_signed_cert(tmp_path / "tls")
    with KumulosEmulator(users=4, tls_cert=cert, tls_key=key) as emulator:
        assert emulator.base_url.startswith("https://127.0.0.1:")
        url = f"{emulator.base_url}/v2/users?currentPage=1&numberPerPage=10"
        auth = (emulator.api_key, emulator.server_key)
        assert requests.get(url, auth=auth, verify=cert).json()["totalUsers"] == 4
        localhost = url.replace("127.0.0.1", "localhost")
        assert requests.get(localhost, auth=auth, verify=cert).status_code == 200
        context = ssl.create_default_context(cafile=cert)
        with urllib.request.urlopen(f"{emulator.base_url}/_emulator/health", context=context) as response:
            assert json.load(response)["status"] == "ok"
        with pytest.raises(requests.exceptions.SSLError):
            requests.get(url, auth=auth)  # not trusted without the certificate
        with pytest.raises(requests.ConnectionError):
            requests.get(url.replace("https://", "http://"), auth=auth, timeout=5)
        assert requests.get(url, auth=auth, verify=cert).status_code == 200  # still serving


def test_many_concurrent_clients(emu: KumulosEmulator) -> None:
    failures: list[str] = []

    def client(worker: int) -> None:
        with requests.Session() as session:
            session.auth = (emu.api_key, emu.server_key)
            for n in range(50):
                if n % 3 == 0:
                    response = session.put(attributes_url(emu, f"w{worker}"), json={"n": n})
                elif n % 3 == 1:
                    response = session.get(attributes_url(emu, f"w{worker}"))
                else:
                    response = session.get(
                        f"{emu.base_url}/v2/users?currentPage={n % 7 + 1}&numberPerPage=20"
                    )
                if response.status_code != 200:
                    failures.append(f"{worker}/{n}: {response.status_code}")

    threads = [threading.Thread(target=client, args=(worker,)) for worker in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert failures == []
    assert len(emu.requests) == 800 and emu.stats()["requests"] == {"GET 200": 528, "PUT 200": 272}
    assert all(emu.get_attributes(f"w{worker}") == {"n": 48} for worker in range(16))


def test_large_population_starts_fast() -> None:
    started = time.monotonic()
    with KumulosEmulator(users=500_000) as emulator:
        assert time.monotonic() - started < 10
        last = requests.get(
            f"{emulator.base_url}/v2/users?currentPage=500&numberPerPage=1000",
            auth=(emulator.api_key, emulator.server_key),
        ).json()
        assert last["totalUsers"] == 500_000 and len(last["users"]) == 1000
        assert last["users"][-1]["identifier"] == emulator.user_ids()[-1]


def test_pytest_plugin_fixtures(kumulos_connection: KumulosEmulator) -> None:
    assert os.environ["AIRFLOW_CONN_KUMULOS_DEFAULT"] == kumulos_connection.connection_uri()
    assert len(kumulos_connection.user_ids()) == 50
    health = requests.get(f"{kumulos_connection.base_url}/_emulator/health").json()
    assert health["users"] == 50


def _nested(levels: int) -> dict[str, Any]:
    """An attribute object ``levels`` objects and arrays deep."""
    value: Any = "leaf"
    for level in range(levels - 1):
        value = [value] if level % 2 else {"k": value}
    return {"deep": value}


def test_attributes_nested_deeper_than_the_bound_are_422_whatever_the_thread(
    emu: KumulosEmulator, api: requests.Session
) -> None:
    from airflow_provider_kumulos.testing._emulator_api import MAX_NESTING

    deep = api.put(attributes_url(emu, "user-000001"), data=json.dumps(_nested(MAX_NESTING + 1)))
    assert (deep.status_code, deep.json()) == (422, {"errors": {"body": ["is nested too deeply"]}})
    ok = api.put(attributes_url(emu, "user-000002"), data=json.dumps(_nested(MAX_NESTING)))
    assert ok.status_code == 200
    # What was stored can be read back from any thread, however deep its own stack already is.
    assert emu.get_attributes("user-000002") == _nested(MAX_NESTING)
