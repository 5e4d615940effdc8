"""The hook arguments a task passes on through ``hook_params``, and their checks.

Operators, the sensor and the trigger check their ``hook_params`` here, so an unknown argument or a
bad value fails before any request (when the task is built, so at DAG parse time), naming the key
and the fix. Values are primitives, which a trigger can serialise. Nothing heavy is imported here:
operator modules import it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from airflow_provider_kumulos._checks import check_number, check_whole_number
from airflow_provider_kumulos.exceptions import KumulosInputError

#: Arguments of both hooks (a connection's extras may set the same settings; these win over them).
SHARED_PARAMS = (
    "timeout",
    "connect_timeout",
    "max_retries",
    "backoff_base",
    "backoff_max",
    "max_retry_after",
    "verify",
)
#: Arguments of :class:`~airflow_provider_kumulos.hooks.kumulos.KumulosCRMHook`, the synchronous hook.
SYNC_PARAMS = (*SHARED_PARAMS, "pool_size", "max_requests_per_second")


def _seconds(low_open: bool) -> Callable[[str, object], float]:
    def check(parameter: str, value: object) -> float:
        return check_number(parameter, value, 0, low_open=low_open, unit="seconds")

    return check


def _retries(parameter: str, value: object) -> int:
    return check_whole_number(parameter, value, 0)


def _verify(parameter: str, value: object) -> bool | str:
    """True, False or the path of a CA bundle (whether it exists is checked on the worker that uses it)."""
    if isinstance(value, bool) or (isinstance(value, str) and value.strip()):
        return value
    raise KumulosInputError(
        parameter, f"{value!r} is not a bool or a path", "Pass True, False or a CA bundle path."
    )


def _pool_size(parameter: str, value: object) -> int:
    return check_whole_number(parameter, value, 1)


def _rate(parameter: str, value: object) -> float:
    return check_number(
        parameter, value, 0, low_open=True, fix="Pass a positive rate such as 20, or None for no cap."
    )


#: The check of each argument; None (take the connection's setting) is accepted wherever the hook does.
_CHECKS: dict[str, Callable[[str, object], object]] = {
    "timeout": _seconds(low_open=True),
    "connect_timeout": _seconds(low_open=True),
    "max_retries": _retries,
    "backoff_base": _seconds(low_open=False),
    "backoff_max": _seconds(low_open=False),
    "max_retry_after": _seconds(low_open=False),
    "verify": _verify,
    "pool_size": _pool_size,
    "max_requests_per_second": _rate,
}
_NOT_NONE = frozenset({"pool_size"})


def check_hook_params(
    value: object,
    accepted: Sequence[str],
    *,
    parameter: str = "hook_params",
    owned: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """``value`` (None or a mapping of hook arguments) as a checked dict of primitives.

    ``accepted`` names the hook arguments the caller passes on; ``owned`` maps those the caller sets
    from an argument of its own to that argument, so the error can point there.
    """
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise KumulosInputError(
            parameter,
            f"expected a mapping of hook arguments, got {type(value).__name__}",
            'Pass a dict such as {"timeout": 30, "max_retries": 3}.',
        )
    checked: dict[str, Any] = {}
    for key, setting in value.items():
        if owned and key in owned:
            raise KumulosInputError(
                parameter,
                f"{key!r} is set by this task's own argument {owned[key]}",
                f"Remove {key!r} from {parameter} and pass {owned[key]}.",
            )
        if key not in accepted:
            raise KumulosInputError(
                parameter,
                f"{key!r} is not a hook argument this task passes on",
                f"Use only {', '.join(name for name in accepted if not (owned and name in owned))}.",
            )
        if setting is None and key not in _NOT_NONE:
            checked[key] = None
        else:
            checked[key] = _CHECKS[key](f"{parameter}[{key!r}]", setting)
    return checked
