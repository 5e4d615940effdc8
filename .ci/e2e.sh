#!/usr/bin/env bash
# End-to-end deployment test: the example DAGs on a real Airflow 3 deployment on loopback
# (PostgreSQL, api-server, scheduler with LocalExecutor, dag-processor, triggerer; Airflow's UI
# checked in Chromium; then the parallel export again on CeleryExecutor with two workers and
# Redis). See docs/deployment.md.
#
# Environment knobs:
#   KUMULOS_E2E_CELERY=0     skip the CeleryExecutor repeat and the fault scenarios (default 1)
#   KUMULOS_E2E_CHAOS=0      skip the fault scenarios; "only" runs them without the regular checks (default 1)
#   KUMULOS_E2E_SCENARIOS=L  comma-separated fault scenarios to run, e.g. 2a,6 (default: all)
#   KUMULOS_E2E_BROWSER=0    skip the UI checks in Chromium (default 1)
#   KUMULOS_E2E_USERS=N      users served by the emulator (default 500)
#   KUMULOS_E2E_TIMEOUT=S    hard limit for the whole driver in seconds (default 1200)
#   KUMULOS_E2E_RUN_DIR=DIR  scratch directory, logs are kept there (default: a new temp dir)
set -euo pipefail

cd "$(dirname "$0")/.."
CELERY="${KUMULOS_E2E_CELERY:-1}"
CHAOS="${KUMULOS_E2E_CHAOS:-1}"
BROWSER="${KUMULOS_E2E_BROWSER:-1}"
USERS="${KUMULOS_E2E_USERS:-500}"
LIMIT="${KUMULOS_E2E_TIMEOUT:-1200}"
RUN_DIR="${KUMULOS_E2E_RUN_DIR:-$(mktemp -d -t kumulos-e2e-XXXXXX)}"
E2E_VENV=.venv-e2e
started=$(date +%s)

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

apt_updated=0
apt_install() {
    if [ "$apt_updated" -eq 0 ]; then
        as_root apt-get update -qq
        apt_updated=1
    fi
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

# Whatever the driver leaves behind if it is itself killed: its services' process groups and
# the PostgreSQL cluster (started by pg_ctl, so outside those groups).
cleanup() {
    local status=$?
    if [ -f "$RUN_DIR/pgids" ]; then
        while read -r pgid _name; do
            kill -KILL -- "-$pgid" 2>/dev/null || true
        done <"$RUN_DIR/pgids"
    fi
    if [ -f "$RUN_DIR/pgdata" ] && [ -d "$(cat "$RUN_DIR/pgdata")" ]; then
        pg_ctl_bin=$(ls -d /usr/lib/postgresql/*/bin/pg_ctl | sort -V | tail -n 1)
        if [ "$(id -u)" -eq 0 ]; then
            runuser -u postgres -- "$pg_ctl_bin" -D "$(cat "$RUN_DIR/pgdata")" -m immediate stop >/dev/null 2>&1 || true
        else
            "$pg_ctl_bin" -D "$(cat "$RUN_DIR/pgdata")" -m immediate stop >/dev/null 2>&1 || true
        fi
    fi
    echo "[e2e] finished with status $status after $(($(date +%s) - started))s; logs in $RUN_DIR/logs"
    exit "$status"
}
trap cleanup EXIT

echo "[e2e] system packages"
if ! ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1; then
    apt_install postgresql
fi
if [ "$CELERY" = "1" ] && ! command -v redis-server >/dev/null; then
    apt_install redis-server
fi
# Debian's Chromium, driven by Playwright's Python package (never a browser build of its own).
if [ "$BROWSER" = "1" ] && [ ! -x /usr/bin/chromium ]; then
    apt_install chromium
fi

echo "[e2e] Python environment $E2E_VENV"
if [ ! -x "$E2E_VENV/bin/python" ]; then
    python3 -m venv "$E2E_VENV"
fi
"$E2E_VENV/bin/pip" install -q uv
requirements=(-e ".[s3,sql]" "apache-airflow[postgres]==3.3.2" "moto[server,s3]")
if [ "$CELERY" = "1" ]; then
    # celery 5.7 dropped celery.backends.database.retry, which the Celery provider imports.
    requirements+=("apache-airflow-providers-celery" "celery[redis]<5.7")
fi
if [ "$BROWSER" = "1" ]; then
    requirements+=("playwright>=1.49,<2")
fi
"$E2E_VENV/bin/uv" pip install -q --python "$E2E_VENV/bin/python" "${requirements[@]}"

args=(--users "$USERS" --run-dir "$RUN_DIR" --browser "$BROWSER")
if [ "$CELERY" = "1" ]; then
    args+=(--celery --chaos "$CHAOS" --scenarios "${KUMULOS_E2E_SCENARIOS:-1,3,6,4,5,2a,2b}")
else
    args+=(--chaos 0)
fi
echo "[e2e] deployment test (limit ${LIMIT}s, run dir $RUN_DIR)"
timeout --signal=TERM --kill-after=60 "$LIMIT" "$E2E_VENV/bin/python" tests/e2e/run_deployment.py "${args[@]}"
