"""Smoke-test an installed airflow-provider-kumulos (from its wheel) with a throwaway AIRFLOW_HOME.

Run with the Python of the environment under test, from outside the source tree. Checks, in order: the
installed package (version, py.typed, not the source tree), ``airflow providers list/get``, the ``kumulos``
connection type and its form behaviour, the emulator starting as a process, and a small DAG using the
provider running to success under ``airflow dags test`` against that emulator. Standard library only
(plus the shared helpers in bench/_common.py).

Usage: python smoke_test.py --expect-version X.Y.Z --expect-airflow A.B.C
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
from _common import airflow_env, emulator_process  # shared helpers, standard library only

PACKAGE = "airflow-provider-kumulos"
SMOKE_USER, SMOKE_ATTRIBUTES = "smoke-user", {"plan": "gold", "score": 7}

SMOKE_DAG = f'''
"""Release smoke test: a round trip through KumulosCRMHook inside a real task."""

from __future__ import annotations

from datetime import datetime, timezone

from airflow.sdk import dag, task


@dag(dag_id="kumulos_smoke", schedule=None, start_date=datetime(2025, 1, 1, tzinfo=timezone.utc))
def kumulos_smoke():
    @task
    def round_trip() -> dict:
        from airflow_provider_kumulos.hooks.kumulos import KumulosCRMHook

        hook = KumulosCRMHook()
        ok, message = hook.test_connection()
        if not ok:
            raise RuntimeError(message)
        page = hook.fetch_users_page(1, 10)
        hook.set_attributes({SMOKE_USER!r}, {SMOKE_ATTRIBUTES!r})
        if hook.get_attributes({SMOKE_USER!r}) != {SMOKE_ATTRIBUTES!r}:
            raise RuntimeError("attributes did not round-trip")
        hook.delete_attributes(page.users[0]["identifier"])
        return {{"users_seen": len(page.users), "total_users": page.total_users}}

    round_trip()


kumulos_smoke()
'''


BEHAVIOUR_PROBE = """
import importlib.util, json
import airflow
from airflow.providers_manager import ProvidersManager
from airflow_provider_kumulos.hooks.kumulos import KumulosCRMHook
print(json.dumps({
    "manager": ProvidersManager().field_behaviours.get("kumulos"),
    "hook": KumulosCRMHook.get_ui_field_behaviour(),
    "wtforms": importlib.util.find_spec("wtforms") is not None,
    "airflow": [int(part) for part in airflow.__version__.split(".")[:2]],
}))
"""


class SmokeFailure(Exception):
    """One check failed; the message says which and why."""


def run(command: list[str], env: dict[str, str], timeout: float = 300) -> str:
    """Run a command; return its stdout, or fail with the tail of its output."""
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout, check=False)
    if result.returncode != 0:
        tail = (result.stdout + result.stderr)[-3000:]
        raise SmokeFailure(f"`{' '.join(command[-4:])}` exited {result.returncode}:\n{tail}")
    return result.stdout


def airflow_json(env: dict[str, str], *args: str) -> Any:
    """``airflow <args> -o json``, parsed."""
    airflow = str(Path(sys.executable).with_name("airflow"))
    return json.loads(run([airflow, *args, "-o", "json"], env))


def http_json(url: str) -> Any:
    """GET a JSON document from the emulator."""
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.load(response)


def check_installed_package(expect_version: str, expect_airflow: str) -> str:
    import airflow_provider_kumulos

    location = Path(airflow_provider_kumulos.__file__).resolve().parent
    if "site-packages" not in location.parts:
        raise SmokeFailure(f"imported the package from {location}, not from the installed wheel")
    if airflow_provider_kumulos.__version__ != expect_version:
        raise SmokeFailure(
            f"__version__ is {airflow_provider_kumulos.__version__}, expected {expect_version}"
        )
    if not (location / "py.typed").is_file():
        raise SmokeFailure(f"py.typed missing from {location}")
    airflow_version = importlib.metadata.version("apache-airflow")
    if airflow_version != expect_airflow:
        raise SmokeFailure(f"apache-airflow {airflow_version} installed, expected {expect_airflow}")
    return f"{PACKAGE} {expect_version} from site-packages with py.typed, on apache-airflow {airflow_version}"


def check_providers_cli(env: dict[str, str], version: str) -> str:
    listed = {row["package_name"]: row["version"] for row in airflow_json(env, "providers", "list")}
    if listed.get(PACKAGE) != version:
        raise SmokeFailure(f"`airflow providers list` shows {listed.get(PACKAGE)!r} for {PACKAGE}")
    got = airflow_json(env, "providers", "get", PACKAGE)
    if got != [{"Provider": PACKAGE, "Version": version}]:
        raise SmokeFailure(f"`airflow providers get {PACKAGE}` printed {got}")
    return "`airflow providers list` and `airflow providers get` show it"


def check_connection_type(env: dict[str, str]) -> str:
    hooks = {row["connection_type"]: row for row in airflow_json(env, "providers", "hooks")}
    if hooks.get("kumulos", {}).get("class") != "airflow_provider_kumulos.hooks.kumulos.KumulosCRMHook":
        raise SmokeFailure(
            f"`airflow providers hooks` has no kumulos connection type: {hooks.get('kumulos')}"
        )
    behaviour = json.loads(run([sys.executable, "-c", BEHAVIOUR_PROBE], env).strip().splitlines()[-1])
    layout, source = behaviour["manager"], "ProvidersManager"
    # Before 3.2 Airflow reads form layouts only from hooks, and only when wtforms is installed (FAB).
    if layout is None and not behaviour["wtforms"] and behaviour["airflow"] < [3, 2]:
        layout, source = behaviour["hook"], "the hook (this Airflow shows form layouts only with wtforms)"
    expected = {
        "hidden_fields": ["schema", "port"],
        "host_label": "Base URL",
        "host_placeholder": "https://crm.kumulos.com",
    }
    seen = {
        "hidden_fields": (layout or {}).get("hidden_fields"),
        "host_label": (layout or {}).get("relabeling", {}).get("host"),
        "host_placeholder": (layout or {}).get("placeholders", {}).get("host"),
    }
    if seen != expected:
        raise SmokeFailure(f"the kumulos form layout from {source} is {layout}")
    return f"connection type `kumulos` is known, its form layout comes from {source}"


def check_dag_run(env: dict[str, str], home: Path) -> str:
    run([str(Path(sys.executable).with_name("airflow")), "db", "migrate"], env, timeout=600)
    (home / "dags" / "kumulos_smoke.py").write_text(SMOKE_DAG)
    with emulator_process(200, home, env=env) as emulator:
        base_url = emulator.base_url
        dag_env = {**env, "AIRFLOW_CONN_KUMULOS_DEFAULT": emulator.connection_json()}
        run(
            [str(Path(sys.executable).with_name("airflow")), "dags", "test", "kumulos_smoke"],
            dag_env,
            timeout=600,
        )
        user = http_json(f"{base_url}/_emulator/users/{SMOKE_USER}")
        calls = {
            (entry["method"], entry["status"])
            for entry in http_json(f"{base_url}/_emulator/requests")["requests"]
        }
    if user.get("attributes") != SMOKE_ATTRIBUTES:
        raise SmokeFailure(f"the DAG run did not leave {SMOKE_USER}'s attributes in the emulator: {user}")
    if not {("GET", 200), ("PUT", 200), ("DELETE", 204)} <= calls:
        raise SmokeFailure(f"the emulator did not see the expected calls, only {sorted(calls)}")
    return f"`airflow dags test kumulos_smoke` succeeded against the emulator at {base_url}"


def main() -> int:
    """Run every check in a throwaway AIRFLOW_HOME; stop at the first failure."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--expect-version", required=True)
    parser.add_argument("--expect-airflow", required=True)
    args = parser.parse_args()

    home = Path(tempfile.mkdtemp(prefix="kumulos-smoke-"))
    env = airflow_env(home)
    checks: list[tuple[str, Callable[[], str]]] = [
        ("installed package", lambda: check_installed_package(args.expect_version, args.expect_airflow)),
        ("providers CLI", lambda: check_providers_cli(env, args.expect_version)),
        ("connection type", lambda: check_connection_type(env)),
        ("DAG run", lambda: check_dag_run(env, home)),
    ]
    try:
        for name, check in checks:
            began = time.monotonic()
            try:
                detail = check()
            except SmokeFailure as failure:
                print(f"FAIL {name}: {failure}", file=sys.stderr)
                return 1
            print(f"ok   {name}: {detail} ({time.monotonic() - began:.1f}s)", flush=True)
    finally:
        shutil.rmtree(home, ignore_errors=True)
    print(f"smoke test passed: {len(checks)} checks")
    return 0


if __name__ == "__main__":
    sys.exit(main())
