"""A local Kumulos CRM API server for offline tests, like moto for AWS.

It speaks real HTTP on a real socket (optionally TLS), serves deterministic synthetic users,
records every request, and injects faults on demand (error statuses, 429 with ``Retry-After``,
dropped connections, slow, truncated or non-JSON answers, users appearing and vanishing while a
client pages). Standard library only.

In-process::

    with KumulosEmulator(users=1000) as emu:
        os.environ["AIRFLOW_CONN_KUMULOS_DEFAULT"] = emu.connection_uri()
        ...

As a separate process (then drive it through the ``/_emulator/`` admin API)::

    python -m airflow_provider_kumulos.testing.emulator --port 8080 --users 10000

Once listening, the process prints its admin API URL and an ``export AIRFLOW_CONN_KUMULOS_DEFAULT=...``
line that connects to it (with the keys it accepts, :data:`DEFAULT_API_KEY` and
:data:`DEFAULT_SERVER_KEY` unless told otherwise).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import signal
import sys
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any

from airflow_provider_kumulos.testing._emulator_admin import ADMIN_PREFIX, ADMIN_ROUTES, handle_admin
from airflow_provider_kumulos.testing._emulator_api import fault_response, handle_api
from airflow_provider_kumulos.testing._emulator_data import REFERENCE_DATE
from airflow_provider_kumulos.testing._emulator_faults import Fault, FaultPlan, FaultRates
from airflow_provider_kumulos.testing._emulator_http import EmulatorHTTPServer, Request, Response
from airflow_provider_kumulos.testing._emulator_log import RecordedRequest, RequestLog
from airflow_provider_kumulos.testing._emulator_store import UserStore
from airflow_provider_kumulos.testing._emulator_tls import make_self_signed_cert, server_context

__all__ = [
    "DEFAULT_API_KEY",
    "DEFAULT_SERVER_KEY",
    "REFERENCE_DATE",
    "Fault",
    "KumulosEmulator",
    "RecordedRequest",
    "connection_json",
    "main",
    "make_self_signed_cert",
]


#: The credentials the emulator accepts unless given others (``--api-key``, ``--server-key``).
DEFAULT_API_KEY = "test-api-key"
DEFAULT_SERVER_KEY = "test-server-key"


def connection_json(base_url: str, api_key: str, server_key: str, **extra: Any) -> str:
    """An Airflow JSON connection of type ``kumulos`` for an emulator (in this process or another)."""
    return json.dumps(
        {"conn_type": "kumulos", "host": base_url, "login": api_key, "password": server_key, "extra": extra}
    )


def _requested_page(request: Request) -> int | None:
    """The ``currentPage`` a request asks for, if it names one as a number."""
    values = request.query.get("currentPage")
    return int(values[0]) if values and values[0].isdigit() else None


class KumulosEmulator:
    """An in-process Kumulos CRM API server; use as a context manager (or start()/stop())."""

    #: Oldest entries fall out of :attr:`requests` beyond this many (counters keep counting).
    MAX_LOGGED_REQUESTS = 100_000

    def __init__(
        self,
        users: int = 100,
        seed: int = 0,
        api_key: str = DEFAULT_API_KEY,
        server_key: str = DEFAULT_SERVER_KEY,
        host: str = "127.0.0.1",
        port: int = 0,
        latency: float = 0.0,
        tls_cert: str | os.PathLike[str] | None = None,
        tls_key: str | os.PathLike[str] | None = None,
    ) -> None:
        if (tls_cert is None) != (tls_key is None):
            raise ValueError("tls_cert and tls_key go together")
        self.api_key = api_key
        self.server_key = server_key
        self.host = host
        self._requested_port = port
        self._users, self._seed = users, seed
        self._store = UserStore(users, seed)
        self._faults = FaultPlan(latency)
        self._log = RequestLog(self.MAX_LOGGED_REQUESTS)
        self._ssl_context = None if tls_cert is None or tls_key is None else server_context(tls_cert, tls_key)
        self._server: EmulatorHTTPServer | None = None
        self._port: int | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> KumulosEmulator:
        """Bind and serve in a background thread; returns self."""
        if self._server is not None:
            raise RuntimeError("emulator already started")
        self._server = EmulatorHTTPServer(self.host, self._requested_port, self._handle, self._ssl_context)
        self._port = self._server.server_port
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="kumulos-emulator",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close every open connection (idempotent)."""
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        server.close_connections()
        if self._thread is not None:
            self._thread.join()

    def __enter__(self) -> KumulosEmulator:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def port(self) -> int:
        """The bound port (useful with ``port=0``); kept after stop()."""
        if self._port is None:
            raise RuntimeError("emulator not started")
        return self._port

    @property
    def base_url(self) -> str:
        """``http(s)://host:port``, to use as the connection host."""
        scheme = "https" if self._ssl_context else "http"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{scheme}://{host}:{self.port}"

    def connection_uri(self, **extra: Any) -> str:
        """Airflow JSON connection (for ``AIRFLOW_CONN_...``); ``extra`` becomes the connection extra."""
        return connection_json(self.base_url, self.api_key, self.server_key, **extra)

    @property
    def admin_url(self) -> str:
        """Base URL of the ``/_emulator/`` admin API."""
        return f"{self.base_url}{ADMIN_PREFIX}"

    # -- request handling -----------------------------------------------------------------

    def _handle(self, request: Request) -> Response | None:
        """Admin requests go straight through; API requests get latency, faults and logging."""
        if request.path == ADMIN_PREFIX or request.path.startswith(ADMIN_PREFIX + "/"):
            return handle_admin(request, self)
        fault = self._faults.next_fault(request.method, request.path, _requested_page(request))
        if self._faults.latency > 0:
            time.sleep(self._faults.latency)
        kind = fault.kind if fault else None
        identifier: str | None = None
        response: Response | None = None
        if fault is not None and fault.kind == "slow":
            time.sleep(fault.delay or 0.0)
        if fault is None or fault.kind != "status":
            result = handle_api(request, self._store, self._faults, self.api_key, self.server_key)
            response, identifier = result.response, result.identifier
            if result.rejected and kind is None:
                kind = "reject"
        if fault is not None and fault.kind == "drop":
            response = None  # processed, but the answer is lost: a retry meets the new state
        elif fault is not None and fault.kind != "slow":
            response = fault_response(fault, request, response)
        self._log.record(
            RecordedRequest(
                method=request.method,
                raw_path=request.raw_path,
                path=request.path,
                query=request.query,
                headers=request.headers,
                body=request.body,
                status=None if response is None else response.status,
                fault=kind,
                timestamp=request.received_at,
                identifier=identifier,
            )
        )
        return response

    # -- request log and stats ------------------------------------------------------------

    @property
    def requests(self) -> list[RecordedRequest]:
        """Snapshot of the API requests received so far (admin requests are not recorded)."""
        return self._log.entries()

    def clear_requests(self) -> None:
        """Empty the request log and zero the counts :meth:`stats` reports."""
        self._log.clear()

    def stats(self) -> dict[str, Any]:
        """Request counts by ``"METHOD STATUS"``, injected faults by kind, users, pending faults."""
        return {**self._log.stats(), "users": self._store.count(), "pending_faults": self._faults.pending()}

    # -- user state (direct, no HTTP) -----------------------------------------------------

    def user_ids(self) -> list[str]:
        """Identifiers in paging order."""
        return self._store.user_ids()

    def get_user(self, identifier: str) -> dict[str, Any] | None:
        """Deep copy of the full user object, or None."""
        return self._store.get_user(identifier)

    def users(self) -> list[dict[str, Any]]:
        """Deep copies of all users in paging order."""
        return self._store.users()

    def add_user(
        self, identifier: str, attributes: dict[str, Any] | None = None, **fields: Any
    ) -> dict[str, Any]:
        """Create a user as PUT does (timestamps now, no installs); ``fields`` override top-level
        fields such as ``installs`` or ``lastActive``. ValueError if it exists."""
        return self._store.add_user(identifier, attributes, fields)

    def remove_user(self, identifier: str) -> None:
        """Delete a user entirely (KeyError if missing)."""
        self._store.remove_user(identifier)

    def set_attributes(self, identifier: str, attributes: dict[str, Any]) -> None:
        """Replace a user's attributes, creating the user if missing (like PUT)."""
        self._store.put_attributes(identifier, attributes)

    def get_attributes(self, identifier: str) -> dict[str, Any] | None:
        """A user's attributes, or None when the user does not exist."""
        return self._store.get_attributes(identifier)

    def reset(self, users: int | None = None, seed: int | None = None) -> None:
        """Regenerate the users (same count/seed unless given) and clear faults, drift and the log."""
        self._users = self._users if users is None else users
        self._seed = self._seed if seed is None else seed
        self._store = UserStore(self._users, self._seed)
        self._faults.clear()
        self._log = RequestLog(self.MAX_LOGGED_REQUESTS)

    # -- fault injection ------------------------------------------------------------------

    def script_faults(
        self,
        faults: Iterable[Fault],
        method: str | None = None,
        path_prefix: str | None = None,
        page: int | None = None,
    ) -> None:
        """The next matching API requests get these faults, one each, in order. ``page`` matches
        only ``GET /v2/users`` requests for that page, so a fault lands on the page meant even when
        a client keeps several requests in flight."""
        self._faults.script(faults, method=method, path_prefix=path_prefix, page=page)

    def set_fault_rates(
        self,
        error_5xx: float = 0.0,
        rate_limit: float = 0.0,
        drop: float = 0.0,
        slow: float = 0.0,
        truncated: float = 0.0,
        non_json: float = 0.0,
        retry_after: int | str | None = 1,
        slow_seconds: float = 5.0,
        seed: int = 0,
    ) -> None:
        """Random faults by probability per API request (seeded); all zero turns them off."""
        rates = FaultRates(error_5xx, rate_limit, drop, slow, truncated, non_json, retry_after, slow_seconds)
        self._faults.set_rates(rates, seed)

    def reject_users(self, rejections: Mapping[str, Sequence[Any]]) -> None:
        """Answer GET/PUT/DELETE attributes of these ids with ``(status, json_body)`` every time.
        Replaces earlier rejections (pass ``{}`` to clear)."""
        self._faults.reject({ident: (status, body) for ident, (status, body) in rejections.items()})

    def start_outage(self, seconds: float, status: int = 503, retry_after: int | str | None = None) -> None:
        """Answer every API request with ``status`` for the next ``seconds`` (0 ends it early)."""
        self._faults.outage(seconds, status, retry_after)

    def set_latency(self, seconds: float) -> None:
        """Delay every API answer by ``seconds``."""
        if seconds < 0:
            raise ValueError("latency must be >= 0")
        self._faults.latency = seconds

    def schedule_drift(
        self, after_requests: int, add: list[str] | int | None = None, remove: list[str] | int | None = None
    ) -> None:
        """After the ``after_requests``-th users page answered from now, remove then add users:
        ints mean that many random existing / newly generated users (inserted at random positions,
        so a paging client sees pages shift), lists name the users."""
        self._store.schedule_drift(after_requests, add or [], remove or [])

    def clear_faults(self) -> None:
        """Back to normal: no outage, scripted or random faults, rejections, drift or added latency."""
        self._faults.clear()
        self._store.clear_drift()


# -- command line ---------------------------------------------------------------------------


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m airflow_provider_kumulos.testing.emulator",
        description="Serve an emulated Kumulos CRM API until SIGINT/SIGTERM. It accepts Basic auth with "
        f"the API key {DEFAULT_API_KEY!r} and the server key {DEFAULT_SERVER_KEY!r} unless told otherwise, "
        "and prints an AIRFLOW_CONN_KUMULOS_DEFAULT line that connects to it.",
        epilog=f"Admin API (no auth) under {ADMIN_PREFIX}/: "
        + ", ".join(f"{route.method} {route.path}" for route in ADMIN_ROUTES),
    )
    parser.add_argument("--host", default="127.0.0.1", help="bind address (default: loopback only)")
    parser.add_argument("--port", type=int, default=8080, help="port, 0 picks a free one (default 8080)")
    parser.add_argument("--users", type=int, default=10_000, help="number of generated users")
    parser.add_argument("--seed", type=int, default=0, help="seed of the generated users")
    parser.add_argument(
        "--api-key",
        default=DEFAULT_API_KEY,
        help=f"API key (connection login) to accept (default {DEFAULT_API_KEY})",
    )
    parser.add_argument(
        "--server-key",
        default=DEFAULT_SERVER_KEY,
        help=f"server key (connection password) to accept (default {DEFAULT_SERVER_KEY})",
    )
    parser.add_argument("--latency", type=float, default=0.0, help="seconds added to every answer")
    parser.add_argument("--tls-cert", help="PEM certificate: serve HTTPS")
    parser.add_argument("--tls-key", help="PEM private key of --tls-cert")
    parser.add_argument("--ready-file", type=Path, help="write the base URL here once listening")
    args = parser.parse_args(argv)
    if (args.tls_cert is None) != (args.tls_key is None):
        parser.error("--tls-cert and --tls-key go together")
    return args


def _write_atomically(path: Path, text: str) -> None:
    """Write via a temporary file and rename, so readers never see a partial file."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_text(text)
    os.replace(temporary, path)


def _banner(emulator: KumulosEmulator, args: argparse.Namespace) -> str:
    """What the process prints once listening: where it is, and a connection that works against it."""
    # A self-signed certificate is its own CA: trusting it is what a client needs.
    extra = {"verify": str(Path(args.tls_cert).resolve())} if args.tls_cert else {}
    return "\n".join(
        [
            f"Kumulos CRM emulator listening on {emulator.base_url} ({args.users} users)",
            f"Admin API: {emulator.admin_url}/ (routes: see --help)",
            "Airflow connection kumulos_default for it (paste into the shell that runs Airflow):",
            f"export AIRFLOW_CONN_KUMULOS_DEFAULT={shlex.quote(emulator.connection_uri(**extra))}",
        ]
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run the emulator until SIGINT or SIGTERM, then shut down cleanly (exit status 0)."""
    args = _parse_args(argv)
    stop = threading.Event()

    def _on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGTERM, _on_signal)
    emulator = KumulosEmulator(
        users=args.users,
        seed=args.seed,
        api_key=args.api_key,
        server_key=args.server_key,
        host=args.host,
        port=args.port,
        latency=args.latency,
        tls_cert=args.tls_cert,
        tls_key=args.tls_key,
    )
    with emulator:
        print(_banner(emulator, args), flush=True)
        if args.ready_file:
            _write_atomically(args.ready_file, emulator.base_url)
        try:
            while not stop.wait(0.5):
                pass
        finally:
            if args.ready_file:
                args.ready_file.unlink(missing_ok=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
