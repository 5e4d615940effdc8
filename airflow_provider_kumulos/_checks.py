"""The argument checks every layer uses: bool, number, whole number, choice, path, JSON, one-of, yes/no.

Each returns the value in its checked form or raises ``KumulosInputError`` naming the parameter,
what is wrong with the value and the fix, in one message style. Each argument is checked once, at
the layer that owns it (operators at construction, the hook for its own method arguments).
Rendered templates arrive as strings, so ``check_whole_number(..., rendered=True)`` accepts digits.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from airflow_provider_kumulos.exceptions import KumulosInputError

if TYPE_CHECKING:
    from airflow.sdk import ObjectStoragePath


#: The words read as yes or no where text must say a bool (CSV cells, the connection extra ``verify``).
YES_WORDS = frozenset({"true", "t", "yes", "y", "1"})
NO_WORDS = frozenset({"false", "f", "no", "n", "0"})


def yes_no(text: str) -> bool | None:
    """``text`` as a bool when it is a yes or no word (any case, surrounding spaces ignored); else None."""
    word = text.strip().lower()
    if word in YES_WORDS:
        return True
    if word in NO_WORDS:
        return False
    return None


def check_bool(parameter: str, value: object) -> bool:
    """A real bool (a string "False" would be truthy)."""
    if isinstance(value, bool):
        return value
    raise KumulosInputError(parameter, f"{value!r} is not a bool", "Pass True or False.")


def check_number(
    parameter: str,
    value: object,
    low: float,
    high: float | None = None,
    *,
    low_open: bool = False,
    fix: str | None = None,
    unit: str = "",
) -> float:
    """An int or float (not a bool) in ``low``..``high``; ``low_open`` excludes ``low`` itself.
    ``unit`` names what is counted in the message ("a number of seconds >= 0")."""
    bounds = (f"> {low:g}" if low_open else f">= {low:g}") + (f" and <= {high:g}" if high is not None else "")
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or value != value  # NaN
        or (value <= low if low_open else value < low)
        or (high is not None and value > high)
    ):
        number = f"a number of {unit}" if unit else "a number"
        raise KumulosInputError(
            parameter, f"{value!r} is not {number} {bounds}", fix or f"Pass {number} {bounds}."
        )
    return float(value)


def check_whole_number(
    parameter: str,
    value: object,
    low: int,
    high: int | None = None,
    fix: str | None = None,
    *,
    rendered: bool = False,
) -> int:
    """An int (not a bool) in ``low``..``high``; with ``rendered``, digit strings too."""
    if rendered and isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    if (
        isinstance(value, bool)
        or not isinstance(value, int)
        or value < low
        or (high is not None and value > high)
    ):
        bounds = f"between {low} and {high}" if high is not None else f">= {low}"
        raise KumulosInputError(
            parameter, f"{value!r} is not a whole number {bounds}", fix or f"Pass a whole number {bounds}."
        )
    return value


def check_choice(parameter: str, value: object, choices: Sequence[str], fix: str | None = None) -> str:
    """One of ``choices``."""
    if not isinstance(value, str) or value not in choices:
        raise KumulosInputError(
            parameter,
            f"{value!r} is not a valid choice",
            fix or f"Use one of {', '.join(map(repr, choices))}.",
        )
    return value


def check_path(parameter: str, value: object) -> ObjectStoragePath:
    """A local path or object-storage URL as an ``ObjectStoragePath``; nothing is read or written."""
    from airflow_provider_kumulos._storage import resolve_path

    if not isinstance(value, str | os.PathLike):
        from airflow.sdk import ObjectStoragePath

        if not isinstance(value, ObjectStoragePath):
            raise KumulosInputError(
                parameter,
                f"expected a path or URL, got {type(value).__name__}",
                "Pass a local path such as /data/users.jsonl or a URL such as s3://aws_default@bucket/users.jsonl.",
            )
    return resolve_path(value, parameter=parameter)


def check_json(parameter: str, value: object, expected: type | tuple[type, ...], example: str) -> Any:
    """``value`` itself, or parsed when it is a string (a template that rendered JSON text), of type ``expected``."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            raise KumulosInputError(
                parameter,
                "it is a string that is not valid JSON",
                f"Pass {example}, an XComArg, or a template that renders JSON (e.g. with the tojson filter).",
            ) from None
    if not isinstance(value, expected) or isinstance(value, str | bytes):
        raise KumulosInputError(
            parameter, f"expected {example}, got {type(value).__name__}", f"Pass {example}."
        )
    return value


def check_exactly_one(given: dict[str, bool], fix: str) -> None:
    """Exactly one of the alternative parameters in ``given`` (name -> whether it was passed) is used."""
    chosen = [name for name, present in given.items() if present]
    if len(chosen) != 1:
        problem = f"got {' and '.join(chosen)}" if chosen else "none of them was given"
        raise KumulosInputError(" / ".join(given), problem, fix)
