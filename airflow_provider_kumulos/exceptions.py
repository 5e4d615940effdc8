"""Typed errors raised by the Kumulos provider.

Callers branch on the class, never on message text. Every message names the operation, the path
and the status; none ever contains credentials, and response text is truncated.
"""

from __future__ import annotations

from typing import Any

from airflow.exceptions import AirflowException

__all__ = [
    "KumulosAuthError",
    "KumulosConfigError",
    "KumulosCountMismatchError",
    "KumulosError",
    "KumulosInputError",
    "KumulosRateLimitError",
    "KumulosResponseError",
    "KumulosServerError",
    "KumulosTransportError",
    "KumulosUserNotFoundError",
    "KumulosValidationError",
]


class KumulosError(AirflowException):
    """Base class of every error this provider raises."""

    #: HTTP status that caused the error, when there was a response.
    status: int | None = None
    #: Seconds the server asked us to wait (``Retry-After``), when it did.
    retry_after: float | None = None
    #: Attributes a subclass adds, carried through :meth:`to_dict` / :meth:`from_dict`.
    _details: tuple[str, ...] = ()

    def __init__(self, message: str, *, status: int | None = None, operation: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.operation = operation

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form (class name, message, status, details) to cross a process boundary."""
        return {
            "error": type(self).__name__,
            "message": str(self),
            "status": self.status,
            "operation": self.operation,
            "retry_after": self.retry_after,
            "details": {name: getattr(self, name, None) for name in self._details},
        }

    @staticmethod
    def from_dict(data: dict[str, Any]) -> KumulosError:
        """Rebuild the error :meth:`to_dict` described, as the same class (KumulosError if unknown)."""
        cls = _ERROR_CLASSES.get(str(data.get("error")), KumulosError)
        error = cls.__new__(cls)
        KumulosError.__init__(
            error, str(data.get("message", "")), status=data.get("status"), operation=data.get("operation")
        )
        error.retry_after = data.get("retry_after")
        details = data.get("details") or {}
        for name in cls._details:
            setattr(error, name, details.get(name))
        return error


class KumulosInputError(KumulosError, ValueError):
    """An argument failed validation before any request was sent."""

    _details = ("parameter",)

    def __init__(self, parameter: str, problem: str, fix: str) -> None:
        super().__init__(f"Invalid {parameter}: {problem}. {fix}")
        self.parameter = parameter


class KumulosConfigError(KumulosError):
    """The connection is misconfigured (base URL, timeouts, TLS settings)."""


class KumulosAuthError(KumulosError):
    """401: the API key or server key was rejected."""


class KumulosValidationError(KumulosError):
    """422: the server rejected the request; ``body`` holds its parsed explanation."""

    _details = ("body",)

    def __init__(
        self, message: str, *, body: Any = None, status: int | None = 422, operation: str | None = None
    ) -> None:
        super().__init__(message, status=status, operation=operation)
        self.body = body


class KumulosUserNotFoundError(KumulosError):
    """The user does not exist (404 when reading, 400 when deleting attributes)."""

    _details = ("user_id",)

    def __init__(
        self, message: str, *, user_id: str, status: int | None = None, operation: str | None = None
    ) -> None:
        super().__init__(message, status=status, operation=operation)
        self.user_id = user_id


class KumulosRateLimitError(KumulosError):
    """429 that persisted after every retry."""


class KumulosServerError(KumulosError):
    """5xx (or another unexpected status) that persisted after every retry."""


class KumulosTransportError(KumulosError):
    """The request never got an HTTP answer: connection refused or dropped, timeout, TLS failure."""


class KumulosResponseError(KumulosError):
    """The server answered, but not with the JSON the endpoint documents."""


class KumulosCountMismatchError(KumulosError):
    """An export's user count disagrees with ``totalUsers``: the user set changed while it paged."""


_ERROR_CLASSES: dict[str, type[KumulosError]] = {
    cls.__name__: cls
    for cls in (
        KumulosError,
        KumulosInputError,
        KumulosConfigError,
        KumulosAuthError,
        KumulosValidationError,
        KumulosUserNotFoundError,
        KumulosRateLimitError,
        KumulosServerError,
        KumulosTransportError,
        KumulosResponseError,
        KumulosCountMismatchError,
    )
}
