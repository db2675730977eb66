"""What a failed call means: its HTTP status, whether retrying can help, how long the server
asked to wait, and the errors the streaming client raises itself.

Retried: 408, 409, 425, 429 and every 5xx, timeouts, connection errors and a 200 reply that is
not a completion. Never retried: 400, 401, 403, 404, 422 and every other 4xx.
"""

from __future__ import annotations

import email.utils
import math
from datetime import datetime, timezone

from evoroute.backends.live.sdk import load_litellm

RETRYABLE_STATUS = frozenset({408, 409, 425, 429})   # and every 5xx


class StreamTimeout(Exception):
    """The stream went on past the call's total time budget."""


class InvalidReply(Exception):
    """A 200 reply that is not a completion (no content: empty stream, no choices, JSON or
    HTML where a stream was asked for)."""


class BudgetStop(Exception):
    """The running cost of the stream passed the budget left; the stream was closed."""


class NotSent(Exception):
    """The prompt alone would cost more than the budget left: nothing was sent."""


OWN_ERRORS = (StreamTimeout, InvalidReply, BudgetStop, NotSent)


def _non_retryable() -> tuple[type[BaseException], ...]:
    """litellm's error types that retrying cannot fix, for errors that carry no status code."""
    lt = load_litellm()
    names = ("AuthenticationError", "PermissionDeniedError", "BadRequestError", "NotFoundError",
             "ContextWindowExceededError", "ContentPolicyViolationError",
             "UnsupportedParamsError", "InvalidRequestError", "UnprocessableEntityError")
    return tuple(getattr(lt, n) for n in names if isinstance(getattr(lt, n, None), type))


def status_of(exc: BaseException) -> int | None:
    """The HTTP status an error carries (litellm's ``status_code``, or its response's)."""
    for obj in (exc, getattr(exc, "response", None)):
        code = getattr(obj, "status_code", None)
        if isinstance(code, int) and 100 <= code <= 599:
            return code
    return None


def is_retryable(exc: BaseException) -> bool:
    """Retry 408/409/425/429/5xx, timeouts, connection errors and non-completion 200 replies;
    never any other 4xx (bad request, bad key, forbidden, unknown model, unprocessable).

    An error without a status (a dropped connection, a mock) is retried unless its litellm
    type says the request itself is wrong. litellm reports a timeout as 408 and an error it
    could not map as 500, so both are retried."""
    if isinstance(exc, (BudgetStop, NotSent)):
        return False
    if isinstance(exc, (InvalidReply, StreamTimeout)):
        return True
    lt = load_litellm()
    if isinstance(exc, (lt.Timeout, lt.APIConnectionError)):
        return True
    code = status_of(exc)
    if code is not None:
        return code in RETRYABLE_STATUS or code >= 500
    return not isinstance(exc, _non_retryable())


def retry_after_s(exc: BaseException, now: datetime | None = None) -> float | None:
    """The wait a server asked for in ``retry-after-ms`` or ``Retry-After`` (seconds or an
    HTTP date), or None. Negative or unparseable values count as none."""
    headers = getattr(exc, "litellm_response_headers", None)
    if headers is None:
        headers = getattr(getattr(exc, "response", None), "headers", None)
    if headers is None:
        return None
    get = headers.get if hasattr(headers, "get") else (lambda k: None)
    try:
        ms = get("retry-after-ms")
        if ms is not None:
            v = float(ms) / 1000.0
            return v if math.isfinite(v) and v >= 0 else None
    except (TypeError, ValueError):
        pass
    raw = get("retry-after")
    if raw is None:
        return None
    raw = str(raw).strip()
    try:
        v = float(raw)
        return v if math.isfinite(v) and v >= 0 else None
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(raw)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, (when - (now or datetime.now(timezone.utc))).total_seconds())
