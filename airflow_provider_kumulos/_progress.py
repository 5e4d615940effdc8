"""Progress lines for long operations: a time-based cadence, counts, rate, ETA, retries, one summary.

People watch task logs while exports and bulk writes run for minutes to hours. One line every
``interval`` seconds (never one per request or per page), then one final summary line with every
count and the duration. Lines carry counts only: never attribute values, never identifiers.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from airflow_provider_kumulos._checks import check_number

if TYPE_CHECKING:
    from airflow_provider_kumulos._stats import RequestStats

#: Seconds between progress lines unless an operator's ``progress_interval`` says otherwise.
DEFAULT_INTERVAL = 10.0


def check_interval(value: object, parameter: str = "progress_interval") -> float:
    """A progress interval in seconds (0 logs at every update, useful in tests only)."""
    return check_number(parameter, value, 0, unit="seconds", fix="Pass e.g. 30 for a line every 30 seconds.")


def _format_duration(seconds: float) -> str:
    """``4s``, ``2m05s``, ``1h02m05s``: short enough for a log line."""
    whole = max(0, round(seconds))
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m{secs:02d}s"
    if minutes:
        return f"{minutes}m{secs:02d}s"
    return f"{secs}s"


class ProgressLogger:
    """Log ``what: done/total (pct), [failed], rate/s, ETA, requests, retries, rate-limit waits, elapsed``.

    :param what: names the operation at the start of every line.
    :param logger: where lines go (the operator's ``self.log``, so they land in the task log).
    :param total: how many items there are, when known (shows percent and ETA).
    :param interval: at most one line per ``interval`` seconds.
    :param request_stats: the hook's counters, for requests, retries and rate-limit waits so far.
    :param counts_failures: show ``failed N`` in every line, even while it is 0 (bulk writes).
    :param resumed: items done by an earlier attempt (a resumed export): counted, but not in the rate.
    :param clock: monotonic time source (tests may pass their own).
    """

    def __init__(
        self,
        what: str,
        *,
        logger: logging.Logger | Any,
        total: int | None = None,
        interval: float = DEFAULT_INTERVAL,
        request_stats: RequestStats | None = None,
        counts_failures: bool = False,
        resumed: int = 0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.what = what
        self.log = logger
        self.total = total
        self.interval = interval
        self.request_stats = request_stats
        self.counts_failures = counts_failures
        self.resumed = resumed
        self._clock = clock
        self.started = clock()
        self._last_line = self.started
        self.done = resumed
        self.failed = 0
        self.unchanged: int | None = None
        self.lines = 0
        self._lock = threading.Lock()

    @property
    def elapsed(self) -> float:
        """Seconds since this logger was created."""
        return self._clock() - self.started

    def update(
        self, done: int, *, failed: int = 0, total: int | None = None, unchanged: int | None = None
    ) -> None:
        """Record progress (``unchanged``: records a sync state skipped); log a line if one is due."""
        self.done, self.failed, self.unchanged = done, failed, unchanged
        if total is not None:
            self.total = total
        self._log_if_due()

    def _log_if_due(self) -> float:
        """Log a line if one is due; return the seconds until the next one is."""
        with self._lock:
            now = self._clock()
            wait = self._last_line + self.interval - now
            if wait > 0:
                return wait
            self._last_line = now
            self.lines += 1
            line = self.describe(now)
        self.log.info("%s", line)
        return self.interval

    @contextlib.contextmanager
    def ticking(self) -> Iterator[ProgressLogger]:
        """Keep the cadence while no update arrives (a slow page, a long rate-limit pause).

        A daemon thread logs the latest counts whenever ``interval`` passes without a line, so the
        task log shows the operation is alive and how many retries and waits it has met so far.
        With ``interval`` 0 (a line at every update) there is no thread.
        """
        if self.interval <= 0:
            yield self
            return
        stop = threading.Event()

        def tick() -> None:
            wait = self._log_if_due()
            while not stop.wait(wait):
                wait = self._log_if_due()

        thread = threading.Thread(target=tick, name="kumulos-progress", daemon=True)
        thread.start()
        try:
            yield self
        finally:
            stop.set()
            thread.join()

    def describe(self, now: float | None = None) -> str:
        """The progress line for the current counts."""
        elapsed = max(1e-9, (self._clock() if now is None else now) - self.started)
        rate = (self.done - self.resumed) / elapsed
        head = f"{self.what}: {self.done:,}"
        if self.total:
            head += f"/{self.total:,} ({100.0 * self.done / self.total:.1f}%)"
        parts = [head]
        if self.counts_failures or self.failed:
            parts.append(f"failed {self.failed:,}")
        if self.unchanged is not None:
            parts.append(f"unchanged {self.unchanged:,}")
        parts.append(f"{rate:,.0f}/s")
        if self.total and rate > 0 and self.done < self.total:
            parts.append(f"ETA {_format_duration((self.total - self.done) / rate)}")
        parts.extend(self._request_parts())
        parts.append(f"elapsed {_format_duration(elapsed)}")
        return ", ".join(parts)

    def _request_parts(self) -> list[str]:
        stats = self.request_stats
        if stats is None:
            return []
        waits = f"rate-limit waits {stats.rate_limit_waits:,}"
        if stats.rate_limit_waits:
            waits += f" ({stats.rate_limit_wait_seconds:.1f}s)"
        return [f"requests {stats.total_requests:,}", f"retries {stats.retries:,}", waits]

    def finish(self, **counts: Any) -> str:
        """Log and return the one final summary line: every count given, requests so far, the duration."""
        fields = [
            f"{key.replace('_', ' ')} {value:,}"
            if isinstance(value, int)
            else f"{key.replace('_', ' ')} {value}"
            for key, value in counts.items()
        ]
        fields.extend(self._request_parts())
        fields.append(f"duration {_format_duration(self.elapsed)}")
        line = f"{self.what} finished: " + ", ".join(fields)
        self.log.info("%s", line)
        return line
