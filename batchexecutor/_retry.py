"""Retry policies for transient Azure errors (tenacity), each bounded by a deadline.

Every request batchexecutor makes to Batch (and, through the store, to Blob storage) goes
through :func:`call` or :func:`retried`:

* **Transient** errors are retried: HTTP 429, 500, 502, 503 and 504, connection errors
  and timeouts (``ServiceRequestError`` / ``ServiceResponseError``, including a connection
  closed without an answer), and :class:`TransientError` raised by the callable itself
  (e.g. some tasks of an add-collection request came back ``servererror``).
* The wait before the next attempt is what the service asked for (``retry-after-ms``,
  ``x-ms-retry-after-ms`` or ``Retry-After``, in that order) or, without such a header,
  exponential backoff with jitter (``initial_backoff`` doubling up to ``max_backoff``,
  each wait drawn from its upper half).
* Every policy has a **deadline** (total seconds from the first attempt). Backoff waits
  are shortened to fit it; when it has passed (or the service asks for a wait beyond it)
  the last error is raised inside :class:`DeadlineExceeded`, which names the operation,
  the elapsed time and the number of attempts.
* Anything else (400, 401/403, 404, 409, 412, programming errors) surfaces at once,
  unchanged.

The SDK clients that batchexecutor builds have their own retries switched off
(``retry_total=0``, see ``BatchConfig.batch_client``), so these policies are the only
retry layer, and a deadline is a real bound.
"""

from __future__ import annotations

import functools
import logging
import random
import re
import time
from collections.abc import Callable, Mapping
from email.utils import parsedate_to_datetime
from typing import Any, ParamSpec, TypeVar

import tenacity
from azure.core.exceptions import (
    HttpResponseError,
    IncompleteReadError,
    ServiceRequestError,
    ServiceResponseError,
)

__all__ = [
    "DEFAULT_DEADLINE",
    "TRANSIENT_STATUS_CODES",
    "DeadlineExceeded",
    "TransientError",
    "call",
    "describe",
    "error_code",
    "is_transient",
    "policy",
    "redact",
    "retried",
    "retry_after",
    "status_code",
]

P = ParamSpec("P")
T = TypeVar("T")

_log = logging.getLogger("batchexecutor.retry")

#: HTTP statuses worth another attempt.
TRANSIENT_STATUS_CODES: frozenset[int] = frozenset({429, 500, 502, 503, 504})
#: Seconds a policy keeps trying when no deadline is given.
DEFAULT_DEADLINE = 120.0
#: First backoff wait (seconds) when the service gives no Retry-After.
DEFAULT_INITIAL_BACKOFF = 0.1
#: Longest backoff wait (seconds) when the service gives no Retry-After.
DEFAULT_MAX_BACKOFF = 10.0


class TransientError(Exception):
    """Raised by a retried callable to ask for another attempt.

    ``retry_after`` (seconds), when given, is the wait before that attempt; otherwise the
    policy backs off as for any transient error.
    """

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class DeadlineExceeded(Exception):
    """A transient error persisted until the operation's deadline.

    The last error is ``last_error`` (and ``__cause__``).
    """

    def __init__(
        self,
        operation: str,
        *,
        deadline: float,
        elapsed: float,
        attempts: int,
        last_error: BaseException,
        gave_up_early: float | None = None,
    ) -> None:
        self.operation = operation
        self.deadline = deadline
        self.elapsed = elapsed
        self.attempts = attempts
        self.last_error = last_error
        tries = "1 attempt" if attempts == 1 else f"{attempts} attempts"
        if gave_up_early is not None:
            why = (
                f"deadline of {deadline:g} s would pass during the {gave_up_early:g} s wait "
                "the service asked for"
            )
        else:
            why = f"deadline of {deadline:g} s reached"
        super().__init__(
            f"{operation} failed after {elapsed:.1f} s ({tries}; {why}); "
            f"last error: {describe(last_error)}"
        )


# --------------------------------------------------------------------------- classification


def status_code(error: BaseException) -> int | None:
    """The HTTP status of an Azure SDK error, if it has one."""
    if isinstance(error, HttpResponseError):
        status = error.status_code
        if status is None and error.response is not None:
            status = error.response.status_code
        return int(status) if status is not None else None
    return None


def error_code(error: BaseException) -> str | None:
    """The service's error code (``ServerBusy``, ``TaskExists``, ``JobNotFound``, ...)."""
    if isinstance(error, HttpResponseError):
        if error.error is not None and error.error.code:
            return str(error.error.code)
        if error.response is not None:
            headers: Mapping[str, str] = getattr(error.response, "headers", None) or {}
            header = headers.get("x-ms-error-code")
            if header:
                return str(header)
    return None


def is_transient(error: BaseException) -> bool:
    """Whether another attempt may succeed without changing the request."""
    if isinstance(error, TransientError):
        return True
    if isinstance(error, (ServiceRequestError, ServiceResponseError, IncompleteReadError)):
        return True  # connection refused/reset/closed, timeouts, truncated bodies
    if isinstance(error, HttpResponseError):
        return status_code(error) in TRANSIENT_STATUS_CODES
    return isinstance(error, (ConnectionError, TimeoutError))


def retry_after(error: BaseException) -> float | None:
    """Seconds the service asked the client to wait before retrying, if it said."""
    if isinstance(error, TransientError):
        return error.retry_after
    if not isinstance(error, HttpResponseError) or error.response is None:
        return None
    headers: Mapping[str, str] = getattr(error.response, "headers", None) or {}
    for name in ("retry-after-ms", "x-ms-retry-after-ms"):
        value = headers.get(name)
        if value:
            try:
                return max(0.0, float(value) / 1000.0)
            except ValueError:
                pass
    value = headers.get("Retry-After")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:  # an HTTP date
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, moment.timestamp() - time.time())


_SECRET_PATTERNS = [
    # SAS signatures and the like in URLs: sig=..., and the whole signature-bearing query.
    (re.compile(r"(?i)\b(sig|signature|se|skoid|sktid|skt|ske|sks|skv)=[^&\s'\"]+"), r"\1=***"),
    # Connection-string style secrets.
    (re.compile(r"(?i)\b(AccountKey|SharedAccessSignature|SharedAccessKey)=[^;\s'\"]+"), r"\1=***"),
    # Authorization headers echoed in messages.
    (re.compile(r"(?i)\b(SharedKey\s+[^:\s]+:)\S+"), r"\1***"),
    (re.compile(r"(?i)\b(Bearer\s+)\S+"), r"\1***"),
]


def redact(text: str) -> str:
    """``text`` with SAS signatures, account keys and tokens masked."""
    for pattern, replacement in _SECRET_PATTERNS:
        text = pattern.sub(replacement, text)
    return text


def describe(error: BaseException) -> str:
    """One line about an error, e.g. ``HTTP 503 ServerBusy: The server is busy.``."""
    if isinstance(error, HttpResponseError):
        status = status_code(error)
        code = error_code(error)
        message = ""
        if error.error is not None and error.error.message:
            message = str(error.error.message)
        elif error.reason:
            message = str(error.reason)
        parts = [f"HTTP {status}" if status is not None else type(error).__name__]
        if code:
            parts.append(code)
        text = " ".join(parts)
        if message:
            text += ": " + message.splitlines()[0]
        return redact(text)
    lines = str(error).strip().splitlines()
    first = lines[0] if lines else ""
    return redact(f"{type(error).__name__}: {first}" if first else type(error).__name__)


# --------------------------------------------------------------------------- policies


def policy(
    operation: str,
    *,
    deadline: float | None = None,
    initial_backoff: float = DEFAULT_INITIAL_BACKOFF,
    max_backoff: float = DEFAULT_MAX_BACKOFF,
    retry_on: Callable[[BaseException], bool] = is_transient,
    sleep: Callable[[float], None] = time.sleep,
) -> tenacity.Retrying:
    """A tenacity ``Retrying`` for ``operation`` (its name appears in errors and logs).

    ``deadline`` is in seconds from the first attempt (default :data:`DEFAULT_DEADLINE`);
    ``0`` means a single attempt. Use a fresh policy per operation: the deadline's clock
    starts when it is called.
    """
    limit = DEFAULT_DEADLINE if deadline is None else float(deadline)
    if limit < 0:
        raise ValueError(f"deadline must not be negative, got {deadline!r}")
    if initial_backoff <= 0 or max_backoff < initial_backoff:
        raise ValueError("backoff must satisfy 0 < initial_backoff <= max_backoff")
    asked: dict[int, float] = {}  # attempt number -> Retry-After the service gave

    def elapsed(state: tenacity.RetryCallState) -> float:
        return time.monotonic() - state.start_time

    def wait(state: tenacity.RetryCallState) -> float:
        assert state.outcome is not None
        error = state.outcome.exception()
        given = retry_after(error) if error is not None else None
        if given is not None:
            asked[state.attempt_number] = given
            return given
        ceiling = min(max_backoff, initial_backoff * 2 ** (state.attempt_number - 1))
        backoff = random.uniform(ceiling / 2, ceiling)
        return max(0.0, min(backoff, limit - elapsed(state)))

    def stop(state: tenacity.RetryCallState) -> bool:
        spent = elapsed(state)
        return spent >= limit or spent + state.upcoming_sleep > limit

    def give_up(state: tenacity.RetryCallState) -> Any:
        assert state.outcome is not None
        error = state.outcome.exception()
        assert error is not None
        spent = elapsed(state)
        early = asked.get(state.attempt_number) if spent < limit else None
        raise DeadlineExceeded(
            operation,
            deadline=limit,
            elapsed=spent,
            attempts=state.attempt_number,
            last_error=error,
            gave_up_early=early,
        ) from error

    def before_sleep(state: tenacity.RetryCallState) -> None:
        assert state.outcome is not None
        error = state.outcome.exception()
        if error is not None and _log.isEnabledFor(logging.DEBUG):
            _log.debug(
                "%s: attempt %d failed (%s); retrying in %.2f s",
                operation,
                state.attempt_number,
                describe(error),
                state.upcoming_sleep,
            )

    return tenacity.Retrying(
        retry=tenacity.retry_if_exception(retry_on),
        wait=wait,
        stop=stop,
        sleep=sleep,
        before_sleep=before_sleep,
        retry_error_callback=give_up,
    )


def call(
    operation: str,
    fn: Callable[..., T],
    /,
    *args: Any,
    deadline: float | None = None,
    **kwargs: Any,
) -> T:
    """``fn(*args, **kwargs)`` under the policy for ``operation`` (see :func:`policy`).

    >>> call("get job 'j1'", client.get_job, "j1", deadline=30)      # doctest: +SKIP
    """
    result: T = policy(operation, deadline=deadline)(fn, *args, **kwargs)
    return result


def retried(
    operation: str, *, deadline: float | None = None
) -> Callable[[Callable[P, T]], Callable[P, T]]:
    """Decorator form of :func:`call` (a fresh deadline for every call)."""

    def decorate(fn: Callable[P, T]) -> Callable[P, T]:
        @functools.wraps(fn)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
            result: T = policy(operation, deadline=deadline)(fn, *args, **kwargs)
            return result

        return wrapper

    return decorate
