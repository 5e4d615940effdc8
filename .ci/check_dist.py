"""Inspect built distributions before a release; print the version when everything holds.

Checks: one wheel and one sdist, both at the version in ``airflow_provider_kumulos/__init__.py`` (the single
source, read by hatchling), a CHANGELOG.md entry for it, a wheel with ``py.typed``, the provider entry point and
no tests, and an sdist that carries what a downstream packager needs to rebuild and test.

Usage: python .ci/check_dist.py DIST_DIR
"""

from __future__ import annotations

import ast
import configparser
import re
import sys
import tarfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE_DIR = "airflow_provider_kumulos"
ENTRY_POINTS = {
    "apache_airflow_provider": {"provider_info": "airflow_provider_kumulos:get_provider_info"},
    "pytest11": {"kumulos_emulator": "airflow_provider_kumulos.testing.pytest_plugin"},
}
SDIST_MUST_HAVE = (
    "pyproject.toml",
    "README.md",
    "CHANGELOG.md",
    "LICENSE",
    "tests/conftest.py",
    f"{PACKAGE_DIR}/py.typed",
)


def source_version() -> str:
    """``__version__`` as written in the package's ``__init__.py`` (read, not imported)."""
    tree = ast.parse((ROOT / PACKAGE_DIR / "__init__.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
            getattr(t, "id", None) == "__version__" for t in node.targets
        ):
            return str(ast.literal_eval(node.value))
    raise SystemExit(f"no __version__ assignment in {PACKAGE_DIR}/__init__.py")


def changelog_has(version: str) -> bool:
    """Whether CHANGELOG.md has a ``## [version]`` (or ``## version``) heading."""
    pattern = re.compile(rf"^##\s+\[?{re.escape(version)}\]?(\s|$)", re.MULTILINE)
    return bool(pattern.search((ROOT / "CHANGELOG.md").read_text()))


def wheel_problems(wheel: Path, version: str) -> list[str]:
    """What is wrong with the wheel's version, contents and entry points."""
    problems = []
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        dist_info = f"airflow_provider_kumulos-{version}.dist-info"
        metadata = archive.read(f"{dist_info}/METADATA").decode() if f"{dist_info}/METADATA" in names else ""
        entry_text = (
            archive.read(f"{dist_info}/entry_points.txt").decode()
            if f"{dist_info}/entry_points.txt" in names
            else ""
        )
    if f"\nVersion: {version}\n" not in metadata:
        problems.append(f"wheel METADATA does not say Version: {version}")
    if f"{PACKAGE_DIR}/py.typed" not in names:
        problems.append("wheel lacks py.typed")
    tests = [
        name
        for name in names
        if name.startswith("tests/") or re.search(r"(^|/)(conftest|test_[^/]*)\.py$", name)
    ]
    if tests:
        problems.append(f"wheel contains tests: {tests[:5]}")
    strays = sorted({name.split("/", 1)[0] for name in names} - {PACKAGE_DIR, dist_info})
    if strays:
        problems.append(f"wheel has top-level entries besides the package: {strays}")
    entry_points = configparser.ConfigParser()
    entry_points.read_string(entry_text)
    for group, expected in ENTRY_POINTS.items():
        found = dict(entry_points[group]) if entry_points.has_section(group) else {}
        if found != expected:
            problems.append(f"entry points [{group}] are {found}, expected {expected}")
    return problems


def sdist_problems(sdist: Path) -> list[str]:
    """What the sdist is missing."""
    with tarfile.open(sdist) as archive:
        names = {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}
    return [f"sdist lacks {name}" for name in SDIST_MUST_HAVE if name not in names]


def main(dist_dir: Path) -> int:
    """Check everything, report every problem at once; print the version on success."""
    version = source_version()
    wheels = sorted(dist_dir.glob("*.whl"))
    sdists = sorted(dist_dir.glob("*.tar.gz"))
    expected_wheel = f"airflow_provider_kumulos-{version}-py3-none-any.whl"
    expected_sdist = f"airflow_provider_kumulos-{version}.tar.gz"
    problems = []
    if [w.name for w in wheels] != [expected_wheel]:
        problems.append(f"expected exactly {expected_wheel} in {dist_dir}, found {[w.name for w in wheels]}")
    if [s.name for s in sdists] != [expected_sdist]:
        problems.append(f"expected exactly {expected_sdist} in {dist_dir}, found {[s.name for s in sdists]}")
    if not changelog_has(version):
        problems.append(f"CHANGELOG.md has no '## [{version}]' entry")
    if not problems:
        problems += wheel_problems(wheels[0], version) + sdist_problems(sdists[0])
    for problem in problems:
        print(f"release check: {problem}", file=sys.stderr)
    if problems:
        return 1
    print(version)
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit(__doc__)
    sys.exit(main(Path(sys.argv[1])))
