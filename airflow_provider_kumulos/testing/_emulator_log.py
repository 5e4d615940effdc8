"""The emulator's request log and counters, so tests can assert what a client really sent."""

from __future__ import annotations

import json
import threading
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any


class Headers(dict[str, str]):
    """Request headers keyed by lower-case name, looked up case-insensitively."""

    def __init__(self, items: list[tuple[str, str]]) -> None:
        super().__init__()
        for name, value in items:
            key = name.lower()
            super().__setitem__(key, f"{self[key]}, {value}" if key in self else value)

    def __getitem__(self, name: str) -> str:
        return super().__getitem__(name.lower())

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and super().__contains__(name.lower())

    def get(self, name: str, default: Any = None) -> Any:
        return super().get(name.lower(), default)


@dataclass(frozen=True)
class RecordedRequest:
    """One request to the Kumulos API paths, as the emulator received and answered it.

    ``raw_path`` is the request target exactly as sent (still percent-encoded), ``path`` its
    decoded path. ``status`` is None when the connection was dropped; ``fault`` names the
    injected fault (a :class:`Fault` kind, or ``reject`` for :meth:`reject_users`).
    """

    method: str
    raw_path: str
    path: str
    query: dict[str, list[str]]
    headers: Headers
    body: bytes
    status: int | None
    fault: str | None
    timestamp: float
    identifier: str | None = field(default=None)

    def json(self) -> Any:
        """The request body parsed as JSON."""
        return json.loads(self.body)

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form (body decoded as UTF-8 text) for the admin API."""
        return {
            "method": self.method,
            "raw_path": self.raw_path,
            "path": self.path,
            "query": self.query,
            "headers": dict(self.headers),
            "body": self.body.decode("utf-8", errors="replace"),
            "status": self.status,
            "fault": self.fault,
            "timestamp": self.timestamp,
            "identifier": self.identifier,
        }


class RequestLog:
    """Thread-safe bounded log of API requests plus counters that count past its bound."""

    def __init__(self, max_entries: int) -> None:
        self._lock = threading.Lock()
        self._entries: deque[RecordedRequest] = deque(maxlen=max_entries)
        self._by_status: Counter[str] = Counter()
        self._faults: Counter[str] = Counter()

    def record(self, entry: RecordedRequest) -> None:
        """Append one answered (or dropped) request."""
        status = "dropped" if entry.status is None else str(entry.status)
        with self._lock:
            self._entries.append(entry)
            self._by_status[f"{entry.method} {status}"] += 1
            if entry.fault:
                self._faults[entry.fault] += 1

    def entries(self) -> list[RecordedRequest]:
        """Snapshot of the log, oldest first."""
        with self._lock:
            return list(self._entries)

    def clear(self) -> None:
        """Empty the log and zero the counters, so that both describe the requests since."""
        with self._lock:
            self._entries.clear()
            self._by_status.clear()
            self._faults.clear()

    def stats(self) -> dict[str, Any]:
        """Request counts by ``"METHOD STATUS"`` (``dropped`` for no answer) and faults by kind."""
        with self._lock:
            return {
                "total": sum(self._by_status.values()),
                "requests": dict(sorted(self._by_status.items())),
                "faults": dict(sorted(self._faults.items())),
            }
