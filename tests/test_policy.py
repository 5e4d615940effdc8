"""Unit tests of the pure API policy: id encoding, validation, error mapping, Retry-After, backoff."""

from __future__ import annotations

import email.utils
import json
import math
import time
from typing import Any
from urllib.parse import unquote

import pytest
from hypothesis import given
from hypothesis import strategies as st

from airflow_provider_kumulos import _policy
from airflow_provider_kumulos.exceptions import (
    KumulosAuthError,
    KumulosConfigError,
    KumulosError,
    KumulosInputError,
    KumulosRateLimitError,
    KumulosResponseError,
    KumulosServerError,
    KumulosTransportError,
    KumulosUserNotFoundError,
    KumulosValidationError,
)

GET = _policy.get_attributes_request("user-1")
PUT = _policy.set_attributes_request("user-1", {"a": 1})
DELETE = _policy.delete_attributes_request("user-1")
PAGE = _policy.users_page_request(2, 50)


def response(status: int, body: Any = b"", **headers: str) -> _policy.Response:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return _policy.Response(status, raw, headers)


# --- user ids ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("user_id", "segment"),
    [
        ("plain", "plain"),
        ("a/b", "a%2Fb"),
        ("q?x#y", "q%3Fx%23y"),
        ("100%", "100%25"),
        ("two words", "two%20words"),
        ("é€", "%C3%A9%E2%82%AC"),
        ("tab\tnl\n", "tab%09nl%0A"),
        (".", "%2E"),
        ("..", "%2E%2E"),
        ("...", "%2E%2E%2E"),
        ("a.b", "a.b"),
    ],
)
def test_encode_user_id_makes_one_safe_segment(user_id: str, segment: str) -> None:
    assert _policy.encode_user_id(user_id) == segment


@given(st.text(st.characters(exclude_categories=("Cs",)), min_size=1, max_size=60))
def test_encode_user_id_round_trips_for_any_text(user_id: str) -> None:
    segment = _policy.encode_user_id(user_id)
    assert "/" not in segment and "?" not in segment and "#" not in segment
    assert segment not in (".", "..")
    assert unquote(segment) == user_id


@pytest.mark.parametrize(
    ("user_id", "problem"),
    [
        (None, "expected a string, got NoneType"),
        (42, "expected a string, got int"),
        ("", "it is empty"),
        ("x" * (_policy.MAX_USER_ID_LENGTH + 1), "characters long"),
        ("bad\ud800", "cannot be encoded as UTF-8"),
    ],
)
def test_check_user_id_rejects_with_named_parameter(user_id: object, problem: str) -> None:
    with pytest.raises(KumulosInputError) as caught:
        _policy.check_user_id(user_id)
    assert caught.value.parameter == "user_id"
    assert str(caught.value).startswith("Invalid user_id: ")
    assert problem in str(caught.value)


def test_requests_carry_encoded_paths_and_validated_bodies() -> None:
    assert GET.path == "/v1/users/user-1/attributes" and GET.method == "GET" and GET.body is None
    assert PUT.body == b'{"a":1}' and PUT.method == "PUT" and PUT.user_id == "user-1"
    assert DELETE.method == "DELETE"
    assert _policy.request_target(PAGE) == "/v2/users?currentPage=2&numberPerPage=50"
    assert _policy.request_target(_policy.get_attributes_request("..")) == "/v1/users/%2E%2E/attributes"


# --- attributes and paging --------------------------------------------------------------------


def _nested(depth: int) -> dict[str, Any]:
    value: dict[str, Any] = {}
    for _ in range(depth):
        value = {"n": value}
    return value


@pytest.mark.parametrize(
    ("attributes", "problem"),
    [
        ([("a", 1)], "expected a JSON object (dict), got list"),
        ("{}", "expected a JSON object (dict), got str"),
        ({1: "x"}, "keys must be strings, found int key 1"),
        ({"score": math.nan}, "NaN or Infinity"),
        ({"nested": [1, {"x": math.inf}]}, "NaN or Infinity"),
        ({"when": time}, "not serialisable as JSON"),
        ({"when": {1, 2}}, "not serialisable as JSON"),
        (_nested(100_000), "nested too deeply"),
    ],
)
def test_check_attributes_rejects_with_named_parameter(attributes: object, problem: str) -> None:
    with pytest.raises(KumulosInputError) as caught:
        _policy.check_attributes(attributes)
    assert caught.value.parameter == "attributes"
    assert problem in str(caught.value)


def test_check_attributes_rejects_circular_references() -> None:
    loop: dict[str, Any] = {}
    loop["self"] = loop
    with pytest.raises(KumulosInputError, match="circular"):
        _policy.check_attributes({"loop": loop})


def test_check_attributes_encodes_compact_utf8_json() -> None:
    body = _policy.check_attributes({"name": "Zoë", "n": [1, 2.5, None, True], "empty": {}})
    assert json.loads(body) == {"name": "Zoë", "n": [1, 2.5, None, True], "empty": {}}
    assert b" " not in body


@pytest.mark.parametrize(
    ("page", "per_page", "parameter"),
    [
        (0, 10, "page"),
        (-1, 10, "page"),
        (1.0, 10, "page"),
        (True, 10, "page"),
        ("1", 10, "page"),
        (1, 0, "per_page"),
        (1, 1001, "per_page"),
        (1, False, "per_page"),
        (1, None, "per_page"),
    ],
)
def test_check_paging_rejects_out_of_range(page: object, per_page: object, parameter: str) -> None:
    with pytest.raises(KumulosInputError) as caught:
        _policy.check_paging(page, per_page)
    assert caught.value.parameter == parameter


def test_check_paging_accepts_the_documented_range() -> None:
    assert _policy.check_paging(1, 1) == (1, 1)
    assert _policy.check_paging(10**6, 1000) == (10**6, 1000)


# --- interpretation and error mapping ---------------------------------------------------------


def test_interpret_returns_documented_results() -> None:
    assert _policy.interpret(GET, response(200, {"a": 1})) == {"a": 1}
    assert _policy.interpret(GET, response(200, {})) == {}
    put = {"identifier": "user-1", "attributes": {"a": 1}}
    assert _policy.interpret(PUT, response(200, put)) == put
    assert _policy.interpret(DELETE, response(204)) is None


@pytest.mark.parametrize(
    ("request_", "status", "error_class"),
    [
        (GET, 401, KumulosAuthError),
        (PUT, 401, KumulosAuthError),
        (DELETE, 401, KumulosAuthError),
        (PAGE, 401, KumulosAuthError),
        (GET, 404, KumulosUserNotFoundError),
        (DELETE, 400, KumulosUserNotFoundError),
        (PUT, 422, KumulosValidationError),
        (PAGE, 422, KumulosValidationError),
        (GET, 429, KumulosRateLimitError),
        (GET, 500, KumulosServerError),
        (GET, 502, KumulosServerError),
        (GET, 503, KumulosServerError),
        (GET, 504, KumulosServerError),
        (GET, 400, KumulosServerError),
        (PAGE, 404, KumulosServerError),
    ],
)
def test_error_for_maps_each_status_to_its_class(
    request_: _policy.Request, status: int, error_class: type[KumulosError]
) -> None:
    with pytest.raises(error_class) as caught:
        _policy.interpret(request_, response(status, {"message": "nope"}))
    error = caught.value
    assert type(error) is error_class
    assert error.status == status
    assert error.operation == request_.operation
    assert f"returned HTTP {status}" in str(error)


def test_auth_error_says_which_credentials_to_check() -> None:
    error = _policy.error_for(GET, response(401, {"message": "no"}))
    assert "API key" in str(error) and "server key" in str(error)


def test_validation_error_carries_the_parsed_body() -> None:
    body = {"errors": {"numberPerPage": ["must be at most 1000"]}}
    error = _policy.error_for(PAGE, response(422, body))
    assert isinstance(error, KumulosValidationError)
    assert error.body == body
    plain = _policy.error_for(PUT, response(422, b"not json"))
    assert isinstance(plain, KumulosValidationError) and plain.body == "not json"


def test_not_found_error_names_the_user() -> None:
    error = _policy.error_for(GET, response(404))
    assert isinstance(error, KumulosUserNotFoundError) and error.user_id == "user-1"


def test_error_text_is_truncated() -> None:
    error = _policy.error_for(GET, response(500, b"x" * 10_000))
    assert len(str(error)) < 500


@pytest.mark.parametrize(
    ("request_", "body"),
    [(GET, b"{trunc"), (GET, b"<html>oops</html>"), (GET, b"[1, 2]"), (PUT, b'{"attributes": [1]}')],
)
def test_malformed_success_bodies_raise_response_error(request_: _policy.Request, body: bytes) -> None:
    with pytest.raises(KumulosResponseError):
        _policy.interpret(request_, response(200, body))


def test_decode_users_page_checks_shape() -> None:
    good = {"users": [{"identifier": "u1"}], "totalUsers": 7, "currentPage": 2}
    page = _policy.decode_users_page(PAGE, response(200, good))
    assert page.users == [{"identifier": "u1"}] and page.total_users == 7 and page.page == 2
    assert page.per_page == 50 and page.nbytes == len(json.dumps(good))
    raw = _policy.decode_users_page(PAGE, response(200, good), raw=True)
    assert [bytes(user) for user in raw.users] == [b'{"identifier": "u1"}']
    for broken in ({"totalUsers": 1}, {"users": []}, {"users": {}, "totalUsers": 1}):
        with pytest.raises(KumulosResponseError, match="documented shape"):
            _policy.decode_users_page(PAGE, response(200, broken))
    with pytest.raises(KumulosResponseError, match="not JSON"):
        _policy.decode_users_page(PAGE, response(200, b"<html>"))
    with pytest.raises(KumulosAuthError):
        _policy.decode_users_page(PAGE, response(401))


@pytest.mark.parametrize(
    "identifier",
    ["user-1", "caf\u00e9 \u2603", 'quote"inside', "back\\slash", "tab\there", "\U0001f600", ""],
)
@pytest.mark.parametrize("raw", [False, True])
def test_decode_users_page_reads_identifiers_however_they_are_written(identifier: str, raw: bool) -> None:
    users = [{"identifier": identifier, "attributes": {"identifier": "not this one"}}, {"identifier": "b"}]
    for body in (
        json.dumps({"users": users, "totalUsers": 2}, separators=(",", ":"), ensure_ascii=False).encode(),
        json.dumps({"users": users, "totalUsers": 2}, separators=(",", ":")).encode(),  # \u escapes
        json.dumps({"users": users, "totalUsers": 2}, ensure_ascii=False).encode(),  # spaces, raw UTF-8
        json.dumps({"users": [{"attributes": {}, **user} for user in users], "totalUsers": 2}).encode(),
    ):
        page = _policy.decode_users_page(PAGE, response(200, body), raw=raw)
        assert page.identifiers == [identifier, "b"]


@pytest.mark.parametrize(
    "users",
    [[{"name": "no identifier"}], [{"identifier": 3}], [{"identifier": None}], [1], [["identifier"]], ["u"]],
)
@pytest.mark.parametrize("raw", [False, True])
def test_a_page_with_a_user_lacking_a_string_identifier_is_malformed(users: list[Any], raw: bool) -> None:
    body = {"users": [{"identifier": "fine"}, *users], "totalUsers": 2}
    with pytest.raises(KumulosResponseError, match="documented shape") as caught:
        _policy.decode_users_page(PAGE, response(200, body), raw=raw)
    assert _policy.is_retryable(caught.value)


@pytest.mark.parametrize("raw", [False, True])
def test_a_page_with_an_identifier_that_is_not_utf8_is_malformed(raw: bool) -> None:
    body = b'{"users":[{"identifier":"bad\xff"}],"totalUsers":1}'
    with pytest.raises(KumulosResponseError):
        _policy.decode_users_page(PAGE, response(200, body), raw=raw)


def test_raw_users_of_a_pretty_printed_page_come_out_one_line_each_with_the_same_content() -> None:
    body = b'{"users": [{"identifier": "a",\n  "attributes": {"note": "two\\nlines"}},\n {"identifier": "b"}],\n"totalUsers": 2}'
    page = _policy.decode_users_page(PAGE, response(200, body), raw=True)
    assert page.identifiers == ["a", "b"]
    assert [b"\n" in bytes(user) for user in page.users] == [False, False]
    assert [json.loads(bytes(user)) for user in page.users] == json.loads(body)["users"]


def test_raw_users_of_a_compact_page_are_the_exact_bytes_sent() -> None:
    users = b'[{"identifier":"a","attributes":{"x":1.50}},{"attributes":{},"identifier":"b"}]'
    page = _policy.decode_users_page(
        PAGE, response(200, b'{"users":' + users + b',"totalUsers":2}'), raw=True
    )
    assert b"[" + b",".join(bytes(user) for user in page.users) + b"]" == users


# --- retry decisions --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("error", "retryable"),
    [
        (_policy.error_for(GET, response(429)), True),
        (_policy.error_for(GET, response(500)), True),
        (_policy.error_for(GET, response(502)), True),
        (_policy.error_for(GET, response(503)), True),
        (_policy.error_for(GET, response(504)), True),
        (_policy.transport_error(GET, "dropped"), True),
        (KumulosResponseError("garbled", status=200), True),
        (_policy.error_for(GET, response(400)), False),
        (_policy.error_for(GET, response(401)), False),
        (_policy.error_for(GET, response(404)), False),
        (_policy.error_for(PUT, response(422)), False),
        (_policy.error_for(GET, response(501)), False),
        (_policy.tls_error(GET, "https://x", "SSLError"), False),
        (KumulosInputError("p", "bad", "fix"), False),
        (ValueError("not ours"), False),
    ],
)
def test_is_retryable(error: BaseException, retryable: bool) -> None:
    assert _policy.is_retryable(error) is retryable


def test_keeps_waiting_on_missing_users_and_transient_errors_only() -> None:
    assert _policy.keeps_waiting(_policy.error_for(GET, response(404)))
    assert _policy.keeps_waiting(_policy.error_for(GET, response(503)))
    assert not _policy.keeps_waiting(_policy.error_for(GET, response(401)))
    assert not _policy.keeps_waiting(KumulosConfigError("broken"))


def test_transport_errors_name_the_request() -> None:
    error = _policy.timeout_error(GET, 1.0, 2.0, "ReadTimeout")
    assert isinstance(error, KumulosTransportError)
    assert "GET /v1/users/user-1/attributes" in str(error) and "read 2.0s" in str(error)
    assert isinstance(_policy.tls_error(GET, "https://x", "SSLError"), KumulosConfigError)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("7", 7.0),
        (" 12 ", 12.0),
        ("0", 0.0),
        ("3600", 3600.0),
        # Not the RFC's whole seconds: ignored, and the usual backoff applies.
        ("2.5", None),
        ("-3", None),
        ("soon", None),
        ("nan", None),
        ("inf", None),
        ("", None),
    ],
)
def test_retry_after_seconds(value: str, expected: float | None) -> None:
    error = _policy.error_for(GET, response(429, **{"Retry-After": value}))
    assert error.retry_after == expected


def test_retry_after_http_date_and_header_case() -> None:
    future = email.utils.formatdate(time.time() + 30, usegmt=True)
    error = _policy.error_for(GET, response(503, **{"retry-after": future}))
    assert error.retry_after is not None and 28 <= error.retry_after <= 31
    past = email.utils.formatdate(time.time() - 30, usegmt=True)
    assert _policy.error_for(GET, response(429, **{"Retry-After": past})).retry_after == 0.0


def test_retry_after_ignored_outside_429_and_503() -> None:
    assert _policy.error_for(GET, response(500, **{"Retry-After": "5"})).retry_after is None
    assert _policy.error_for(GET, response(429)).retry_after is None


def test_backoff_honours_retry_after_up_to_the_cap() -> None:
    asked = _policy.error_for(GET, response(429, **{"Retry-After": "7"}))
    assert _policy.backoff_seconds(1, asked, base=0.5, cap=30, max_retry_after=120) == 7.0
    assert _policy.backoff_seconds(1, asked, base=0.5, cap=30, max_retry_after=3) == 3.0


@given(st.integers(min_value=1, max_value=40), st.floats(0.01, 5), st.floats(0.01, 60))
def test_backoff_is_jittered_within_the_exponential_ceiling(attempt: int, base: float, cap: float) -> None:
    delay = _policy.backoff_seconds(attempt, None, base=base, cap=cap, max_retry_after=120)
    ceiling = min(cap, base * 2 ** (attempt - 1))
    assert ceiling / 2 <= delay <= ceiling


# --- waiting for a user -----------------------------------------------------------------------


def test_attributes_satisfy_compares_json_values_strictly() -> None:
    attributes = {"onboarded": True, "n": 1, "tags": ["a"], "meta": {"x": None}}
    assert _policy.attributes_satisfy(attributes, None)
    assert _policy.attributes_satisfy(attributes, {})
    assert _policy.attributes_satisfy(attributes, {"onboarded": True, "n": 1.0, "meta": {"x": None}})
    assert not _policy.attributes_satisfy(attributes, {"onboarded": 1})
    assert not _policy.attributes_satisfy(attributes, {"n": True})
    assert not _policy.attributes_satisfy(attributes, {"tags": ["a", "b"]})
    assert not _policy.attributes_satisfy(attributes, {"missing": None})
    assert not _policy.attributes_satisfy(attributes, {"meta": {"x": None, "y": 1}})


def test_check_attributes_match_names_its_parameter() -> None:
    assert _policy.check_attributes_match(None) is None
    assert _policy.check_attributes_match({"a": 1}) == {"a": 1}
    with pytest.raises(KumulosInputError) as caught:
        _policy.check_attributes_match("{'a': 1}")
    assert caught.value.parameter == "attributes_match"


# --- error serialisation ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "error",
    [
        _policy.error_for(GET, response(401)),
        _policy.error_for(GET, response(404)),
        _policy.error_for(PAGE, response(422, {"errors": {"x": ["bad"]}})),
        _policy.error_for(GET, response(429, **{"Retry-After": "3"})),
        KumulosInputError("user_id", "it is empty", "Pass one."),
        KumulosConfigError("broken"),
    ],
)
def test_errors_round_trip_through_json(error: KumulosError) -> None:
    rebuilt = KumulosError.from_dict(json.loads(json.dumps(error.to_dict())))
    assert type(rebuilt) is type(error)
    assert str(rebuilt) == str(error)
    assert (rebuilt.status, rebuilt.operation, rebuilt.retry_after) == (
        error.status,
        error.operation,
        error.retry_after,
    )
    for name in type(error)._details:
        assert getattr(rebuilt, name) == getattr(error, name)


def test_unknown_error_class_rebuilds_as_base_error() -> None:
    rebuilt = KumulosError.from_dict({"error": "RuntimeError", "message": "boom"})
    assert type(rebuilt) is KumulosError and str(rebuilt) == "boom"
