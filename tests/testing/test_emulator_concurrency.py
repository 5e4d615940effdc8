"""The emulator under a burst of concurrent clients, as a load test or a busy triggerer makes."""

from __future__ import annotations

import asyncio
import base64
import time

from airflow_provider_kumulos.testing.emulator import KumulosEmulator

CLIENTS = 1000


async def _one_client(emulator: KumulosEmulator, user_id: str) -> tuple[float, bytes]:
    """Connect, ask for one user's attributes, return (seconds the connect took, status line)."""
    started = time.monotonic()
    reader, writer = await asyncio.open_connection(emulator.host, emulator.port)
    connected = time.monotonic() - started
    token = base64.b64encode(f"{emulator.api_key}:{emulator.server_key}".encode()).decode()
    writer.write(
        f"GET /v1/users/{user_id}/attributes HTTP/1.1\r\nHost: {emulator.host}\r\n"
        f"Authorization: Basic {token}\r\nConnection: close\r\n\r\n".encode()
    )
    await writer.drain()
    status_line = await asyncio.wait_for(reader.readline(), timeout=60)
    writer.close()
    await writer.wait_closed()
    return connected, status_line


def test_a_thousand_concurrent_clients_are_all_accepted_at_once_and_answered(
    kumulos_emulator: KumulosEmulator,
) -> None:
    user_id = kumulos_emulator.user_ids()[0]

    async def burst() -> list[tuple[float, bytes]]:
        return await asyncio.gather(*(_one_client(kumulos_emulator, user_id) for _ in range(CLIENTS)))

    results = asyncio.run(burst())
    # A connection beyond a full listen backlog has its SYN dropped and retried a second later.
    assert max(connected for connected, _ in results) < 0.9
    assert {status for _, status in results} == {b"HTTP/1.1 200 OK\r\n"}
    assert len(kumulos_emulator.requests) == CLIENTS
