"""One exception tree for everything callsheet reports.

    CallsheetError                 code, message, retryable, provider, status_code
    ├── InputError                 bad argument: names the field and the fix; nothing stored or charged
    ├── NotFound                   unknown job, output or shoot id
    ├── ConfigError                missing or contradictory configuration
    ├── StorageError               callsheet's own files or store cannot be written or read (disk_full)
    └── ProviderError              the provider said no, or could not be reached
        ├── AuthError              401/403: key missing, invalid or not allowed
        ├── InsufficientCredits    402 (or FASHN's 429 out-of-credits)
        ├── RateLimited            429: retryable, carries retry_after
        ├── ProviderUnavailable    5xx: retryable
        ├── ProviderRejected       other 4xx: the provider refused the input
        ├── TransportError         no answer; `maybe_sent` tells whether it may have been accepted
        └── BadResponse            an answer that cannot be parsed

Status codes map to exceptions in `error_for_status`; MCP errors are produced only at the tool boundary.
"""

from __future__ import annotations

import errno
import re
from dataclasses import dataclass


class CallsheetError(Exception):
    code = "error"
    retryable = False

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        retryable: bool | None = None,
        provider: str | None = None,
        status_code: int | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        if retryable is not None:
            self.retryable = retryable
        self.provider = provider
        self.status_code = status_code

    def __str__(self) -> str:
        return self.message


class InputError(CallsheetError):
    code = "invalid_input"

    def __init__(self, field: str, problem: str, fix: str) -> None:
        head = problem if problem.startswith(field) else f"{field}: {problem}"
        super().__init__(f"{head} {fix}".strip())
        self.field = field
        self.fix = fix


class NotFound(CallsheetError):
    code = "not_found"


class BudgetExceeded(CallsheetError):
    """The caller's credits for the day (CALLSHEET_CALLER_CREDITS_PER_DAY) would be crossed."""

    code = "budget_exceeded"


class ConfigError(CallsheetError):
    code = "config_error"


class StorageError(CallsheetError):
    """callsheet's own data folder or store failed: a full disk, a read-only or damaged file."""

    code = "storage_error"
    retryable = True


def storage_failure(exc: BaseException, what: str) -> StorageError:
    """`what` could not be written or read because of `exc` (an OSError or a database error)."""
    full = getattr(exc, "errno", None) in (errno.ENOSPC, errno.EDQUOT) or "disk is full" in str(exc)
    if full:
        return StorageError(
            f"{what}: the disk holding callsheet's data folder is full. Free space on it, then call again.",
            code="disk_full",
        )
    reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
    return StorageError(f"{what}: {reason}. Check the data folder (callsheet doctor), then call again.")


@dataclass(frozen=True)
class ErrorText:
    """A provider's error answer as one line, and its own code for it when it gives one."""

    message: str
    code: str | None = None


class ProviderError(CallsheetError):
    """`provider_code` is the provider's own code for the error (FASHN's error name, neo-fashion's
    envelope code...), so callers branch on a field, never on message text."""

    code = "provider_error"

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        retryable: bool | None = None,
        provider: str | None = None,
        status_code: int | None = None,
        provider_code: str | None = None,
    ) -> None:
        super().__init__(message, code=code, retryable=retryable, provider=provider, status_code=status_code)
        self.provider_code = provider_code


class AuthError(ProviderError):
    code = "unauthorized"


class InsufficientCredits(ProviderError):
    code = "insufficient_credits"


class RateLimited(ProviderError):
    code = "rate_limited"
    retryable = True

    def __init__(
        self,
        message: str,
        *,
        retry_after: float | None = None,
        provider: str | None = None,
        provider_code: str | None = None,
    ) -> None:
        super().__init__(message, provider=provider, status_code=429, provider_code=provider_code)
        self.retry_after = retry_after


class ProviderUnavailable(ProviderError):
    code = "provider_unavailable"
    retryable = True


class ProviderRejected(ProviderError):
    code = "invalid_request"


class TransportError(ProviderError):
    """No usable answer. `maybe_sent` is True when the request may have reached the provider."""

    code = "connection_error"
    retryable = True

    def __init__(self, message: str, *, maybe_sent: bool, provider: str | None = None) -> None:
        super().__init__(message, provider=provider)
        self.maybe_sent = maybe_sent


class BadResponse(ProviderError):
    code = "bad_response"
    retryable = True


_HINTS: dict[int, str] = {
    401: "Check the API key ({var}): it is missing, wrong or revoked.",
    402: "Top up credits in the provider's dashboard, then call again.",
    403: "This key or plan may not use this feature; check the provider account.",
    404: "The provider does not know this id; it may have expired.",
    429: "The provider is rate limiting; callsheet retries by itself.",
}


def error_for_status(
    status_code: int,
    message: str,
    *,
    provider: str,
    key_var: str = "the provider's API key variable",
    retry_after: float | None = None,
    provider_code: str | None = None,
) -> ProviderError:
    """The one place where an HTTP status becomes an exception."""
    hint = _HINTS.get(status_code, "").format(var=key_var)
    text = f"{provider} answered HTTP {status_code}: {message}" + (f" {hint}" if hint else "")
    if status_code == 429:
        return RateLimited(text, retry_after=retry_after, provider=provider, provider_code=provider_code)
    cls: type[ProviderError] = ProviderRejected
    if status_code in (401, 403):
        cls = AuthError
    elif status_code == 402:
        cls = InsufficientCredits
    elif status_code >= 500:
        cls = ProviderUnavailable
    code = "not_found" if status_code == 404 else None
    return cls(text, code=code, provider=provider, status_code=status_code, provider_code=provider_code)


def snake_code(name: str) -> str:
    """`ImageLoadError` -> `image_load_error`."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()
