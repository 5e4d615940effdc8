"""A gate every request of one client passes: shared 429 pauses and an optional request-rate cap.

When one caller is told to back off, every caller sharing the gate waits with it, instead of each
discovering the rate limit on its own: the threads of a bulk run (:meth:`RequestGate.wait`) and
the triggers sharing one connection's async client (:meth:`RequestGate.wait_async`) alike.
"""

from __future__ import annotations

import asyncio
import threading
import time


class RequestGate:
    """Thread-safe pacing: ``wait()`` (or ``await wait_async()``) before each request, ``hold(seconds)`` after a 429."""

    def __init__(self, max_requests_per_second: float | None = None) -> None:
        self._interval = 1.0 / max_requests_per_second if max_requests_per_second else 0.0
        self._lock = threading.Lock()
        self._next_slot = 0.0
        self._closed_until = 0.0

    def hold(self, seconds: float) -> None:
        """Keep every caller of :meth:`wait` and :meth:`wait_async` out for ``seconds`` from now."""
        with self._lock:
            self._closed_until = max(self._closed_until, time.monotonic() + seconds)

    def _claim(self) -> float:
        """The monotonic time this caller may send at, taking the next rate slot."""
        with self._lock:
            slot = max(time.monotonic(), self._next_slot, self._closed_until)
            if self._interval:
                self._next_slot = slot + self._interval
            return slot

    def _recheck(self, slot: float) -> float:
        """``slot``, moved later if a pause started while the caller slept towards it."""
        with self._lock:
            return max(slot, self._closed_until)

    def wait(self) -> None:
        """Block until this caller may send.

        A caller sleeping towards its rate slot re-checks the gate on waking, so a pause that
        another thread's 429 started meanwhile holds it too.
        """
        slot = self._claim()
        while (delay := slot - time.monotonic()) > 0:
            time.sleep(delay)
            slot = self._recheck(slot)

    async def wait_async(self) -> None:
        """:meth:`wait` for coroutines: sleeps without blocking the event loop."""
        slot = self._claim()
        while (delay := slot - time.monotonic()) > 0:
            await asyncio.sleep(delay)
            slot = self._recheck(slot)
