"""Which errors are worth another attempt, and how long to wait before it.

One decision for the sync hook, the async hook and the trigger's wait: 429, 5xx, transport errors
and garbled answers are retried; the server's ``Retry-After`` wins over jittered exponential backoff.
"""

from __future__ import annotations

from airflow_provider_kumulos.exceptions import (
    KumulosError,
    KumulosRateLimitError,
    KumulosResponseError,
    KumulosServerError,
    KumulosTransportError,
    KumulosUserNotFoundError,
)

#: Status codes worth another attempt; 400, 401, 404 and 422 never are.
RETRYABLE_STATUSES = frozenset({429, 500, 502, 503, 504})


def is_retryable(error: BaseException) -> bool:
    """Whether another attempt may succeed: 429, 5xx, transport errors, garbled bodies."""
    if isinstance(error, KumulosTransportError):
        return True
    if isinstance(error, KumulosResponseError):
        # A truncated or HTML body with status 200 is a proxy or network hiccup, worth one more try.
        return True
    if isinstance(error, KumulosRateLimitError | KumulosServerError):
        return error.status in RETRYABLE_STATUSES
    return False


def keeps_waiting(error: BaseException) -> bool:
    """Whether a wait for a user should poll again after ``error``: the user is missing, or it is transient."""
    return isinstance(error, KumulosUserNotFoundError) or is_retryable(error)


def retry_after(error: BaseException) -> float | None:
    """Seconds the server asked us to wait, if it did."""
    return error.retry_after if isinstance(error, KumulosError) else None


def backoff_seconds(
    attempt: int, error: BaseException | None, *, base: float, cap: float, max_retry_after: float
) -> float:
    """Delay before attempt ``attempt + 1``: the server's ``Retry-After`` (capped), else jittered exponential backoff.

    Jitter (uniform in the upper half of min(cap, base * 2**(attempt-1))) spreads concurrent workers
    apart while keeping a floor under each wait.
    """
    import random

    asked = retry_after(error) if error is not None else None
    if asked is not None:
        return min(asked, max_retry_after)
    ceiling = min(cap, base * (2 ** max(0, attempt - 1)))
    return random.uniform(ceiling / 2, ceiling)
