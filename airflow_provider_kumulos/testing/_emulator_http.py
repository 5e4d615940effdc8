"""HTTP/1.1 transport of the emulator: threaded server, request parsing, single-write responses.

It knows nothing about Kumulos: each request becomes a :class:`Request` handed to an ``app``
callable that returns a :class:`Response`, or None to drop the connection unanswered.
"""

from __future__ import annotations

import contextlib
import json
import socket
import socketserver
import ssl
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from email.utils import formatdate
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from airflow_provider_kumulos.testing._emulator_log import Headers


@dataclass(frozen=True)
class Request:
    """One parsed request. ``segments`` are the raw path's ``/``-separated parts, each decoded
    on its own, so an encoded ``%2F`` stays inside its segment."""

    method: str
    raw_path: str
    path: str
    segments: list[str]
    query: dict[str, list[str]]
    headers: Headers
    body: bytes
    received_at: float

    @classmethod
    def parse(cls, method: str, target: str, headers: Headers, body: bytes, received_at: float) -> Request:
        """Split a request target (origin- or absolute-form) into path, segments and query."""
        rest = target
        if not target.startswith("/") and "://" in target:
            parts = urlsplit(target)
            rest = target[len(f"{parts.scheme}://{parts.netloc}") :] or "/"
        raw_path, _, query = rest.partition("?")
        return cls(
            method=method,
            raw_path=target,
            path=unquote(raw_path),
            segments=[unquote(part) for part in raw_path.split("/")],
            query=parse_qs(query, keep_blank_values=True),
            headers=headers,
            body=body,
            received_at=received_at,
        )


@dataclass(frozen=True)
class Response:
    """A complete answer; ``body`` is sent as is with a matching Content-Length."""

    status: int
    body: bytes = b""
    content_type: str | None = "application/json"
    headers: list[tuple[str, str]] = field(default_factory=list)

    @classmethod
    def json(cls, status: int, payload: Any, headers: list[tuple[str, str]] | None = None) -> Response:
        """A JSON response."""
        return cls(status, json.dumps(payload).encode(), headers=headers or [])

    @classmethod
    def error(cls, status: int, message: str, headers: list[tuple[str, str]] | None = None) -> Response:
        """A JSON error of the shape ``{"status", "error", "message"}``."""
        payload = {"status": status, "error": HTTPStatus(status).phrase, "message": message}
        return cls.json(status, payload, headers)

    @classmethod
    def empty(cls, status: int = 204) -> Response:
        """No body (204)."""
        return cls(status, content_type=None)


App = Callable[[Request], "Response | None"]

_REASONS = {status.value: status.phrase for status in HTTPStatus}
_NO_BODY = {204, 304}


class _Handler(BaseHTTPRequestHandler):
    """Parses each request, asks the app, writes the answer in one ``sendall``."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server_version = "KumulosEmulator/1.0"
    timeout = 300  # idle keep-alive connections are closed after five minutes
    server: EmulatorHTTPServer

    def setup(self) -> None:
        super().setup()
        if isinstance(self.connection, ssl.SSLSocket):
            self.connection.do_handshake()  # here, not in accept(), so a slow client blocks nobody
        self.server.track(self.connection)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.untrack(self.connection)

    def log_message(self, format: str, *args: Any) -> None:
        """Stay quiet: one line per request would swamp test output."""

    def _serve(self) -> None:
        received_at = time.time()
        try:
            body = self._read_body()
        except ValueError as exc:
            self.close_connection = True
            self._write(Response.error(400, str(exc)))
            return
        target = self.requestline.split()[1]
        request = Request.parse(self.command, target, Headers(self.headers.items()), body, received_at)
        response = self.server.app(request)
        if response is None:
            self.close_connection = True
            return
        self._write(response)

    do_GET = do_PUT = do_DELETE = do_POST = do_PATCH = do_HEAD = do_OPTIONS = _serve

    def _read_body(self) -> bytes:
        """The request body per Content-Length or chunked transfer coding."""
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks: list[bytes] = []
            while True:
                size_line = self.rfile.readline(1024).split(b";")[0].strip()
                try:
                    size = int(size_line, 16)
                except ValueError:
                    raise ValueError("malformed chunked body") from None
                if size == 0:
                    while self.rfile.readline(1024).strip():  # trailers
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline(1024)
        length = self.headers.get("Content-Length")
        if length is None:
            return b""
        if not length.strip().isdigit():
            raise ValueError("malformed Content-Length")
        return self.rfile.read(int(length))

    def _write(self, response: Response) -> None:
        """Status line, headers and body as one buffer: one write, no Nagle delays."""
        lines = [
            f"HTTP/1.1 {response.status} {_REASONS.get(response.status, 'Unknown')}",
            f"Date: {formatdate(usegmt=True)}",
            f"Server: {self.server_version}",
        ]
        if response.content_type:
            lines.append(f"Content-Type: {response.content_type}")
        if response.status not in _NO_BODY:
            lines.append(f"Content-Length: {len(response.body)}")
        lines.extend(f"{name}: {value}" for name, value in response.headers)
        if self.close_connection:
            lines.append("Connection: close")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        send_body = self.command != "HEAD" and response.status not in _NO_BODY
        self.wfile.write(head + response.body if send_body else head)


class EmulatorHTTPServer(ThreadingHTTPServer):
    """Threaded server with a large backlog that can close its open connections on shutdown."""

    daemon_threads = True
    block_on_close = False  # idle keep-alive threads must not block stop()
    #: Connections the kernel completes before the accept loop takes them (capped by somaxconn):
    #: a thousand clients starting at once are queued, not refused or left retrying their SYN.
    request_queue_size = 4096
    allow_reuse_address = True

    def __init__(self, host: str, port: int, app: App, ssl_context: ssl.SSLContext | None = None) -> None:
        self.address_family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.app = app
        self.ssl_context = ssl_context
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__((host, port), _Handler)

    def server_bind(self) -> None:
        # Skips HTTPServer.server_bind: its reverse DNS look-up (getfqdn) is slow on some hosts.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = str(self.server_address[0]), int(self.server_address[1])

    def get_request(self) -> tuple[socket.socket, Any]:
        sock, address = self.socket.accept()
        if self.ssl_context is not None:
            sock = self.ssl_context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        return sock, address

    def track(self, sock: socket.socket) -> None:
        with self._connections_lock:
            self._connections.add(sock)

    def untrack(self, sock: socket.socket) -> None:
        with self._connections_lock:
            self._connections.discard(sock)

    def close_connections(self) -> None:
        """Shut down every open client connection (after :meth:`shutdown`)."""
        with self._connections_lock:
            connections = list(self._connections)
        for sock in connections:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Ignore clients going away mid-request; report anything else."""
        if not isinstance(sys.exc_info()[1], OSError):
            super().handle_error(request, client_address)
