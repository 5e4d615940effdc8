"""Retries on 429/5xx, dropped connections and read timeouts; Retry-After; max_retries=0.

Counts and timings come from the emulator's request log, i.e. from what really reached the server.
"""

from __future__ import annotations

import email.utils
import itertools
import math
import time
from collections.abc import Callable

import pytest

from airflow_provider_kumulos.exceptions import (
    KumulosRateLimitError,
    KumulosServerError,
    KumulosTransportError,
)
from airflow_provider_kumulos.hooks.kumulos import KumulosCRMHook
from airflow_provider_kumulos.testing.emulator import Fault, KumulosEmulator, RecordedRequest

Received = Callable[..., list[RecordedRequest]]


def gaps(requests: list[RecordedRequest]) -> list[float]:
    """Seconds between consecutive requests as the server received them."""
    return [later.timestamp - earlier.timestamp for earlier, later in itertools.pairwise(requests)]


@pytest.mark.parametrize("status", [429, 500, 502, 503, 504])
def test_transient_statuses_are_retried_until_success(
    hook: KumulosCRMHook, kumulos_emulator: KumulosEmulator, received: Received, user_id: str, status: int
) -> None:
    kumulos_emulator.script_faults([Fault.status_code(status)] * 2)
    assert hook.get_attributes(user_id) == kumulos_emulator.get_attributes(user_id)
    assert [r.status for r in received()] == [status, status, 200]
    assert hook.stats.retries == 2
    assert hook.stats.rate_limit_waits == (2 if status == 429 else 0)


@pytest.mark.parametrize(("status", "error"), [(503, KumulosServerError), (429, KumulosRateLimitError)])
def test_retries_stop_after_max_retries(
    hook: KumulosCRMHook,
    kumulos_emulator: KumulosEmulator,
    received: Received,
    status: int,
    error: type[Exception],
) -> None:
    kumulos_emulator.script_faults([Fault.status_code(status)] * 10)
    with pytest.raises(error) as caught:
        hook.get_users_page(1, 5)
    assert getattr(caught.value, "status", None) == status
    assert len(received()) == 3


def test_max_retries_zero_sends_exactly_once(
    make_hook: Callable[..., KumulosCRMHook], kumulos_emulator: KumulosEmulator, received: Received
) -> None:
    hook = make_hook(max_retries=0)
    kumulos_emulator.script_faults([Fault.status_code(503), Fault.dropped()])
    with pytest.raises(KumulosServerError):
        hook.get_users_page(1, 5)
    with pytest.raises(KumulosTransportError):
        hook.get_users_page(1, 5)
    assert [r.status for r in received()] == [503, None]


def test_dropped_connections_are_retried(
    hook: KumulosCRMHook, kumulos_emulator: KumulosEmulator, received: Received, user_id: str
) -> None:
    kumulos_emulator.script_faults([Fault.dropped(), Fault.dropped()])
    hook.set_attributes(user_id, {"plan": "pro"})
    assert kumulos_emulator.get_attributes(user_id) == {"plan": "pro"}
    assert [(r.fault, r.status) for r in received()] == [("drop", None), ("drop", None), (None, 200)]


def test_persistent_drops_raise_a_transport_error(
    hook: KumulosCRMHook, kumulos_emulator: KumulosEmulator, received: Received, user_id: str
) -> None:
    kumulos_emulator.script_faults([Fault.dropped()] * 3)
    with pytest.raises(KumulosTransportError) as caught:
        hook.get_attributes(user_id)
    assert "connection to http://127.0.0.1" in str(caught.value)
    assert len(received()) == 3


def test_read_timeouts_are_retried(
    make_hook: Callable[..., KumulosCRMHook],
    kumulos_emulator: KumulosEmulator,
    received: Received,
    user_id: str,
) -> None:
    hook = make_hook(timeout=0.2, max_retries=2)
    kumulos_emulator.script_faults([Fault.slow(0.6)])
    assert hook.get_attributes(user_id) == kumulos_emulator.get_attributes(user_id)
    assert sorted(r.fault or "" for r in received(2)) == ["", "slow"]
    assert hook.stats.requests[("get attributes", "timeout")] == 1


def test_persistent_read_timeouts_raise_a_transport_error(
    make_hook: Callable[..., KumulosCRMHook],
    kumulos_emulator: KumulosEmulator,
    received: Received,
    user_id: str,
) -> None:
    hook = make_hook(timeout=0.2, max_retries=1)
    kumulos_emulator.script_faults([Fault.slow(0.5)] * 2)
    with pytest.raises(KumulosTransportError, match="no answer within the timeout"):
        hook.get_attributes(user_id)
    assert [r.fault for r in received(2)] == ["slow", "slow"]


def test_retry_after_seconds_is_honoured(
    hook: KumulosCRMHook, kumulos_emulator: KumulosEmulator, received: Received
) -> None:
    kumulos_emulator.script_faults([Fault.rate_limited(retry_after=1)])
    hook.get_users_page(1, 1)
    requests = received()
    assert [r.status for r in requests] == [429, 200]
    assert gaps(requests)[0] >= 1.0
    assert hook.stats.rate_limit_waits == 1 and hook.stats.rate_limit_wait_seconds == pytest.approx(1.0)


def test_retry_after_http_date_is_honoured(
    hook: KumulosCRMHook, kumulos_emulator: KumulosEmulator, received: Received
) -> None:
    not_before = math.ceil(time.time()) + 2  # HTTP dates have whole seconds
    kumulos_emulator.script_faults(
        [Fault.status_code(503, retry_after=email.utils.formatdate(not_before, usegmt=True))]
    )
    hook.get_users_page(1, 1)
    first, second = received()
    assert (first.status, second.status) == (503, 200)
    assert second.timestamp >= not_before - 0.05
    assert gaps([first, second])[0] >= 1.0


def test_retry_after_is_capped_by_max_retry_after(
    make_hook: Callable[..., KumulosCRMHook], kumulos_emulator: KumulosEmulator, received: Received
) -> None:
    hook = make_hook(max_retry_after=0.5)
    kumulos_emulator.script_faults([Fault.rate_limited(retry_after=30)])
    started = time.monotonic()
    hook.get_users_page(1, 1)
    assert time.monotonic() - started < 5
    (gap,) = gaps(received())
    assert 0.5 <= gap < 5


def test_a_429_pauses_every_thread_sharing_the_hook(
    make_hook: Callable[..., KumulosCRMHook], kumulos_emulator: KumulosEmulator, received: Received
) -> None:
    from concurrent.futures import ThreadPoolExecutor

    hook = make_hook(pool_size=4)
    first_id, *other_ids = kumulos_emulator.user_ids()[:4]
    kumulos_emulator.script_faults([Fault.rate_limited(retry_after=1)])
    with ThreadPoolExecutor(4) as pool:
        rate_limited = pool.submit(hook.get_attributes, first_id)
        (limited,) = received(1)
        time.sleep(0.2)  # the first thread is now in its Retry-After pause
        others = list(pool.map(hook.get_attributes, other_ids))
        rate_limited.result()
    assert limited.status == 429 and len(others) == 3
    later = received()[1:]
    assert len(later) == 4
    # None of the other threads' requests went out during the pause the 429 asked for.
    assert min(r.timestamp for r in later) - limited.timestamp >= 1.0


def test_non_retryable_statuses_are_never_retried(
    hook: KumulosCRMHook, kumulos_emulator: KumulosEmulator, received: Received, user_id: str
) -> None:
    kumulos_emulator.script_faults([Fault.status_code(status) for status in (400, 401, 404, 422)])
    outcomes = []
    for _ in range(4):
        with pytest.raises(Exception) as caught:
            hook.get_attributes(user_id)
        outcomes.append(type(caught.value).__name__)
    assert outcomes == [
        "KumulosServerError",
        "KumulosAuthError",
        "KumulosUserNotFoundError",
        "KumulosValidationError",
    ]
    assert [r.status for r in received()] == [400, 401, 404, 422]
    assert hook.stats.retries == 0
