"""RequestStats: what a hook has done so far (requests by outcome, retries, rate-limit waits).

Below the hooks so that the modules reporting on a run (progress lines, the bulk report) type
against it without importing a hook; public as ``airflow_provider_kumulos.hooks.kumulos.RequestStats``.
"""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass, field

from airflow_provider_kumulos import _metrics


@dataclass
class RequestStats:
    """What this hook has done so far: for progress lines and summaries (thread-safe updates)."""

    requests: Counter[tuple[str, str]] = field(default_factory=Counter)
    retries: int = 0
    rate_limit_waits: int = 0
    rate_limit_wait_seconds: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def record(self, operation: str, status: int | str) -> None:
        with self._lock:
            self.requests[(operation, str(status))] += 1
        _metrics.request(operation, status)

    def record_retry(self, operation: str, reason: str, sleep: float, rate_limited: bool) -> None:
        with self._lock:
            self.retries += 1
            if rate_limited:
                self.rate_limit_waits += 1
                self.rate_limit_wait_seconds += sleep
        _metrics.retry(operation, reason)
        if rate_limited:
            _metrics.rate_limit_wait(operation, sleep)

    @property
    def total_requests(self) -> int:
        return sum(self.requests.values())
