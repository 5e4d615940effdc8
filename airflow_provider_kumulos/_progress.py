"""Progress lines for long operations: time-based cadence, counts, rate, ETA, retries.

People watch task logs while exports and bulk writes run for minutes to hours. One line every
``interval`` seconds (never one per request), then one final summary line with every count.
Lines carry counts only: never attribute values, never identifiers.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from airflow_provider_kumulos.hooks.kumulos import RequestStats


def _fmt_duration(seconds: float) -> str:
    whole = max(0, round(seconds))
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m{secs:02d}s"
    if minutes:
        return f"{minutes}m{secs:02d}s"
    return f"{secs}s"


class ProgressLogger:
    """Log ``what: done/total (pct), rate/s, ETA, failed, retries`` at most every ``interval`` seconds."""

    def __init__(
        self,
        what: str,
        *,
        logger: logging.Logger | Any,
        total: int | None = None,
        interval: float = 10.0,
        request_stats: RequestStats | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.what = what
        self.log = logger
        self.total = total
        self.interval = interval
        self.request_stats = request_stats
        self._clock = clock
        self.started = clock()
        self._last_line = self.started
        self.done = 0
        self.failed = 0
        self.lines = 0

    @property
    def elapsed(self) -> float:
        return self._clock() - self.started

    def update(self, done: int, *, failed: int = 0, total: int | None = None, force: bool = False) -> None:
        """Record progress; log a line if ``interval`` has passed since the last one."""
        self.done, self.failed = done, failed
        if total is not None:
            self.total = total
        now = self._clock()
        if force or now - self._last_line >= self.interval:
            self._last_line = now
            self.lines += 1
            self.log.info("%s", self.describe(now))

    def describe(self, now: float | None = None) -> str:
        """The progress line for the current counts."""
        elapsed = max(1e-9, (self._clock() if now is None else now) - self.started)
        rate = self.done / elapsed
        parts = [f"{self.what}: {self.done:,}"]
        if self.total:
            pct = 100.0 * self.done / self.total
            parts[0] += f"/{self.total:,} ({pct:.1f}%)"
        parts.append(f"{rate:,.0f}/s")
        if self.total and rate > 0 and self.done < self.total:
            parts.append(f"ETA {_fmt_duration((self.total - self.done) / rate)}")
        if self.failed:
            parts.append(f"failed {self.failed:,}")
        parts.extend(self._request_parts())
        parts.append(f"elapsed {_fmt_duration(elapsed)}")
        return ", ".join(parts)

    def _request_parts(self) -> list[str]:
        stats = self.request_stats
        if stats is None:
            return []
        parts = [f"requests {stats.total_requests:,}", f"retries {stats.retries:,}"]
        if stats.rate_limit_waits:
            parts.append(
                f"rate-limit waits {stats.rate_limit_waits:,} ({stats.rate_limit_wait_seconds:.1f}s)"
            )
        return parts

    def finish(self, **counts: Any) -> str:
        """Log and return the one final summary line: every count given, plus requests and duration."""
        fields = [
            f"{key.replace('_', ' ')} {value:,}"
            if isinstance(value, int)
            else f"{key.replace('_', ' ')} {value}"
            for key, value in counts.items()
        ]
        fields.extend(self._request_parts())
        fields.append(f"duration {_fmt_duration(self.elapsed)}")
        line = f"{self.what} finished: " + ", ".join(fields)
        self.log.info("%s", line)
        return line
