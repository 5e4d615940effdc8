"""Without output_path the users come back through XCom, with a hard limit that fails fast."""

from __future__ import annotations

import pytest
from test_export_support import as_set, run_export

from airflow_provider_kumulos.exceptions import KumulosInputError
from airflow_provider_kumulos.testing.emulator import KumulosEmulator


def test_users_are_returned_as_dicts(kumulos_connection: KumulosEmulator) -> None:
    users = run_export(page_size=7)
    assert isinstance(users, list) and all(isinstance(user, dict) for user in users)
    assert as_set(users) == as_set(kumulos_connection.users())
    assert len(users) == 50


def test_limit_fails_on_the_first_page(kumulos_connection: KumulosEmulator) -> None:
    with pytest.raises(KumulosInputError) as caught:
        run_export(max_xcom_users=49, page_size=10)
    assert caught.value.parameter == "max_xcom_users"
    assert "the app has 50 users" in str(caught.value)
    assert "Set output_path" in str(caught.value)
    assert len(kumulos_connection.requests) == 1


def test_limit_equal_to_the_user_count_is_fine(kumulos_connection: KumulosEmulator) -> None:
    assert len(run_export(max_xcom_users=50, page_size=10)) == 50


def test_filtered_export_fails_once_the_running_count_passes_the_limit(
    kumulos_connection: KumulosEmulator,
) -> None:
    with pytest.raises(KumulosInputError) as caught:
        run_export(max_xcom_users=12, page_size=10, updated_since="1970-01-01T00:00:00Z")
    assert "more than 12 users matched" in str(caught.value)
    assert len(kumulos_connection.requests) == 2
