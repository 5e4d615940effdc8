"""Smoke-test an installed airflow-provider-kumulos (from its wheel) with a throwaway AIRFLOW_HOME.

Run with the Python of the environment under test, from outside the source tree. Checks, in order: the
installed package (version, py.typed, not the source tree), ``airflow providers list/get``, the ``kumulos``
connection type and its form behaviour, the emulator starting as a process, and the onboarding example
DAG (deferrable sensor, set and delete attributes) running to success under ``airflow dags test`` against
it. Standard library only (plus the shared helpers in bench/_common.py).

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
# The example the README points to first: deferrable sensor, then set and delete attributes.
EXAMPLE_DAG = Path(__file__).resolve().parent.parent / "example_dags" / "kumulos_onboarding.py"
EXAMPLE_DAG_ID = "kumulos_onboarding"

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
        "host_placeholder": "https://crm.kumulos.com (default); no scheme means https://",
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
    airflow = str(Path(sys.executable).with_name("airflow"))
    run([airflow, "db", "migrate"], env, timeout=600)
    shutil.copy(EXAMPLE_DAG, home / "dags" / EXAMPLE_DAG.name)
    with emulator_process(200, home, env=env) as emulator:
        user_id = http_json(f"{emulator.base_url}/_emulator/users")["identifiers"][0]
        dag_env = {**env, "AIRFLOW_CONN_KUMULOS_DEFAULT": emulator.connection_json()}
        conf = json.dumps({"user_id": user_id})
        run([airflow, "dags", "test", EXAMPLE_DAG_ID, "-c", conf], dag_env, timeout=600)
        user = http_json(f"{emulator.base_url}/_emulator/users/{user_id}")
        calls = [
            (entry["method"], entry["status"], "onboarding_stage" in entry["body"])
            for entry in http_json(f"{emulator.base_url}/_emulator/requests")["requests"]
            if entry["path"] == f"/v1/users/{user_id}/attributes"
        ]
    expected = [("GET", 200, False), ("PUT", 200, True), ("DELETE", 204, False)]
    if [call for call in calls if call[0] != "GET"] != expected[1:] or expected[0] not in calls:
        raise SmokeFailure(
            f"the emulator saw {calls} for {user_id}, expected sensor GET, then PUT and DELETE"
        )
    if user.get("attributes"):
        raise SmokeFailure(f"{user_id} still has attributes after the run: {user}")
    return f"`airflow dags test {EXAMPLE_DAG_ID}` (sensor, set, delete) succeeded against the emulator"


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
