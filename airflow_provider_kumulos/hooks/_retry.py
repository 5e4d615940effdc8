"""Retry settings shared by the sync and the async hook.

Both build their tenacity controller (``Retrying`` / ``AsyncRetrying``) from :func:`retry_kwargs`,
so "what is retried" and "how long to wait" come from ``_policy`` in exactly one way.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from airflow_provider_kumulos import _policy
from airflow_provider_kumulos.exceptions import KumulosInputError

if TYPE_CHECKING:
    from tenacity import RetryCallState


@dataclass(frozen=True)
class RetrySettings:
    """How hard to try: ``max_retries`` extra attempts, jittered exponential backoff, capped waits."""

    max_retries: int = 5
    backoff_base: float = 0.5
    backoff_max: float = 30.0
    max_retry_after: float = 120.0

    def __post_init__(self) -> None:
        if self.max_retries < 0:
            raise KumulosInputError("max_retries", f"{self.max_retries} is negative", "Use 0 or more.")
        if self.backoff_base < 0 or self.backoff_max < 0 or self.max_retry_after < 0:
            raise KumulosInputError(
                "backoff", "backoff_base, backoff_max and max_retry_after must be >= 0", "Use seconds >= 0."
            )

    def wait_seconds(self, retry_state: RetryCallState) -> float:
        """tenacity ``wait`` callback: the policy's delay for this attempt's error."""
        error = retry_state.outcome.exception() if retry_state.outcome else None
        return _policy.backoff_seconds(
            retry_state.attempt_number,
            error,
            base=self.backoff_base,
            cap=self.backoff_max,
            max_retry_after=self.max_retry_after,
        )


@dataclass(frozen=True)
class RetryNote:
    """What a ``before_sleep`` callback reports about the attempt that just failed."""

    operation: str
    reason: str
    error_name: str
    attempt: int
    sleep: float
    rate_limited: bool

    @classmethod
    def of(cls, retry_state: RetryCallState) -> RetryNote:
        """Read the failed attempt's error, its operation and the coming wait from tenacity's state."""
        error = retry_state.outcome.exception() if retry_state.outcome else None
        status = getattr(error, "status", None)
        return cls(
            operation=getattr(error, "operation", None) or "request",
            reason=str(status or type(error).__name__),
            error_name=type(error).__name__,
            attempt=retry_state.attempt_number,
            sleep=retry_state.next_action.sleep if retry_state.next_action else 0.0,
            rate_limited=status == 429,
        )


def retry_kwargs(settings: RetrySettings, before_sleep: Callable[[RetryCallState], Any]) -> dict[str, Any]:
    """Keyword arguments for ``tenacity.Retrying`` or ``tenacity.AsyncRetrying``."""
    import tenacity

    return {
        "stop": tenacity.stop_after_attempt(settings.max_retries + 1),
        "wait": settings.wait_seconds,
        "retry": tenacity.retry_if_exception(_policy.is_retryable),
        "before_sleep": before_sleep,
        "reraise": True,
    }
