"""Every public hook method against the emulator, over real sockets: results and what was sent."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable

import pytest

from airflow_provider_kumulos.exceptions import KumulosInputError, KumulosUserNotFoundError
from airflow_provider_kumulos.hooks.kumulos import KumulosCRMHook
from airflow_provider_kumulos.testing.emulator import KumulosEmulator, RecordedRequest

Received = Callable[..., list[RecordedRequest]]


def test_requests_carry_json_headers_and_basic_auth(
    hook: KumulosCRMHook, kumulos_emulator: KumulosEmulator, received: Received, user_id: str
) -> None:
    hook.get_attributes(user_id)
    (sent,) = received()
    assert sent.headers["Content-Type"] == "application/json"
    assert sent.headers["Accept"] == "application/json"
    token = base64.b64encode(f"{kumulos_emulator.api_key}:{kumulos_emulator.server_key}".encode()).decode()
    assert sent.headers["Authorization"] == f"Basic {token}"


def test_get_users_page_returns_the_documented_dict(
    hook: KumulosCRMHook, kumulos_emulator: KumulosEmulator, received: Received
) -> None:
    result = hook.get_users_page(2, 10)
    assert result["totalUsers"] == 50 and result["currentPage"] == 2
    assert [user["identifier"] for user in result["users"]] == kumulos_emulator.user_ids()[10:20]
    (sent,) = received()
    assert sent.path == "/v2/users" and sent.query == {"currentPage": ["2"], "numberPerPage": ["10"]}


def test_fetch_users_page_raw_keeps_each_user_as_sent(
    hook: KumulosCRMHook, kumulos_emulator: KumulosEmulator
) -> None:
    page = hook.fetch_users_page(1, 5, raw=True)
    assert page.total_users == 50 and page.page == 1 and page.per_page == 5 and page.nbytes > 0
    assert [json.loads(bytes(user)) for user in page.users] == kumulos_emulator.users()[:5]


def test_iter_users_yields_every_user_once_and_stops_at_total_users(
    hook: KumulosCRMHook, kumulos_emulator: KumulosEmulator, received: Received
) -> None:
    ids = [user["identifier"] for user in hook.iter_users(per_page=7)]
    assert ids == kumulos_emulator.user_ids()
    assert len(set(ids)) == 50
    # ceil(50 / 7) = 8 pages and not one request more: the 8th page reaches totalUsers.
    assert [r.query["currentPage"] for r in received()] == [[str(n)] for n in range(1, 9)]


def test_iter_users_stops_exactly_at_a_full_last_page(hook: KumulosCRMHook, received: Received) -> None:
    assert len(list(hook.iter_users(per_page=10))) == 50
    assert len(received()) == 5


def test_iter_pages_stops_at_an_empty_page(hook: KumulosCRMHook, received: Received) -> None:
    assert list(hook.iter_pages(per_page=10, start_page=9)) == []
    assert len(received()) == 1


def test_iter_pages_stops_at_an_empty_page_when_users_vanish(
    hook: KumulosCRMHook, kumulos_emulator: KumulosEmulator, received: Received
) -> None:
    # After the first page is served, 45 users disappear: page 2 of 10 is empty.
    kumulos_emulator.schedule_drift(after_requests=1, remove=45)
    pages = list(hook.iter_pages(per_page=10))
    assert [len(page.users) for page in pages] == [10]
    assert len(received()) == 2


def test_iter_pages_honours_start_and_end_page(
    hook: KumulosCRMHook, kumulos_emulator: KumulosEmulator
) -> None:
    pages = list(hook.iter_pages(per_page=10, start_page=2, end_page=3))
    assert [page.page for page in pages] == [2, 3]
    assert [u["identifier"] for p in pages for u in p.users] == kumulos_emulator.user_ids()[10:30]


def test_iter_pages_rejects_end_before_start(hook: KumulosCRMHook, received: Received) -> None:
    with pytest.raises(KumulosInputError) as caught:
        list(hook.iter_pages(per_page=10, start_page=3, end_page=2))
    assert caught.value.parameter == "end_page"
    assert received() == []


def test_get_attributes_returns_the_attribute_object(
    hook: KumulosCRMHook, kumulos_emulator: KumulosEmulator, user_id: str
) -> None:
    assert hook.get_attributes(user_id) == kumulos_emulator.get_attributes(user_id)
    kumulos_emulator.add_user("no-attributes")
    assert hook.get_attributes("no-attributes") == {}


def test_set_attributes_replaces_and_sends_the_raw_object(
    hook: KumulosCRMHook, kumulos_emulator: KumulosEmulator, received: Received, user_id: str
) -> None:
    result = hook.set_attributes(user_id, {"tier": "gold", "score": 1.5, "tags": ["a"], "flag": None})
    assert result == {
        "identifier": user_id,
        "attributes": {"tier": "gold", "score": 1.5, "tags": ["a"], "flag": None},
    }
    assert kumulos_emulator.get_attributes(user_id) == {
        "tier": "gold",
        "score": 1.5,
        "tags": ["a"],
        "flag": None,
    }
    (sent,) = received()
    assert sent.method == "PUT" and sent.json() == {"tier": "gold", "score": 1.5, "tags": ["a"], "flag": None}


def test_set_attributes_creates_a_missing_user(
    hook: KumulosCRMHook, kumulos_emulator: KumulosEmulator
) -> None:
    assert not hook.user_exists("brand-new")
    hook.set_attributes("brand-new", {"segment": "vip"})
    assert kumulos_emulator.get_attributes("brand-new") == {"segment": "vip"}
    assert hook.user_exists("brand-new")


def test_delete_attributes_clears_them(
    hook: KumulosCRMHook, kumulos_emulator: KumulosEmulator, received: Received, user_id: str
) -> None:
    assert hook.delete_attributes(user_id) is None
    assert kumulos_emulator.get_attributes(user_id) == {}
    assert [(r.method, r.status) for r in received()] == [("DELETE", 204)]


def test_delete_attributes_of_a_missing_user_raises_not_found(
    hook: KumulosCRMHook, received: Received
) -> None:
    with pytest.raises(KumulosUserNotFoundError) as caught:
        hook.delete_attributes("ghost")
    assert caught.value.user_id == "ghost" and caught.value.status == 400
    assert len(received()) == 1


def test_user_exists(hook: KumulosCRMHook, user_id: str) -> None:
    assert hook.user_exists(user_id) is True
    assert hook.user_exists("ghost") is False


def test_test_connection_reports_the_user_count(hook: KumulosCRMHook, received: Received) -> None:
    assert hook.test_connection() == (True, "Connected to Kumulos: the app has 50 users.")
    (sent,) = received()
    assert sent.query == {"currentPage": ["1"], "numberPerPage": ["1"]}


def test_close_then_reuse_opens_a_new_session(
    hook: KumulosCRMHook, kumulos_emulator: KumulosEmulator, user_id: str
) -> None:
    first = hook.get_conn()
    hook.get_attributes(user_id)
    hook.close()
    assert hook.get_conn() is not first
    assert hook.get_attributes(user_id) == kumulos_emulator.get_attributes(user_id)


def test_stats_count_requests_by_operation_and_status(hook: KumulosCRMHook, user_id: str) -> None:
    hook.get_attributes(user_id)
    hook.user_exists("ghost")
    hook.fetch_users_page(1, 1)
    assert hook.stats.requests == {
        ("get attributes", "200"): 1,
        ("get attributes", "404"): 1,
        ("list users", "200"): 1,
    }
    assert hook.stats.total_requests == 3 and hook.stats.retries == 0


def test_one_hook_is_safe_to_share_across_threads(
    make_hook: Callable[..., KumulosCRMHook], kumulos_emulator: KumulosEmulator
) -> None:
    from concurrent.futures import ThreadPoolExecutor

    hook = make_hook(pool_size=8)
    ids = kumulos_emulator.user_ids()
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(hook.get_attributes, ids))
    assert results == [kumulos_emulator.get_attributes(ident) for ident in ids]
    assert hook.stats.requests == {("get attributes", "200"): 50}
