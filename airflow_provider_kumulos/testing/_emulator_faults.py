"""Fault injection for the emulator: scripted faults, random fault rates, outages, rejected users, latency."""

from __future__ import annotations

import random
import threading
import time
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

FAULT_KINDS = ("status", "drop", "slow", "truncated", "non_json", "missing_field", "replace_field")


@dataclass(frozen=True)
class Fault:
    """One injected fault.

    ``kind`` is one of :data:`FAULT_KINDS`: ``status`` answers ``status`` with a small JSON error
    (plus ``Retry-After: retry_after``, sent verbatim, when given) without touching state;
    ``drop`` processes the request, then closes the connection without a response (a lost
    answer); ``slow`` waits ``delay`` seconds then answers normally;
    ``truncated`` answers 200 with the real body cut in half; ``non_json`` answers 200 with an
    HTML page; ``missing_field`` answers 200 JSON without ``field`` (users endpoint, default
    ``users``; other endpoints answer ``{}``); ``replace_field`` answers the real JSON object with
    ``field`` set to ``value`` (wrong types: ``totalUsers`` as a string, ``users`` not a list...).
    """

    kind: str
    status: int | None = None
    retry_after: int | str | None = None
    delay: float | None = None
    field: str | None = None
    value: Any = None

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r}; expected one of {FAULT_KINDS}")
        if self.kind == "status" and (self.status is None or not 100 <= self.status <= 599):
            raise ValueError("a 'status' fault needs an HTTP status between 100 and 599")
        if self.kind == "slow" and (self.delay is None or self.delay < 0):
            raise ValueError("a 'slow' fault needs a delay >= 0 seconds")
        if self.kind == "replace_field" and not self.field:
            raise ValueError("a 'replace_field' fault needs the field to replace")

    @classmethod
    def status_code(cls, status: int, retry_after: int | str | None = None) -> Fault:
        """Answer ``status`` (e.g. 500, 502, 503, 504, 429)."""
        return cls("status", status=status, retry_after=retry_after)

    @classmethod
    def rate_limited(cls, retry_after: int | str | None = None) -> Fault:
        """Answer 429, with ``Retry-After`` when given (int seconds or an HTTP-date string)."""
        return cls("status", status=429, retry_after=retry_after)

    @classmethod
    def dropped(cls) -> Fault:
        """Close the connection without answering."""
        return cls("drop")

    @classmethod
    def slow(cls, delay: float) -> Fault:
        """Wait ``delay`` seconds, then answer normally."""
        return cls("slow", delay=delay)

    @classmethod
    def truncated(cls) -> Fault:
        """Answer 200 with half of the real body."""
        return cls("truncated")

    @classmethod
    def non_json(cls) -> Fault:
        """Answer 200 with an HTML error page."""
        return cls("non_json")

    @classmethod
    def missing_field(cls, field: str = "users") -> Fault:
        """Answer 200 JSON lacking ``field`` (``users`` or ``totalUsers`` on the users endpoint)."""
        return cls("missing_field", field=field)

    @classmethod
    def replaced_field(cls, field: str, value: Any) -> Fault:
        """Answer 200 with the real JSON object, ``field`` set to ``value`` (not None)."""
        return cls("replace_field", field=field, value=value)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Fault:
        """Build from the admin API's JSON form (the dataclass fields)."""
        return cls(**data)

    def to_dict(self) -> dict[str, Any]:
        """The admin API's JSON form, without unset fields."""
        return {key: value for key, value in asdict(self).items() if value is not None}


@dataclass(frozen=True)
class FaultRates:
    """Per-request fault probabilities for :meth:`FaultPlan.set_rates`."""

    error_5xx: float = 0.0
    rate_limit: float = 0.0
    drop: float = 0.0
    slow: float = 0.0
    truncated: float = 0.0
    non_json: float = 0.0
    retry_after: int | str | None = 1
    slow_seconds: float = 5.0

    def __post_init__(self) -> None:
        rates = (self.error_5xx, self.rate_limit, self.drop, self.slow, self.truncated, self.non_json)
        if any(rate < 0 for rate in rates) or sum(rates) > 1.0 + 1e-9:
            raise ValueError("fault rates must be >= 0 and sum to at most 1")


@dataclass
class _Script:
    """Faults consumed in order by requests matching ``method``, ``path_prefix`` and users ``page``."""

    method: str | None
    path_prefix: str | None
    faults: deque[Fault]
    page: int | None = None

    def matches(self, method: str, path: str, page: int | None) -> bool:
        return (
            (self.method is None or self.method == method)
            and (self.path_prefix is None or path.startswith(self.path_prefix))
            and (self.page is None or (path == "/v2/users" and page == self.page))
        )


class FaultPlan:
    """Thread-safe source of the fault (if any) each API request gets."""

    def __init__(self, latency: float = 0.0) -> None:
        self._lock = threading.Lock()
        self._initial_latency = latency
        self.clear()

    def clear(self) -> None:
        """Back to normal behaviour: no faults, no rejections, initial latency."""
        with self._lock:
            self._scripts: list[_Script] = []
            self._rates: FaultRates | None = None
            self._rng = random.Random(0)
            self._rejections: dict[str, tuple[int, Any]] = {}
            self._outage: tuple[float, Fault] | None = None
            self.latency = self._initial_latency

    def script(
        self,
        faults: Iterable[Fault],
        method: str | None = None,
        path_prefix: str | None = None,
        page: int | None = None,
    ) -> None:
        """Queue faults for the next matching requests (after any queued earlier); ``page`` limits
        them to requests for that users page, whatever order concurrent requests arrive in."""
        queue = deque(faults)
        for fault in queue:
            if not isinstance(fault, Fault):
                raise TypeError(f"expected Fault, got {type(fault).__name__}")
        with self._lock:
            self._scripts.append(_Script(method.upper() if method else None, path_prefix, queue, page))

    def outage(self, seconds: float, status: int = 503, retry_after: int | str | None = None) -> None:
        """Answer every API request with ``status`` for the next ``seconds`` (the whole service down);
        0 ends an outage early. Scripted and random faults wait until it is over."""
        if seconds < 0:
            raise ValueError("an outage needs a duration >= 0 seconds")
        fault = Fault.status_code(status, retry_after)
        with self._lock:
            self._outage = (time.monotonic() + seconds, fault) if seconds > 0 else None

    def outage_remaining(self) -> float:
        """Seconds left of the current outage (0 when there is none)."""
        with self._lock:
            return 0.0 if self._outage is None else max(0.0, self._outage[0] - time.monotonic())

    def set_rates(self, rates: FaultRates, seed: int) -> None:
        """Inject random faults with these probabilities (seeded, so runs repeat)."""
        with self._lock:
            self._rates = rates if any(self._weights(rates)) else None
            self._rng = random.Random(seed)

    def reject(self, rejections: Mapping[str, tuple[int, Any]]) -> None:
        """Answer these user ids with a fixed status and JSON body (replaces earlier rejections)."""
        parsed = {ident: (int(status), body) for ident, (status, body) in rejections.items()}
        with self._lock:
            self._rejections = parsed

    def rejection(self, identifier: str) -> tuple[int, Any] | None:
        """The fixed answer for this user id, if rejected."""
        with self._lock:
            return self._rejections.get(identifier)

    @staticmethod
    def _weights(rates: FaultRates) -> list[float]:
        return [rates.error_5xx, rates.rate_limit, rates.drop, rates.slow, rates.truncated, rates.non_json]

    def next_fault(self, method: str, path: str, page: int | None = None) -> Fault | None:
        """Consume the fault for one request (``page``: the users page it asks for): an outage
        first, then scripted faults, then random by rate."""
        with self._lock:
            if self._outage is not None:
                until, fault = self._outage
                if time.monotonic() < until:
                    return fault
                self._outage = None
            for script in self._scripts:
                if script.faults and script.matches(method, path, page):
                    return script.faults.popleft()
            rates = self._rates
            if rates is None:
                return None
            draw = self._rng.random()
            for which, weight in enumerate(self._weights(rates)):
                if draw < weight:
                    return self._random_fault(which, rates)
                draw -= weight
            return None

    def _random_fault(self, which: int, rates: FaultRates) -> Fault:
        """The fault for rate number ``which`` in :meth:`_weights` order (lock held)."""
        if which == 0:
            return Fault.status_code(self._rng.choice((500, 502, 503, 504)))
        if which == 1:
            return Fault.rate_limited(rates.retry_after)
        if which == 3:
            return Fault.slow(rates.slow_seconds)
        return Fault({2: "drop", 4: "truncated", 5: "non_json"}[which])

    def pending(self) -> int:
        """Scripted faults not yet consumed."""
        with self._lock:
            return sum(len(script.faults) for script in self._scripts)
