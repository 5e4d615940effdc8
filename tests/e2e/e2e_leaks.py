"""What must never reach a log: the server key, and the attribute values of the users the DAGs touched.

Attribute values are user data (names, e-mail addresses). The scan looks for the distinctive ones:
those the test gives the users it creates (:func:`person`, unique per run) and the names and e-mail
addresses the emulator holds for its generated users, in their UTF-8 and JSON-escaped spellings.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

#: Attribute keys whose values identify a person (the emulator's generated users have both).
PERSONAL_KEYS = ("name", "email")
#: Shorter values could occur in a log by chance.
MIN_LENGTH = 5
#: Logs left out of the scans: the emulator is given the key and logs what it stores.
UNSCANNED = frozenset({"kumulos-emulator.log"})


def person(label: str = "ada") -> dict[str, str]:
    """Attributes of a person no log can hold by chance: a name and an e-mail with a fresh token."""
    token = secrets.token_hex(5)
    return {"name": f"{label.title()} Lovelace {token}", "email": f"{label}.{token}@example.com"}


def personal_values(attributes: Mapping[str, Any] | None) -> set[str]:
    """The distinctive personal values (:data:`PERSONAL_KEYS`) among one user's attributes."""
    return {
        value
        for key in PERSONAL_KEYS
        if isinstance(value := (attributes or {}).get(key), str) and len(value) >= MIN_LENGTH
    }


def spellings(value: str) -> set[bytes]:
    """How ``value`` appears in a log: as UTF-8 text, or JSON-escaped (``Zo\\u00eb``)."""
    return {value.encode(), json.dumps(value)[1:-1].encode()}


def log_files(*folders: Path) -> list[Path]:
    """Every file under ``folders`` except :data:`UNSCANNED`."""
    return sorted(
        path
        for folder in folders
        for path in folder.rglob("*")
        if path.is_file() and path.name not in UNSCANNED
    )


def find_leaks(values: Iterable[str], files: Iterable[Path]) -> dict[str, list[Path]]:
    """Which of ``values`` appear in which of ``files`` (only values found are keys)."""
    needles = {value: spellings(value) for value in values}
    leaks: dict[str, list[Path]] = {}
    for path in files:
        content = path.read_bytes()
        for value, forms in needles.items():
            if any(form in content for form in forms):
                leaks.setdefault(value, []).append(path)
    return leaks


def describe_leaks(what: str, leaks: Mapping[str, list[Path]], shown: int = 3) -> str | None:
    """One sentence naming up to ``shown`` leaked values and where; None when nothing leaked."""
    if not leaks:
        return None
    files = sorted({str(path) for paths in leaks.values() for path in paths})
    examples = "; ".join(
        f"{value!r} in {[path.name for path in paths][:shown]}"
        for value, paths in list(leaks.items())[:shown]
    )
    return f"{len(leaks)} {what} appear in {len(files)} log files: {examples}"


def scan_logs(secret: str, personal: Iterable[str], *folders: Path) -> str | None:
    """Neither ``secret`` nor any of the ``personal`` values may appear in a log under ``folders``
    (the emulator's left out). Returns what was found, described (never the secret), or None."""
    files = log_files(*folders)
    problems = [
        f"the server key appears in {len(paths)} log files, e.g. {[str(path) for path in paths[:3]]}"
        for paths in find_leaks([secret], files).values()
    ]
    leaked = describe_leaks("attribute values (names, e-mails)", find_leaks(personal, files))
    if leaked:
        problems.append(leaked)
    return "; ".join(problems) or None
