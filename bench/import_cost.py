"""DAG-parse cost: what importing our hook, operator and sensor modules adds on top of ``import airflow.sdk``.

The baseline, measured in the same run, is what ``from airflow.providers.http.operators.http import
HttpOperator`` adds on top of ``import airflow.sdk``. Every measurement is a fresh interpreter (imports
are cached per process); targets are interleaved round by round so machine load hits all alike. The goal
is ours <= 0.25x the baseline. Also lists which heavy libraries are loaded after importing ours, and
whether ``airflow.sdk`` had already brought them. Exit status 1 when a module fails to import.

Usage: python bench/import_cost.py [--smoke] [--repeat N]
"""

from __future__ import annotations

import json
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from _common import Summary, airflow_env, bench_parser, print_table, run_child

GOAL = 0.25
HEAVY = ("requests", "tenacity", "msgspec", "httpx", "fsspec", "pyarrow")
OURS = {
    "kumulos hook": "import airflow_provider_kumulos.hooks.kumulos",
    "kumulos operators": "import airflow_provider_kumulos.operators.kumulos",
    "kumulos sensors": "import airflow_provider_kumulos.sensors.kumulos",
}
ALL_OURS = "kumulos hook+operators+sensors"
BASELINE = "HttpOperator (baseline)"
TARGETS = {
    **OURS,
    ALL_OURS: "; ".join(OURS.values()),
    BASELINE: "from airflow.providers.http.operators.http import HttpOperator",
}

# Runs in each fresh interpreter: times `import airflow.sdk`, then the statement in argv[1].
PROBE = """
import json, sys, time
wall0, cpu0 = time.perf_counter(), time.process_time()
import airflow.sdk
wall1, cpu1 = time.perf_counter(), time.process_time()
before = set(sys.modules)
exec(sys.argv[1])
wall2, cpu2 = time.perf_counter(), time.process_time()
heavy = {name: ("airflow.sdk" if name in before else "ours") for name in HEAVY if name in sys.modules}
print(json.dumps({
    "sdk_wall": wall1 - wall0, "wall": wall2 - wall1, "cpu": cpu2 - cpu1,
    "modules": len(set(sys.modules) - before), "heavy": heavy,
}))
""".replace("HEAVY", repr(HEAVY))


# Run once before measuring: writes airflow.cfg and the byte-code caches, so no measurement pays for them.
WARM_UP = """
import sys
for statement in sys.argv[1:]:
    try:
        exec(statement)
    except Exception:
        pass
"""


@dataclass
class Target:
    """Measurements of one import statement across fresh interpreters."""

    name: str
    statement: str
    wall: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)
    sdk_wall: list[float] = field(default_factory=list)
    modules: int = 0
    heavy: dict[str, str] = field(default_factory=dict)
    error: str | None = None

    def measure_once(self, env: dict[str, str]) -> None:
        """One fresh interpreter; records the figures or the import error (then stops measuring this one)."""
        result = run_child([sys.executable, "-c", PROBE, self.statement], env=env, timeout=300)
        if result.returncode != 0:
            lines = [line for line in result.stderr.strip().splitlines() if line.strip()]
            self.error = lines[-1] if lines else f"exit status {result.returncode}"
            return
        figures = json.loads(result.stdout.strip().splitlines()[-1])
        self.wall.append(figures["wall"])
        self.cpu.append(figures["cpu"])
        self.sdk_wall.append(figures["sdk_wall"])
        self.modules = figures["modules"]
        self.heavy = figures["heavy"]


def ratio(ours: Target, baseline: Target, attribute: str) -> float | None:
    """Median of ours over median of the baseline, when both were measured."""
    if ours.error or baseline.error or not getattr(ours, attribute) or not getattr(baseline, attribute):
        return None
    return Summary.of(getattr(ours, attribute)).median / Summary.of(getattr(baseline, attribute)).median


def main() -> int:
    """Measure every target, print the tables and the verdict against the goal."""
    parser = bench_parser(__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, help="fresh interpreters per target (default 15, smoke 2)")
    args = parser.parse_args()
    repeat = args.repeat or (2 if args.smoke else 15)
    targets = [Target(name, statement) for name, statement in TARGETS.items()]

    with tempfile.TemporaryDirectory(prefix="kumulos-import-cost-") as home:
        env = airflow_env(Path(home))
        run_child([sys.executable, "-c", WARM_UP, *TARGETS.values()], env=env, timeout=600)
        for _ in range(repeat):
            for target in targets:
                if target.error is None:
                    target.measure_once(env)

    import airflow

    measured = [t for t in targets if t.error is None]
    sdk = Summary.of([value for t in measured for value in t.sdk_wall]) if measured else None
    print(
        f"Import cost on top of `import airflow.sdk` (Airflow {airflow.__version__}, {repeat} fresh interpreters each)"
    )
    if sdk is not None:
        print(f"`import airflow.sdk` itself: {sdk.describe()}")
    print()
    rows = []
    for target in targets:
        if target.error:
            rows.append([target.name, "IMPORT FAILED", "", "", target.error[:80]])
            continue
        wall, cpu = Summary.of(target.wall), Summary.of(target.cpu)
        rows.append(
            [
                target.name,
                f"{wall.median * 1000:.1f} ms",
                f"{wall.q1 * 1000:.1f}-{wall.q3 * 1000:.1f} ms",
                f"{cpu.median * 1000:.1f} ms",
                target.modules,
            ]
        )
    print_table(["added by", "wall median", "wall IQR", "CPU median", "modules added"], rows)

    by_name = {target.name: target for target in targets}
    baseline = by_name[BASELINE]
    print()
    for name in [*OURS, ALL_OURS]:
        wall_ratio, cpu_ratio = ratio(by_name[name], baseline, "wall"), ratio(by_name[name], baseline, "cpu")
        if wall_ratio is None or cpu_ratio is None:
            print(f"{name} / HttpOperator: not available")
            continue
        verdict = "met" if wall_ratio <= GOAL else "NOT met"
        print(
            f"{name} / HttpOperator: {wall_ratio:.2f}x wall, {cpu_ratio:.2f}x CPU (goal <= {GOAL}x: {verdict})"
        )

    print()
    print("Heavy libraries loaded after importing ours (and who loaded them):")
    combined = by_name[ALL_OURS]
    if combined.error:
        print(f"  unknown: {combined.error}")
    else:
        for name in HEAVY:
            print(
                f"  {name:10} {('loaded by ' + combined.heavy[name]) if name in combined.heavy else 'not loaded'}"
            )
    return 1 if any(target.error for target in targets) else 0


if __name__ == "__main__":
    sys.exit(main())
