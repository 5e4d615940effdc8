"""The hook's request gate: an optional request-rate cap, and 429 pauses that hold every caller."""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from collections.abc import Awaitable, Callable

from airflow_provider_kumulos.hooks._gate import RequestGate
from airflow_provider_kumulos.hooks.kumulos import KumulosCRMHook
from airflow_provider_kumulos.testing.emulator import KumulosEmulator, RecordedRequest

Received = Callable[..., list[RecordedRequest]]


def test_max_requests_per_second_spaces_requests(
    make_hook: Callable[..., KumulosCRMHook], kumulos_emulator: KumulosEmulator, received: Received
) -> None:
    hook = make_hook(max_requests_per_second=10)
    started = time.monotonic()
    for user_id in kumulos_emulator.user_ids()[:6]:
        hook.get_attributes(user_id)
    # The sixth request cannot leave before five 0.1 s slots have passed, however loaded the machine.
    assert time.monotonic() - started >= 0.5
    stamps = [r.timestamp for r in received()]
    assert len(stamps) == 6
    # Server-side receive times carry scheduling jitter; a gap can shrink a little, never vanish.
    assert all(later - earlier >= 0.05 for earlier, later in itertools.pairwise(stamps))


def _timed(action: Callable[[], object]) -> float:
    """Seconds ``action()`` took."""
    started = time.monotonic()
    action()
    return time.monotonic() - started


def test_without_a_cap_the_gate_does_not_wait() -> None:
    gate = RequestGate()
    assert max(_timed(gate.wait) for _ in range(100)) < 0.01


def test_a_hold_during_a_rate_wait_holds_that_caller_too() -> None:
    gate = RequestGate(max_requests_per_second=2)  # one slot every 0.5 s
    gate.wait()
    started = time.monotonic()
    threading.Timer(0.1, gate.hold, args=(1.5,)).start()
    waited = _timed(gate.wait)  # slot at +0.5 s, but a 429 at +0.1 s closed the gate until +1.6 s
    assert waited >= 1.5
    assert time.monotonic() - started >= 1.55


def test_a_hold_keeps_coroutines_out_without_blocking_the_event_loop() -> None:
    gate = RequestGate()

    async def scenario() -> tuple[float, int]:
        ticks = 0

        async def tick() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1

        ticker = asyncio.ensure_future(tick())
        gate.hold(0.5)
        waited = await _async_timed(gate.wait_async())
        ticker.cancel()
        return waited, ticks

    waited, ticks = asyncio.run(scenario())
    assert waited >= 0.5
    assert ticks >= 10  # the loop kept running other tasks while the caller waited


async def _async_timed(awaitable: Awaitable[object]) -> float:
    """Seconds awaiting ``awaitable`` took."""
    started = time.monotonic()
    await awaitable
    return time.monotonic() - started
