"""The warehouse phase's own checks, so a deployment run can trust them: request counting per user,
the Postgres value mapping it expects, the summary check, and its DAG file parsing."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Any

import pytest
from e2e_procs import DeploymentError
from e2e_warehouse import DAG_ID, TEST_DAGS, _as_attribute, _check_requests, _check_summary

LISTING = {"identifier": None, "method": "GET", "path": "/v2/users"}


def _sent(*pairs: tuple[str, str]) -> list[dict[str, Any]]:
    return [
        {"identifier": identifier, "method": method, "path": f"/v1/users/{identifier}/attributes"}
        for identifier, method in pairs
    ]


def test_requests_for_exactly_the_expected_users_pass() -> None:
    sent = _sent(("a", "GET"), ("b", "GET"), ("a", "PUT"), ("b", "DELETE"), ("c", "GET"), ("c", "PUT"))
    _check_requests([LISTING, *sent], {"a": "set", "b": "removed", "c": "removed"}, pages=1)


@pytest.mark.parametrize(
    ("sent", "expected"),
    [
        (_sent(("a", "GET"), ("a", "PUT"), ("z", "GET"), ("z", "PUT")), {"a": "set"}),  # an unchanged user
        (_sent(("a", "PUT")), {"a": "set"}),  # no merge read
        (_sent(("a", "GET"), ("a", "PUT"), ("a", "PUT")), {"a": "set"}),  # written twice
        (_sent(("a", "GET"), ("a", "DELETE")), {"a": "set"}),  # cleared instead of set
        (_sent(("a", "GET")), {"a": "removed"}),  # a removal that wrote nothing
        (_sent(), {"a": "set"}),  # a changed user not sent
        (
            [*_sent(("a", "GET"), ("a", "PUT")), {"identifier": None, "method": "GET", "path": "/v2/other"}],
            {"a": "set"},
        ),  # no user
    ],
)
def test_requests_beyond_or_short_of_the_changed_users_fail(
    sent: list[dict[str, Any]], expected: dict[str, str]
) -> None:
    with pytest.raises(DeploymentError, match="requests for"):
        _check_requests([LISTING, *sent], expected, pages=1)


@pytest.mark.parametrize("listed", [0, 2])
def test_listing_pages_other_than_expected_fail(listed: int) -> None:
    sent = [*[LISTING] * listed, *_sent(("a", "GET"), ("a", "PUT"))]
    with pytest.raises(DeploymentError, match=f"{listed} users listing pages \\(expected 1\\)"):
        _check_requests(sent, {"a": "set"}, pages=1)


def test_postgres_values_map_as_the_sql_source_sends_them() -> None:
    assert _as_attribute(Decimal("12.50")) == 12.5
    assert isinstance(_as_attribute(Decimal("3.00")), float)
    assert _as_attribute(Decimal("7")) == 7 and isinstance(_as_attribute(Decimal("7")), int)
    assert _as_attribute(date(2025, 2, 3)) == "2025-02-03"
    assert _as_attribute("loyal") == "loyal"


def test_summary_check_requires_the_counts_and_no_failures() -> None:
    summary = {"succeeded": 6, "unchanged": 294, "removed": 1, "failed": 0, "removal_failed": 0}
    _check_summary(summary, succeeded=6, unchanged=294, removed=1)
    with pytest.raises(DeploymentError, match="unchanged"):
        _check_summary(summary, succeeded=6, unchanged=293, removed=1)
    with pytest.raises(DeploymentError, match="no failures"):
        _check_summary({**summary, "removal_failed": 1}, succeeded=6, unchanged=294, removed=1)


def test_the_warehouse_dag_parses_with_its_postgres_source(airflow_home: Any) -> None:
    try:
        from airflow.dag_processing.dagbag import DagBag
    except ImportError:  # older Airflow 3 releases
        from airflow.models.dagbag import DagBag  # type: ignore[no-redef]

    bag = DagBag(str(TEST_DAGS / f"{DAG_ID}.py"))

    assert bag.import_errors == {}
    task = bag.dags[DAG_ID].get_task("sync_segments")
    assert (task.sql_conn_id, task.reconcile, task.merge, task.remove_absent) == (
        "kumulos_e2e_warehouse",
        True,
        True,
        True,
    )
    assert "{{" in task.sync_state_path
