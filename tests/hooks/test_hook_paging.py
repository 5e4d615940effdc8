"""Paging with requests in flight (``iter_pages(ahead=N)``): same pages, same order, same stop rule
as one request at a time, over real sockets; the ordering and shutdown rules also with a scripted
fetch function, where timing can be controlled exactly."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest

from airflow_provider_kumulos._policy import UsersPage
from airflow_provider_kumulos.exceptions import KumulosAuthError, KumulosInputError
from airflow_provider_kumulos.hooks._paging import walk_pages
from airflow_provider_kumulos.hooks.kumulos import KumulosCRMHook
from airflow_provider_kumulos.testing.emulator import Fault, KumulosEmulator, RecordedRequest

Received = Callable[..., list[RecordedRequest]]


def requested_pages(received: Received) -> list[int]:
    return sorted(int(r.query["currentPage"][0]) for r in received() if r.path == "/v2/users")


@pytest.mark.parametrize("ahead", [1, 3, 8])
def test_pages_ahead_are_the_pages_one_at_a_time_with_no_extra_request(
    hook: KumulosCRMHook, kumulos_emulator: KumulosEmulator, received: Received, ahead: int
) -> None:
    pages = list(hook.iter_pages(per_page=7, ahead=ahead))
    assert [page.page for page in pages] == list(range(1, 9))
    assert [i for page in pages for i in page.identifiers] == kumulos_emulator.user_ids()
    assert requested_pages(received) == list(range(1, 9))  # ceil(50 / 7) pages, not one more


@pytest.mark.parametrize("ahead", [2, 4])
def test_pages_ahead_honour_start_and_end_page(
    hook: KumulosCRMHook, kumulos_emulator: KumulosEmulator, received: Received, ahead: int
) -> None:
    pages = list(hook.iter_pages(per_page=10, start_page=2, end_page=3, ahead=ahead))
    assert [page.page for page in pages] == [2, 3]
    assert [i for page in pages for i in page.identifiers] == kumulos_emulator.user_ids()[10:30]
    assert requested_pages(received) == [2, 3]


def test_pages_ahead_follow_users_that_appear_while_paging(
    hook: KumulosCRMHook, kumulos_emulator: KumulosEmulator
) -> None:
    kumulos_emulator.schedule_drift(after_requests=1, add=25)
    pages = list(hook.iter_pages(per_page=10, ahead=3))
    assert pages[-1].total_users == 75
    assert [page.page for page in pages] == list(range(1, 9))  # the walk grew to ceil(75 / 10)


def test_pages_ahead_stop_at_an_empty_page_when_users_vanish(
    hook: KumulosCRMHook, kumulos_emulator: KumulosEmulator, received: Received
) -> None:
    kumulos_emulator.schedule_drift(after_requests=1, remove=45)
    pages = list(hook.iter_pages(per_page=10, ahead=3))
    assert [len(page.users) for page in pages] == [10]
    # Pages 2..4 were already on their way when page 2 came back empty; nothing after them.
    assert 2 <= len(requested_pages(received)) <= 4


def test_an_error_ahead_is_raised_after_the_pages_before_it(
    hook: KumulosCRMHook, kumulos_emulator: KumulosEmulator, received: Received
) -> None:
    # Page 1 goes alone; whichever of pages 2..4 reaches the server first is refused.
    kumulos_emulator.script_faults(
        [Fault("slow", delay=0), Fault("status", status=401)], path_prefix="/v2/users"
    )
    got: list[int] = []
    with pytest.raises(KumulosAuthError):
        for page in hook.iter_pages(per_page=10, ahead=3):
            got.append(page.page)
    refused = len(got) + 1
    assert got == list(range(1, refused)) and 2 <= refused <= 4
    assert max(requested_pages(received)) <= 4  # nothing is asked for past the window


def test_a_page_still_on_its_way_stops_retrying_once_the_walk_has_failed(
    make_hook: Callable[..., KumulosCRMHook], kumulos_emulator: KumulosEmulator, received: Received
) -> None:
    hook = make_hook(max_retries=5, backoff_base=0.3, backoff_max=0.3)
    # Page 2 is refused (401) while page 3, in flight beside it, keeps failing (503). Aimed by page,
    # so the 401 lands on page 2 whichever of the two requests reaches the server first.
    kumulos_emulator.script_faults([Fault("status", status=401)], page=2)
    kumulos_emulator.script_faults([Fault("status", status=503)] * 6, page=3)
    with pytest.raises(KumulosAuthError):
        list(hook.iter_pages(per_page=10, ahead=2))
    time.sleep(1.5)  # long enough for four more retries, were they still made
    # Page 1, the refused page, the failing page's first attempt and at most one retry under way.
    assert len(requested_pages(received)) <= 4


@pytest.mark.parametrize("ahead", [-1, 9, True, "2"])
def test_ahead_is_checked_before_any_request(hook: KumulosCRMHook, received: Received, ahead: object) -> None:
    with pytest.raises(KumulosInputError) as caught:
        hook.iter_pages(per_page=10, ahead=ahead)  # type: ignore[arg-type]
    assert caught.value.parameter == "ahead"
    assert received() == []


# --- the window on its own ----------------------------------------------------------------------


class ScriptedPages:
    """A fetch function over ``total`` users in pages of ``per_page``, counting what is in flight."""

    def __init__(
        self, total: int, per_page: int = 10, delay: float = 0.0, fail_at: int | None = None
    ) -> None:
        self.total, self.per_page, self.delay, self.fail_at = total, per_page, delay, fail_at
        self.requested: list[int] = []
        self.in_flight = self.most_in_flight = 0
        self._lock = threading.Lock()

    def __call__(self, page: int) -> UsersPage:
        with self._lock:
            self.requested.append(page)
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            time.sleep(self.delay)
            if page == self.fail_at:
                raise ValueError(f"page {page} failed")
            first = (page - 1) * self.per_page
            ids = [f"u{i}" for i in range(first, min(first + self.per_page, self.total))]
            return UsersPage(ids, ids, self.total, page, self.per_page, 0)
        finally:
            with self._lock:
                self.in_flight -= 1


def test_the_window_keeps_at_most_ahead_requests_in_flight() -> None:
    fetch = ScriptedPages(total=200, delay=0.01)
    pages = list(walk_pages(fetch, 1, None, ahead=3))
    assert [page.page for page in pages] == list(range(1, 21))
    assert fetch.most_in_flight == 3
    assert sorted(fetch.requested) == list(range(1, 21))


def test_the_window_raises_a_failure_in_page_order_after_the_pages_before_it() -> None:
    fetch = ScriptedPages(total=200, fail_at=6)
    got: list[int] = []
    with pytest.raises(ValueError, match="page 6 failed"):
        got.extend(page.page for page in walk_pages(fetch, 1, None, ahead=4))
    assert got == [1, 2, 3, 4, 5]


def test_a_failure_beyond_the_last_page_is_never_seen() -> None:
    fetch = ScriptedPages(total=50, fail_at=6)  # page 6 would only exist if the set grew
    assert [page.page for page in walk_pages(fetch, 1, None, ahead=4)] == [1, 2, 3, 4, 5]
    assert 6 not in fetch.requested


def test_closing_the_walk_stops_asking_for_pages() -> None:
    fetch = ScriptedPages(total=10_000, delay=0.005)
    pages = walk_pages(fetch, 1, None, ahead=2)
    assert next(pages).page == 1
    pages.close()
    time.sleep(0.1)
    assert len(fetch.requested) <= 3  # the page in hand and the two already on their way


def test_per_page_still_works_as_a_deprecated_name_of_page_size(
    hook: KumulosCRMHook, kumulos_emulator: KumulosEmulator
) -> None:
    with pytest.warns(DeprecationWarning, match="page_size"):
        pages = list(hook.iter_pages(per_page=20))
    assert [page.page_size for page in pages] == [20, 20, 20]
    assert [i for page in pages for i in page.identifiers] == kumulos_emulator.user_ids()
    with pytest.warns(DeprecationWarning, match="page_size"):
        assert len(hook.fetch_users_page(1, per_page=7).users) == 7
    with pytest.raises(TypeError, match="not both"):
        hook.fetch_users_page(1, page_size=5, per_page=5)


def test_users_page_is_a_public_name_of_the_hook_module() -> None:
    from airflow_provider_kumulos.hooks import kumulos

    assert "UsersPage" in kumulos.__all__ and kumulos.UsersPage is UsersPage
