"""Requests that got no HTTP answer: timeouts, connection failures and the diagnosis of TLS failures.

Every client (requests in the hook, httpx in the async hook) hands its exception to
:func:`transport_failure`, which names the outcome and the typed error; a TLS handshake answered
in plain HTTP is told apart from a certificate problem, with the fix for each.
"""

from __future__ import annotations

import re

from airflow_provider_kumulos._policy.requests import Request, describe
from airflow_provider_kumulos.exceptions import KumulosConfigError, KumulosError, KumulosTransportError


def transport_error(request: Request, problem: str) -> KumulosTransportError:
    """The error for a request that got no HTTP answer (whatever client sent it)."""
    return KumulosTransportError(f"{describe(request)}: {problem}", operation=request.operation)


def timeout_error(request: Request, connect: float, read: float, detail: str) -> KumulosTransportError:
    """The error for a request that got no answer in time (retryable like any transport error)."""
    return transport_error(
        request, f"no answer within the timeout (connect {connect}s, read {read}s): {detail}"
    )


#: OpenSSL's reasons for a TLS handshake answered by a server that does not speak TLS (plain HTTP):
#: its answer ("HTTP/1.1 400 ...") is read as a TLS record with a nonsensical version.
_PLAIN_HTTP_REASONS = ("WRONG_VERSION_NUMBER", "RECORD_LAYER_FAILURE", "HTTP_REQUEST")


def _linked_errors(error: BaseException) -> list[BaseException]:
    """``error`` and every error it wraps: causes, contexts, urllib3's ``reason``, exception args."""
    found: list[BaseException] = []
    pending: list[object] = [error]
    while pending:
        current = pending.pop()
        if not isinstance(current, BaseException) or any(current is seen for seen in found):
            continue
        found.append(current)
        pending += [current.__cause__, current.__context__, getattr(current, "reason", None), *current.args]
    return found


def _ssl_reasons(error: BaseException) -> list[str]:
    """The OpenSSL reasons (``ssl.SSLError.reason``) anywhere in ``error``'s chain."""
    import ssl

    return [
        link.reason
        for link in _linked_errors(error)
        if isinstance(link, ssl.SSLError) and isinstance(link.reason, str)
    ]


def plain_http_answer(error: BaseException | str) -> str | None:
    """The OpenSSL reason showing that a TLS handshake met a plain-HTTP server, else None.

    Takes the client's exception (any client: the chain is searched for ``ssl.SSLError``) or the
    text of one (``"[SSL: WRONG_VERSION_NUMBER] wrong version number"``, ``"record layer failure"``).
    """
    if isinstance(error, BaseException):
        reasons = _ssl_reasons(error)
        texts = [str(link) for link in _linked_errors(error)] if not reasons else []
    else:
        reasons, texts = [], [error]
    for reason in reasons:
        if reason.upper() in _PLAIN_HTTP_REASONS:
            return reason.upper()
    for text in texts:
        normalised = re.sub(r"[\s_]+", "_", text.upper())
        for reason in _PLAIN_HTTP_REASONS:
            if reason in normalised:
                return reason
    return None


def _plain_http_url(base_url: str) -> str:
    """``base_url`` with its scheme replaced by ``http://``: the fix for a plain-HTTP server."""
    return "http://" + base_url.split("://", 1)[-1]


def tls_error(request: Request, base_url: str, error: BaseException | str) -> KumulosConfigError:
    """The error for a failed TLS handshake: a configuration problem, so never retried.

    ``error`` is the client's exception (or its text, or just its class name); when it shows that
    the server answered in plain HTTP, the message says so and gives the ``http://`` URL to use.
    """
    reason = plain_http_answer(error)
    if reason is not None:
        return KumulosConfigError(
            f"{describe(request)}: {base_url} answered the TLS handshake in plain HTTP ({reason}): "
            "the server does not speak HTTPS, so no 'verify' setting can help. Set the connection host "
            f"to {_plain_http_url(base_url)} (a host without a scheme means https://).",
            operation=request.operation,
        )
    if isinstance(error, BaseException):
        reasons = _ssl_reasons(error)
        detail = type(error).__name__ + (f": {reasons[0]}" if reasons else "")
    else:
        detail = error
    return KumulosConfigError(
        f"{describe(request)}: TLS verification failed for {base_url} ({detail}). If the server uses a "
        "private CA, set the connection extra 'verify' to its CA bundle path; set it to false only for "
        "local testing.",
        operation=request.operation,
    )


def transport_failure(
    request: Request,
    error: BaseException,
    *,
    base_url: str,
    connect_timeout: float,
    read_timeout: float,
    timed_out: bool,
) -> tuple[str, KumulosError]:
    """The outcome label (for request counts) and typed error of a request that got no HTTP answer.

    Every client (requests in the hook, httpx in the async hook) hands its exception here, saying
    only whether its library called it a timeout; a TLS failure is found in the error's causes.
    """
    detail = type(error).__name__
    if timed_out:
        return "timeout", timeout_error(request, connect_timeout, read_timeout, detail)
    if _tls_cause(error) is not None:
        return "tls_error", tls_error(request, base_url, error)
    return "connection_error", transport_error(request, f"connection to {base_url} failed: {detail}")


def _tls_cause(error: BaseException) -> BaseException | None:
    """The TLS failure (certificate, handshake) among the errors ``error`` wraps, if any."""
    import ssl

    return next((link for link in _linked_errors(error) if isinstance(link, ssl.SSLError)), None)
