#!/usr/bin/env bash
# Release readiness of the distributions in DIST_DIR (`make release-check` builds them first):
# inspect the sdist and wheel, then install ONLY the wheel into fresh virtual environments with the
# newest and with the oldest supported Airflow, then with the newest Airflow on each further Python
# release the package claims, and smoke-test each install (.ci/smoke_test.py).
#
# Usage: .ci/release_check.sh DIST_DIR
# Environment: VENV (development venv with build tools, default .venv), AIRFLOW_NEWEST (default 3.3.2),
# RELEASE_PYTHONS (further interpreters, default "python3.12 python3.13"),
# RELEASE_CHECK_DIR (where the fresh venvs go, default build/release-check).
set -euo pipefail

dist_dir=$(cd "${1:?usage: release_check.sh DIST_DIR}" && pwd)
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
venv=$(cd "${VENV:-.venv}" && pwd)
newest=${AIRFLOW_NEWEST:-3.3.2}
read -r -a pythons <<<"${RELEASE_PYTHONS-python3.12 python3.13}"
work=${RELEASE_CHECK_DIR:-$root/build/release-check}
started=$SECONDS

floor=$("$venv/bin/python" - <<'EOF'
import re
import tomllib

with open("pyproject.toml", "rb") as handle:
    dependencies = tomllib.load(handle)["project"]["dependencies"]
print(next(re.search(r">=\s*([\w.]+)", dep).group(1) for dep in dependencies if dep.startswith("apache-airflow")))
EOF
)

step() { printf '\n--- %s\n' "$*"; }

step "inspect distributions in $dist_dir"
"$venv/bin/twine" check --strict "$dist_dir"/*
version=$("$venv/bin/python" .ci/check_dist.py "$dist_dir")
wheel=$(ls "$dist_dir"/*.whl)

rm -rf "$work"
mkdir -p "$work"
timings=()
# Each check: Airflow release and interpreter (the development venv's Python for the first two).
checks=("$newest $venv/bin/python" "$floor $venv/bin/python")
for python in "${pythons[@]}"; do
    checks+=("$newest $python")
done
for check in "${checks[@]}"; do
    read -r airflow python <<<"$check"
    label="apache-airflow==$airflow on $("$python" -c 'import platform; print("Python", platform.python_version())')"
    step "wheel $version, $label (fresh venv, wheel only)"
    began=$SECONDS
    target=$work/venv-$((${#timings[@]} + 1))
    "$venv/bin/uv" venv -q --python "$python" "$target"
    constraints=()
    if [[ -f .ci/constraints/airflow-$airflow.txt ]]; then
        constraints=(-c ".ci/constraints/airflow-$airflow.txt")
    fi
    "$venv/bin/uv" pip install -q --python "$target/bin/python" "$wheel" "apache-airflow==$airflow" "${constraints[@]}"
    installed=$((SECONDS - began))
    # Run from outside the source tree so that only the installed wheel can be imported.
    (cd "$work" && env -u PYTHONPATH "$target/bin/python" "$root/.ci/smoke_test.py" \
        --expect-version "$version" --expect-airflow "$airflow")
    timings+=("$label: install ${installed}s, smoke test $((SECONDS - began - installed))s")
done

step "release check passed for $version"
printf '  %s\n' "${timings[@]}"
echo "  total: $((SECONDS - started))s"
