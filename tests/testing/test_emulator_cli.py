"""What a newcomer meets: the emulator started as a process, its printed connection and its admin API."""

from __future__ import annotations

import re
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from airflow_provider_kumulos.hooks.kumulos import KumulosCRMHook
from airflow_provider_kumulos.testing._emulator_admin import ADMIN_ROUTES, routes_markdown
from airflow_provider_kumulos.testing.emulator import (
    DEFAULT_API_KEY,
    DEFAULT_SERVER_KEY,
    KumulosEmulator,
    make_self_signed_cert,
)

README = Path(__file__).resolve().parents[2] / "README.md"
EMULATOR = [sys.executable, "-m", "airflow_provider_kumulos.testing.emulator"]


def _start(tmp_path: Path, *args: str) -> tuple[subprocess.Popen[str], list[str]]:
    """Start the emulator process; return it with the lines it printed once listening."""
    ready = tmp_path / "ready.txt"
    process = subprocess.Popen(
        [*EMULATOR, "--port", "0", "--users", "7", "--ready-file", str(ready), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 20
    while not ready.exists():
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "emulator did not start"
        time.sleep(0.05)
    assert process.stdout is not None
    return process, [process.stdout.readline().rstrip("\n") for _ in range(4)]


@pytest.fixture
def stop_after() -> Iterator[list[subprocess.Popen[str]]]:
    started: list[subprocess.Popen[str]] = []
    yield started
    for process in started:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=10)


def _exported_connection(lines: list[str]) -> str:
    """The value of the printed ``export AIRFLOW_CONN_KUMULOS_DEFAULT=...`` line, as a shell reads it."""
    (line,) = [line for line in lines if line.startswith("export ")]
    (assignment,) = shlex.split(line.removeprefix("export "))
    name, _, value = assignment.partition("=")
    assert name == "AIRFLOW_CONN_KUMULOS_DEFAULT"
    return value


def test_printed_connection_works_with_the_hook(
    tmp_path: Path, stop_after: list[subprocess.Popen[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    process, lines = _start(tmp_path)
    stop_after.append(process)
    base_url = (tmp_path / "ready.txt").read_text()
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+", base_url)
    assert lines[0] == f"Kumulos CRM emulator listening on {base_url} (7 users)"
    assert f"Admin API: {base_url}/_emulator/" in lines[1]
    assert requests.get(f"{base_url}/_emulator/health", timeout=5).json()["status"] == "ok"

    monkeypatch.setenv("AIRFLOW_CONN_KUMULOS_DEFAULT", _exported_connection(lines))
    hook = KumulosCRMHook()
    assert hook.config.base_url == base_url
    assert hook.fetch_users_page(1, 100).total_users == 7
    assert hook.test_connection() == (True, "Connected to Kumulos: the app has 7 users.")


def test_printed_connection_trusts_the_tls_certificate(
    tmp_path: Path, stop_after: list[subprocess.Popen[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    cert, key = make_self_signed_cert(tmp_path / "tls")
    process, lines = _start(tmp_path, "--tls-cert", str(cert), "--tls-key", str(key))
    stop_after.append(process)
    monkeypatch.setenv("AIRFLOW_CONN_KUMULOS_DEFAULT", _exported_connection(lines))
    hook = KumulosCRMHook()
    assert hook.config.base_url.startswith("https://127.0.0.1:")
    assert hook.fetch_users_page(1, 100).total_users == 7


def test_printed_connection_carries_custom_keys(
    tmp_path: Path, stop_after: list[subprocess.Popen[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    process, lines = _start(tmp_path, "--api-key", "it's", "--server-key", "S e")
    stop_after.append(process)
    monkeypatch.setenv("AIRFLOW_CONN_KUMULOS_DEFAULT", _exported_connection(lines))
    assert KumulosCRMHook().fetch_users_page(1, 1).total_users == 7


def test_help_names_the_default_keys_and_the_admin_routes() -> None:
    result = subprocess.run([*EMULATOR, "--help"], capture_output=True, text=True, timeout=60, check=True)
    text = " ".join(result.stdout.split())
    assert f"API key '{DEFAULT_API_KEY}'" in text
    assert f"server key '{DEFAULT_SERVER_KEY}'" in text
    assert "PUT /users/{id}/attributes" in text


# -- admin API: setting attributes -------------------------------------------------------------


@pytest.fixture
def emu() -> Iterator[KumulosEmulator]:
    with KumulosEmulator(users=3) as emulator:
        yield emulator


def test_admin_put_attributes_replaces_an_existing_users_attributes(emu: KumulosEmulator) -> None:
    first = emu.user_ids()[0]
    answer = requests.put(f"{emu.admin_url}/users/{first}/attributes", json={"tier": "gold"}, timeout=5)
    assert answer.status_code == 200
    assert answer.json()["attributes"] == {"tier": "gold"} == emu.get_attributes(first)
    assert answer.json()["identifier"] == first
    assert len(emu.user_ids()) == 3
    assert emu.requests == []  # admin requests are not API requests


def test_admin_put_attributes_creates_a_missing_user(emu: KumulosEmulator) -> None:
    answer = requests.put(f"{emu.admin_url}/users/a%2Fb/attributes", json={"x": [1, 2]}, timeout=5)
    assert answer.status_code == 201
    assert emu.get_user("a/b") == answer.json()
    assert emu.get_attributes("a/b") == {"x": [1, 2]}


@pytest.mark.parametrize("body", [b"[1]", b'"x"', b"{not json"])
def test_admin_put_attributes_needs_a_json_object(emu: KumulosEmulator, body: bytes) -> None:
    first = emu.user_ids()[0]
    before = emu.get_attributes(first)
    answer = requests.put(f"{emu.admin_url}/users/{first}/attributes", data=body, timeout=5)
    assert answer.status_code == 422
    assert emu.get_attributes(first) == before


def test_admin_attributes_route_allows_only_put(emu: KumulosEmulator) -> None:
    first = emu.user_ids()[0]
    assert requests.post(f"{emu.admin_url}/users/{first}/attributes", json={}, timeout=5).status_code == 405
    assert requests.put(f"{emu.admin_url}/users/{first}/other", json={}, timeout=5).status_code == 404


def test_every_admin_route_answers_its_method(emu: KumulosEmulator) -> None:
    first = emu.user_ids()[0]
    for route in ADMIN_ROUTES:
        path = route.path.replace("{id}", first)
        bodies = {"/users": {"identifier": "new-one"}, "/associate": {"share": 0.1, "attributes": {}}}
        body = bodies.get(route.path, {})
        answer = requests.request(route.method, f"{emu.admin_url}{path}", json=body, timeout=5)
        assert answer.status_code in (200, 201, 204), (route.method, route.path, answer.text)


def test_readme_documents_every_admin_route() -> None:
    assert routes_markdown() in README.read_text(), (
        "README's admin API table differs from the routes: paste the output of "
        "python -c 'from airflow_provider_kumulos.testing._emulator_admin import routes_markdown as r; "
        'print(r(), end="")\''
    )
