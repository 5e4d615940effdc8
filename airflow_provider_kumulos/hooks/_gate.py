"""A gate every request of one hook passes: shared 429 pauses and an optional request-rate cap.

When one worker of a bulk run is told to back off, every worker sharing the hook waits with it,
instead of each discovering the rate limit on its own.
"""

from __future__ import annotations

import threading
import time


class RequestGate:
    """Thread-safe pacing: ``wait()`` before each request, ``hold(seconds)`` after a 429."""

    def __init__(self, max_requests_per_second: float | None = None) -> None:
        self._interval = 1.0 / max_requests_per_second if max_requests_per_second else 0.0
        self._lock = threading.Lock()
        self._next_slot = 0.0
        self._closed_until = 0.0

    def hold(self, seconds: float) -> None:
        """Keep every caller of :meth:`wait` out for ``seconds`` from now."""
        with self._lock:
            self._closed_until = max(self._closed_until, time.monotonic() + seconds)

    def wait(self) -> float:
        """Block until this caller may send; return the seconds spent waiting.

        A caller sleeping towards its rate slot re-checks the gate on waking, so a pause that
        another thread's 429 started meanwhile holds it too.
        """
        started = time.monotonic()
        with self._lock:
            slot = max(started, self._next_slot, self._closed_until)
            if self._interval:
                self._next_slot = slot + self._interval
        while (delay := slot - time.monotonic()) > 0:
            time.sleep(delay)
            with self._lock:
                slot = max(slot, self._closed_until)
        return time.monotonic() - started
