"""The attribute operators' arguments, declared once: default, check, templated or not, which operator.

:data:`BULK_OPTIONS` lists every argument of ``SetAttributesOperator`` and ``DeleteAttributesOperator``
in check order (a check may read the options checked before it). The operators' ``template_fields``
and ``template_fields_renderers``, the checks run when an operator is built (:func:`check_static`,
so a broken DAG fails at parse time) and the attributes the operator keeps all follow from it; tests
hold the operators' keyword parameters, their ``:param:`` lists and docs/attributes.md's parameter
tables to it. Adding an option is adding an entry here (then the keyword, ``:param:`` line and docs
row those tests ask for). Templated options are checked here for presence only (their value is not
known before rendering); their values are checked by the code that reads them once rendered. Every
check raises :class:`~airflow_provider_kumulos.exceptions.KumulosInputError` naming the parameter,
the problem and the fix. Nothing heavy is imported here: the operator module imports it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from airflow_provider_kumulos._checks import (
    check_bool,
    check_choice,
    check_exactly_one,
    check_number,
    check_whole_number,
)
from airflow_provider_kumulos._progress import DEFAULT_INTERVAL, check_interval
from airflow_provider_kumulos.exceptions import KumulosInputError
from airflow_provider_kumulos.hooks._params import SYNC_PARAMS, check_hook_params

#: The two operators, as options name them.
SET, DELETE = "set", "delete"
BOTH = frozenset({SET, DELETE})
#: File formats ``source_path`` may have, per operator.
SOURCE_FORMATS = {SET: ("jsonl", "csv"), DELETE: ("jsonl", "csv", "txt")}
#: The fix of the error for a call that names the users in none or several ways, per operator.
ONE_WAY_FIX = {
    SET: "Pass exactly one of: user_id with attributes (one user), records (a list), source_path (a file), "
    "sql (a query).",
    DELETE: "Pass exactly one of: user_id (one user), user_ids (a list), source_path (a file), sql (a query).",
}
#: Upper bound on ``max_concurrency``: more parallel writes than this only provoke rate limiting.
MAX_CONCURRENCY = 64
#: Share of the users a sync state lists that one run may clear before ``remove_absent`` refuses.
DEFAULT_MAX_REMOVAL_FRACTION = 0.5
#: Seconds between saves of the sync state while a run goes on (``_bulk.sync`` uses the value passed).
DEFAULT_CHECKPOINT_INTERVAL = 60.0
#: Hook arguments the operators set from arguments of their own, which ``hook_params`` may not repeat.
OWNED_HOOK_PARAMS = {"pool_size": "max_concurrency", "max_requests_per_second": "max_requests_per_second"}


class Earlier(dict[str, Any]):
    """The options checked so far, in list order, and the operator (``kind``) they belong to."""

    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind = kind


#: A check takes the value as given and the options checked before it; returns the value to keep.
Check = Callable[[Any, Earlier], Any]


@dataclass(frozen=True)
class BulkOption:
    """One argument of the attribute operators.

    ``check`` runs when the operator is built; ``operators`` names the operators that take it;
    ``way`` groups the arguments that name the users (exactly one way must be used); ``renderer``
    is the UI's renderer of a templated value; ``attribute`` the operator attribute holding it, when
    its name is taken (``dry_run`` is a method of every operator).
    """

    name: str
    default: Any
    check: Check
    templated: bool = False
    operators: frozenset[str] = BOTH
    way: str | None = None
    renderer: str | None = None
    attribute: str | None = None

    @property
    def kept_as(self) -> str:
        """The operator attribute holding the option."""
        return self.attribute or self.name


# --- the checks, in the order of the list ----------------------------------------------------------


def _as_given(value: object, earlier: Earlier) -> object:
    """A templated option: its value is checked once rendered, by the code that reads it."""
    return value


def _check_attributes(value: object, earlier: Earlier) -> object:
    """``user_id`` and ``attributes`` come together: they name one user and what to set on it."""
    if (earlier["user_id"] is None) != (value is None):
        missing, given = ("attributes", "user_id") if value is None else ("user_id", "attributes")
        raise KumulosInputError(
            missing, f"{given} was given without {missing}", "Pass user_id and attributes together."
        )
    return value


def _check_source_format(value: object, earlier: Earlier) -> str | None:
    if value is None:
        return None
    formats = SOURCE_FORMATS[earlier.kind]
    return check_choice("source_format", value, formats, f"Use one of {', '.join(formats)}.")


def _only_with_sql(name: str) -> Check:
    """The check of an option that belongs to a SQL source."""

    def check(value: object, earlier: Earlier) -> object:
        if value is not None and earlier["sql"] is None:
            raise KumulosInputError(name, "it only applies to a sql source", "Remove it or pass sql.")
        return value

    return check


def _check_sql_conn_id(value: object, earlier: Earlier) -> object:
    if earlier["sql"] is not None and value is None:
        raise KumulosInputError(
            "sql_conn_id", "sql was given without sql_conn_id", "Pass the id of a database connection."
        )
    return _only_with_sql("sql_conn_id")(value, earlier)


def _check_identifier_column(value: object, earlier: Earlier) -> str:
    if not isinstance(value, str) or not value:
        raise KumulosInputError(
            "identifier_column", f"{value!r} is not a column name", 'Pass e.g. "identifier".'
        )
    return value


def _check_attribute_types(value: object, earlier: Earlier) -> dict[str, str] | None:
    """CSV column -> type name; only a file source has columns to type."""
    if value is None:
        return None
    from airflow_provider_kumulos._bulk.sources import check_attribute_types

    if earlier["source_path"] is None:
        raise KumulosInputError(
            "attribute_types", "it only applies to a CSV source_path", "Remove it or pass source_path."
        )
    return check_attribute_types(value)


def _bool(name: str) -> Check:
    def check(value: object, earlier: Earlier) -> bool:
        return check_bool(name, value)

    return check


def _check_max_concurrency(value: object, earlier: Earlier) -> int:
    return check_whole_number("max_concurrency", value, 1, MAX_CONCURRENCY)


def _check_max_requests_per_second(value: object, earlier: Earlier) -> float | None:
    if value is None:
        return None
    return check_number(
        "max_requests_per_second",
        value,
        0,
        low_open=True,
        fix="Pass a positive rate such as 20, or None for no cap.",
    )


def _check_max_failures(value: object, earlier: Earlier) -> int:
    return check_whole_number("max_failures", value, 0)


def reconciles(options: Mapping[str, Any]) -> bool:
    """Whether a run reconciles: ``reconcile=True``, or an export given as ``reconcile_from``."""
    return bool(options["reconcile"]) or options["reconcile_from"] is not None


def _check_full_refresh(value: object, earlier: Earlier) -> bool:
    wanted = check_bool("full_refresh", value)
    if wanted and earlier["sync_state_path"] is None:
        raise KumulosInputError(
            "full_refresh", "it needs a sync state", "Pass sync_state_path, or remove full_refresh."
        )
    if wanted and reconciles(earlier):
        raise KumulosInputError(
            "full_refresh",
            "it sends every record, while reconcile sends only those Kumulos does not hold",
            "Pass one of the two.",
        )
    return wanted


def _check_remove_absent(value: object, earlier: Earlier) -> bool:
    wanted = check_bool("remove_absent", value)
    if wanted and earlier["sync_state_path"] is None and not reconciles(earlier):
        raise KumulosInputError(
            "remove_absent",
            "it needs a sync state or a reconcile to know who holds the keys this sync manages",
            "Pass sync_state_path or reconcile=True, or remove remove_absent.",
        )
    return wanted


def _check_managed_keys(value: object, earlier: Earlier) -> tuple[str, ...] | None:
    """Attribute keys ``remove_absent`` clears beyond those the source carries."""
    if value is None:
        return None
    if not earlier["remove_absent"]:
        raise KumulosInputError(
            "managed_keys", "it only applies with remove_absent", "Remove it or pass remove_absent=True."
        )
    keys = (
        list(value) if isinstance(value, Iterable) and not isinstance(value, str | bytes | Mapping) else None
    )
    if keys is None or not all(isinstance(key, str) and key for key in keys):
        raise KumulosInputError(
            "managed_keys",
            f"expected a list of attribute keys, got {value!r}",
            'Pass e.g. ["segment", "tier"].',
        )
    return tuple(keys)


def _check_max_removal_fraction(value: object, earlier: Earlier) -> float:
    return check_number("max_removal_fraction", value, 0.0, 1.0)


def _check_checkpoint_interval(value: object, earlier: Earlier) -> float:
    return check_number(
        "checkpoint_interval",
        value,
        0,
        low_open=True,
        unit="seconds",
        fix="Pass e.g. 60 to save the sync state every minute while the run goes on.",
    )


def _check_hook_params(value: object, earlier: Earlier) -> dict[str, Any]:
    return check_hook_params(value, SYNC_PARAMS, owned=OWNED_HOOK_PARAMS)


def _check_progress_interval(value: object, earlier: Earlier) -> float:
    return check_interval(value)


# --- the list ----------------------------------------------------------------------------------------

SET_ONLY, DELETE_ONLY = frozenset({SET}), frozenset({DELETE})

#: Every argument of the attribute operators, in check order.
BULK_OPTIONS: tuple[BulkOption, ...] = (
    BulkOption("kumulos_conn_id", "kumulos_default", _as_given, templated=True),
    BulkOption("user_id", None, _as_given, templated=True, way="user_id"),
    BulkOption(
        "attributes",
        None,
        _check_attributes,
        templated=True,
        operators=SET_ONLY,
        way="user_id",
        renderer="json",
    ),
    BulkOption(
        "user_ids", None, _as_given, templated=True, operators=DELETE_ONLY, way="user_ids", renderer="json"
    ),
    BulkOption(
        "records", None, _as_given, templated=True, operators=SET_ONLY, way="records", renderer="json"
    ),
    BulkOption("source_path", None, _as_given, templated=True, way="source_path"),
    BulkOption("source_format", None, _check_source_format),
    BulkOption("sql", None, _as_given, templated=True, way="sql", renderer="sql"),
    BulkOption("sql_conn_id", None, _check_sql_conn_id, templated=True),
    BulkOption("sql_parameters", None, _only_with_sql("sql_parameters"), templated=True, renderer="json"),
    BulkOption("sql_hook_params", None, _only_with_sql("sql_hook_params"), templated=True, renderer="json"),
    BulkOption("identifier_column", "identifier", _check_identifier_column),
    BulkOption("attribute_types", None, _check_attribute_types, operators=SET_ONLY),
    BulkOption("merge", False, _bool("merge"), operators=SET_ONLY),
    BulkOption("missing_ok", True, _bool("missing_ok"), operators=DELETE_ONLY),
    BulkOption("max_concurrency", 8, _check_max_concurrency),
    BulkOption("max_requests_per_second", None, _check_max_requests_per_second),
    BulkOption("max_failures", 0, _check_max_failures),
    BulkOption("failures_path", None, _as_given, templated=True),
    BulkOption("dry_run", False, _bool("dry_run"), attribute="is_dry_run"),
    BulkOption("reconcile", False, _bool("reconcile")),
    BulkOption("reconcile_from", None, _as_given, templated=True),
    BulkOption("sync_state_path", None, _as_given, templated=True, operators=SET_ONLY),
    BulkOption(
        "checkpoint_interval", DEFAULT_CHECKPOINT_INTERVAL, _check_checkpoint_interval, operators=SET_ONLY
    ),
    BulkOption("full_refresh", False, _check_full_refresh, operators=SET_ONLY),
    BulkOption("remove_absent", False, _check_remove_absent, operators=SET_ONLY),
    BulkOption("managed_keys", None, _check_managed_keys, operators=SET_ONLY),
    BulkOption(
        "max_removal_fraction", DEFAULT_MAX_REMOVAL_FRACTION, _check_max_removal_fraction, operators=SET_ONLY
    ),
    BulkOption("hook_params", None, _check_hook_params),
    BulkOption("progress_interval", DEFAULT_INTERVAL, _check_progress_interval),
)


def options_of(kind: str) -> tuple[BulkOption, ...]:
    """The options operator ``kind`` takes, in check order."""
    return tuple(option for option in BULK_OPTIONS if kind in option.operators)


def templated(kind: str) -> tuple[str, ...]:
    """The templated options of operator ``kind``."""
    return tuple(option.name for option in options_of(kind) if option.templated)


def renderers(kind: str) -> dict[str, str]:
    """The UI renderers of operator ``kind``'s templated options."""
    return {option.name: option.renderer for option in options_of(kind) if option.renderer}


def check_static(kind: str, values: Mapping[str, Any]) -> dict[str, Any]:
    """Check operator ``kind``'s options as given (templated ones for presence only), then that exactly
    one way of naming the users is used; returns each option's value to keep, by attribute name."""
    earlier = Earlier(kind)
    options = options_of(kind)
    for option in options:
        earlier[option.name] = option.check(values[option.name], earlier)
    ways: dict[str, bool] = {}
    for option in options:
        if option.way is not None:
            ways[option.way] = ways.get(option.way, False) or earlier[option.name] is not None
    check_exactly_one(ways, ONE_WAY_FIX[kind])
    return {option.kept_as: earlier[option.name] for option in options}
