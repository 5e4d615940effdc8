"""Whether a user's attributes are what a wait (the sensor, the trigger) expects.

Values compare as JSON values: ``true`` is not ``1``, objects and arrays compare member by member.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, cast

from airflow_provider_kumulos._policy.requests import check_attributes


def check_attributes_match(expected: object, parameter: str = "attributes_match") -> dict[str, Any] | None:
    """Validate the attribute values a wait expects; None (or ``{}``) means any attributes will do."""
    if expected is None:
        return None
    check_attributes(expected, parameter)
    return dict(cast(Mapping[str, Any], expected))


def attributes_satisfy(attributes: Mapping[str, Any], expected: Mapping[str, Any] | None) -> bool:
    """Whether every expected attribute is present with the same JSON value (``true`` is not ``1``)."""
    return not expected or all(
        name in attributes and _json_equal(attributes[name], value) for name, value in expected.items()
    )


def _json_equal(left: Any, right: Any) -> bool:
    if isinstance(left, bool) or isinstance(right, bool):
        return isinstance(left, bool) and isinstance(right, bool) and left == right
    if isinstance(left, Mapping) and isinstance(right, Mapping):
        return left.keys() == right.keys() and all(_json_equal(left[key], right[key]) for key in left)
    if isinstance(left, list | tuple) and isinstance(right, list | tuple):
        return len(left) == len(right) and all(map(_json_equal, left, right))
    return bool(left == right)
