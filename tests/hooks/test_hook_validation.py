"""Bad input fails before any request is sent, with an error naming the parameter and the fix."""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import datetime
from typing import Any

import pytest

from airflow_provider_kumulos.exceptions import KumulosInputError
from airflow_provider_kumulos.hooks.kumulos import KumulosCRMHook
from airflow_provider_kumulos.testing.emulator import RecordedRequest

Received = Callable[..., list[RecordedRequest]]


def deeply_nested(depth: int) -> dict[str, Any]:
    value: dict[str, Any] = {}
    for _ in range(depth):
        value = {"child": value}
    return value


BAD_USER_IDS: list[Any] = [None, 7, b"bytes", "", "x" * 1025, "lone\ud800surrogate"]
BAD_ATTRIBUTES: list[Any] = [
    None,
    ["a", 1],
    "{}",
    {1: "int key"},
    {("tuple",): 1},
    {"score": math.nan},
    {"score": -math.inf},
    {"deep": [{"x": math.inf}]},
    {"when": datetime(2026, 1, 1)},
    {"set": {1, 2}},
    {"obj": object()},
    deeply_nested(50_000),
]


def assert_rejected(call: Callable[[], Any], parameter: str, received: Received) -> KumulosInputError:
    with pytest.raises(KumulosInputError) as caught:
        call()
    error = caught.value
    assert error.parameter == parameter
    assert str(error).startswith(f"Invalid {parameter}: ")
    assert isinstance(error, ValueError)
    assert received() == []
    return error


@pytest.mark.parametrize("user_id", BAD_USER_IDS)
@pytest.mark.parametrize("method", ["get_attributes", "delete_attributes", "user_exists"])
def test_bad_user_ids_are_rejected_before_sending(
    hook: KumulosCRMHook, received: Received, method: str, user_id: Any
) -> None:
    assert_rejected(lambda: getattr(hook, method)(user_id), "user_id", received)


@pytest.mark.parametrize("user_id", BAD_USER_IDS)
def test_bad_user_ids_are_rejected_by_set_attributes(
    hook: KumulosCRMHook, received: Received, user_id: Any
) -> None:
    assert_rejected(lambda: hook.set_attributes(user_id, {"a": 1}), "user_id", received)


@pytest.mark.parametrize("attributes", BAD_ATTRIBUTES)
def test_bad_attributes_are_rejected_before_sending(
    hook: KumulosCRMHook, received: Received, user_id: str, attributes: Any
) -> None:
    error = assert_rejected(lambda: hook.set_attributes(user_id, attributes), "attributes", received)
    assert len(str(error)) < 400


@pytest.mark.parametrize(
    ("page", "page_size", "parameter"),
    [
        (0, 10, "page"),
        (-3, 10, "page"),
        ("1", 10, "page"),
        (1, 0, "page_size"),
        (1, 1001, "page_size"),
        (1, 2.5, "page_size"),
    ],
)
def test_bad_paging_is_rejected_before_sending(
    hook: KumulosCRMHook, received: Received, page: Any, page_size: Any, parameter: str
) -> None:
    error = assert_rejected(lambda: hook.get_users_page(page, page_size), parameter, received)
    assert_rejected(lambda: hook.fetch_users_page(page, page_size), parameter, received)
    iter_parameter = "start_page" if parameter == "page" else parameter
    assert_rejected(lambda: list(hook.iter_pages(page_size, page)), iter_parameter, received)
    if parameter == "page_size":
        assert "1..1000" in str(error)


def test_bad_end_page_is_rejected_before_sending(hook: KumulosCRMHook, received: Received) -> None:
    assert_rejected(lambda: list(hook.iter_pages(10, 1, end_page=0)), "end_page", received)


def test_validation_needs_no_connection() -> None:
    hook = KumulosCRMHook("kumulos_connection_that_does_not_exist")
    with pytest.raises(KumulosInputError):
        hook.get_attributes("")
    with pytest.raises(KumulosInputError):
        hook.set_attributes("ok", {"bad": math.nan})
