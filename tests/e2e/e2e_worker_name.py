"""``[core] hostname_callable`` for the Celery phase: each worker reports its own name to the API."""

from __future__ import annotations

import os
import socket


def worker_name() -> str:
    """The worker's name from ``KUMULOS_E2E_WORKER_NAME`` (set per worker), else the host name."""
    return os.environ.get("KUMULOS_E2E_WORKER_NAME") or socket.getfqdn()
