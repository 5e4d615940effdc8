"""The one place that knows the Kumulos CRM API's rules. No I/O happens here.

It builds requests (paths, percent-encoded user ids, query checks), validates input before anything
is sent, turns a response into a result or a typed error, and decides whether an error is worth
retrying and after how long, and which typed error a failed exchange is. The sync hook (requests)
and the async hook (httpx) both call it, so they can never disagree about what a status means.

One module per concern, every name used elsewhere re-exported here (callers write ``_policy.<name>``):
``requests`` (input checks, request building), ``answers`` (response -> result or typed error),
``transport`` (no answer: timeouts, connection and TLS failures), ``retry`` (what is retried, how
long to wait), ``matching`` (whether a user's attributes are what a wait expects).
"""

from __future__ import annotations

from airflow_provider_kumulos._policy.answers import (
    Response,
    UsersPage,
    decode_users_page,
    error_for,
    interpret,
    malformed,
)
from airflow_provider_kumulos._policy.matching import attributes_satisfy, check_attributes_match
from airflow_provider_kumulos._policy.requests import (
    DEFAULT_BASE_URL,
    JSON_HEADERS,
    MAX_PER_PAGE,
    MAX_USER_ID_LENGTH,
    Request,
    check_attributes,
    check_page_window,
    check_paging,
    check_per_page,
    check_user_id,
    delete_attributes_request,
    describe,
    encode_user_id,
    get_attributes_request,
    request_target,
    set_attributes_request,
    users_page_request,
)
from airflow_provider_kumulos._policy.retry import (
    RETRYABLE_STATUSES,
    backoff_seconds,
    is_retryable,
    keeps_waiting,
    retry_after,
)
from airflow_provider_kumulos._policy.transport import (
    plain_http_answer,
    timeout_error,
    tls_error,
    transport_error,
    transport_failure,
)

__all__ = [
    "DEFAULT_BASE_URL",
    "JSON_HEADERS",
    "MAX_PER_PAGE",
    "MAX_USER_ID_LENGTH",
    "RETRYABLE_STATUSES",
    "Request",
    "Response",
    "UsersPage",
    "attributes_satisfy",
    "backoff_seconds",
    "check_attributes",
    "check_attributes_match",
    "check_page_window",
    "check_paging",
    "check_per_page",
    "check_user_id",
    "decode_users_page",
    "delete_attributes_request",
    "describe",
    "encode_user_id",
    "error_for",
    "get_attributes_request",
    "interpret",
    "is_retryable",
    "keeps_waiting",
    "malformed",
    "plain_http_answer",
    "request_target",
    "retry_after",
    "set_attributes_request",
    "timeout_error",
    "tls_error",
    "transport_error",
    "transport_failure",
    "users_page_request",
]
