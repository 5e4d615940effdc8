"""The attribute operators follow their one list of options: signature, defaults, templates, docs table."""

from __future__ import annotations

import inspect
import json
import re
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_kumulos._bulk.options import (
    BULK_OPTIONS,
    DELETE,
    SET,
    BulkOption,
    check_static,
    options_of,
)
from airflow_provider_kumulos.operators.kumulos import DeleteAttributesOperator, SetAttributesOperator

DOCS = (Path(__file__).resolve().parents[2] / "docs" / "attributes.md").read_text()
OPERATORS = {SET: SetAttributesOperator, DELETE: DeleteAttributesOperator}


@pytest.mark.parametrize("kind", [SET, DELETE])
def test_the_keyword_parameters_are_the_options_with_their_defaults(kind: str) -> None:
    parameters = inspect.signature(OPERATORS[kind].__init__).parameters
    assert [name for name in parameters if name not in ("self", "kwargs")] == [
        o.name for o in options_of(kind)
    ]
    assert all(f":param {option.name}:" in (OPERATORS[kind].__doc__ or "") for option in options_of(kind))
    for option in options_of(kind):
        assert parameters[option.name].default == option.default, option.name


@pytest.mark.parametrize("kind", [SET, DELETE])
def test_templates_and_renderers_come_from_the_list(kind: str) -> None:
    operator = OPERATORS[kind]
    assert set(operator.template_fields) == {o.name for o in options_of(kind) if o.templated}
    assert operator.template_fields_renderers == {o.name: o.renderer for o in options_of(kind) if o.renderer}


@pytest.mark.parametrize("kind", [SET, DELETE])
def test_the_operator_keeps_every_option_as_checked(kind: str) -> None:
    given = {SET: {"records": []}, DELETE: {"user_ids": []}}[kind] | {"max_requests_per_second": 5}
    operator = OPERATORS[kind](task_id="t", **given)
    kept = check_static(kind, {option.name: option.default for option in options_of(kind)} | given)
    assert {option.kept_as: getattr(operator, option.kept_as) for option in options_of(kind)} == kept
    assert (operator.max_requests_per_second, operator.hook_params, operator.is_dry_run) == (5.0, {}, False)


def _table(heading: str) -> dict[str, tuple[str, str]]:
    """The parameter table under ``heading`` in docs/attributes.md: each name in the first column -> its
    default and templated cells (a row naming several options gives one default each, or one for all)."""
    section = DOCS.split(heading, 1)[1].split("\n### ", 1)[0].split("\n## ", 1)[0]
    rows: dict[str, tuple[str, str]] = {}
    for line in section.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) < 4 or not cells[0].startswith("`"):
            continue
        names = re.findall(r"`(\w+)`", cells[0])
        defaults = (
            cells[1].split(", ") if len(cells[1].split(", ")) == len(names) else [cells[1]] * len(names)
        )
        for name, default in zip(names, defaults, strict=True):
            rows[name] = (default, cells[2])
    return rows


def _default_text(option: BulkOption) -> str:
    value: Any = option.default
    if isinstance(value, str):
        return f"`{json.dumps(value)}`"
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return f"`{value!r}`"


@pytest.mark.parametrize(
    ("kind", "heading"), [(SET, "### SetAttributesOperator"), (DELETE, "### DeleteAttributesOperator")]
)
def test_the_docs_table_lists_every_option_with_its_default_and_template_flag(
    kind: str, heading: str
) -> None:
    rows = _table(heading)
    assert set(rows) == {option.name for option in options_of(kind)}
    for option in options_of(kind):
        default, templated = rows[option.name]
        if default:  # rows that refer to another table leave it empty
            assert default == _default_text(option), option.name
        if default or templated:
            # "yes", or in a row of several options the names of those templated
            marked = templated.startswith("yes") or f"`{option.name}`" in templated
            assert marked == option.templated, option.name


def test_every_option_belongs_to_an_operator_and_is_named_once() -> None:
    names = [option.name for option in BULK_OPTIONS]
    assert len(names) == len(set(names))
    assert all(option.operators and option.operators <= {SET, DELETE} for option in BULK_OPTIONS)
