"""Bad arguments fail with a clear error naming the parameter, before any request is sent."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from test_export_support import run_export

from airflow_provider_kumulos.exceptions import KumulosInputError
from airflow_provider_kumulos.operators.export import ExportUsersOperator
from airflow_provider_kumulos.testing.emulator import KumulosEmulator


@pytest.mark.parametrize(
    ("kwargs", "parameter", "fragment"),
    [
        ({"page_size": 0}, "page_size", "between 1 and 1000"),
        ({"page_size": 1001}, "page_size", "between 1 and 1000"),
        ({"page_size": True}, "page_size", "between 1 and 1000"),
        ({"page_size": "100"}, "page_size", "between 1 and 1000"),
        ({"format": "xml"}, "format", "not a supported format"),
        ({"compression": "bz2"}, "compression", "not supported"),
        ({"format": "parquet", "compression": "gzip"}, "compression", "cannot wrap format 'parquet'"),
        ({"max_xcom_users": 0}, "max_xcom_users", ">= 1"),
        ({"include_installs": "False"}, "include_installs", "not a bool"),
        ({"updated_since_field": "deletedAt"}, "updated_since_field", "not a valid choice"),
        ({"on_count_mismatch": "ignore"}, "on_count_mismatch", "not a valid choice"),
        ({"split_every": 10}, "split_every", "need an output_path"),
        ({"split_every": 0, "output_path": "/x"}, "split_every", ">= 1"),
        ({"max_concurrency": 0}, "max_concurrency", "between 1 and 8"),
        ({"max_concurrency": 9}, "max_concurrency", "more only provokes rate limiting"),
        ({"max_concurrency": 2.0}, "max_concurrency", "between 1 and 8"),
        ({"hook_params": {"page_size": 10}}, "hook_params", "'page_size' is not a hook argument"),
        ({"hook_params": {"pool_size": 0}}, "hook_params['pool_size']", "0 is not a whole number >= 1"),
        ({"hook_params": {"verify": 1}}, "hook_params['verify']", "1 is not a bool or a path"),
    ],
)
def test_static_arguments_fail_when_the_operator_is_built(
    kwargs: dict[str, Any], parameter: str, fragment: str
) -> None:
    with pytest.raises(KumulosInputError) as caught:
        ExportUsersOperator(task_id="export", **kwargs)
    assert caught.value.parameter == parameter
    assert fragment in str(caught.value)
    assert isinstance(caught.value, ValueError)


@pytest.mark.parametrize(
    ("kwargs", "parameter", "fragment"),
    [
        ({"updated_since": "yesterday"}, "updated_since", "not an ISO-8601 time"),
        ({"updated_since": "2024-05-01T00:00:00"}, "updated_since", "not an ISO-8601 time with an offset"),
        ({"updated_since": datetime(2024, 5, 1)}, "updated_since", "has no timezone"),
        ({"updated_since": 1714521600}, "updated_since", "expected a datetime or string"),
        ({"fields": ["identifier", "nickname"]}, "fields", "'nickname' is not a key"),
        ({"fields": "attributes,,"}, None, None),
        ({"fields": []}, "fields", "not a list of non-empty names"),
        ({"fields": 3}, "fields", "expected a list of names"),
        ({"fields": ["installs"], "include_installs": False}, "fields", "include_installs=False"),
        ({"attribute_columns": ["a"]}, "attribute_columns", "only applies to format='csv'"),
        ({"start_page": 0}, "start_page", ">= 1"),
        ({"start_page": "two"}, "start_page", ">= 1"),
        ({"start_page": 3, "end_page": 2}, "end_page", "before start_page 3"),
        ({"output_path": "None"}, "output_path", "rendered to 'None'"),
        ({"output_path": "  "}, "output_path", "rendered to"),
        ({"output_path": "nosuchscheme://bucket/key"}, "output_path", "cannot be opened"),
    ],
)
def test_rendered_arguments_fail_before_any_request(
    kumulos_connection: KumulosEmulator, kwargs: dict[str, Any], parameter: str | None, fragment: str | None
) -> None:
    if parameter is None:
        run_export(max_xcom_users=100, **kwargs)
        assert kumulos_connection.requests
        return
    with pytest.raises(KumulosInputError) as caught:
        run_export(**kwargs)
    assert caught.value.parameter == parameter
    assert fragment in str(caught.value)
    assert kumulos_connection.requests == []


def test_templated_page_numbers_are_accepted_as_digit_strings(
    kumulos_connection: KumulosEmulator, tmp_path: Path
) -> None:
    summary = run_export(output_path=str(tmp_path / "u.jsonl"), page_size=10, start_page="2", end_page="3")
    assert summary["users_written"] == 20
    assert summary["start_page"] == 2 and summary["end_page"] == 3


def test_parquet_without_pyarrow_names_the_extra(
    kumulos_connection: KumulosEmulator, tmp_path: Path, monkeypatch: Any
) -> None:
    import importlib.util

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "pyarrow" else real_find_spec(name, *a)
    )
    with pytest.raises(KumulosInputError) as caught:
        run_export(output_path=str(tmp_path / "u.parquet"), format="parquet")
    assert "airflow-provider-kumulos[parquet]" in str(caught.value)
    assert kumulos_connection.requests == []
