"""HTTP for provider adapters: limits, deadlines, redaction, and failures mapped into the exception tree.

`HttpCaller.request` sends one request (no retries: the engine decides those) once the provider's
limiter lets it go, within a deadline for the whole answer. A connection that was never
established is `TransportError(maybe_sent=False)`; anything after the request may have left (read
timeout, deadline, dropped connection) is `maybe_sent=True`, so a submission is never resent. Every
answer is redacted of every configured secret before anything reads it.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from typing import Any

import anyio
import httpx

from server.errors import (
    BadResponse,
    ErrorText,
    RateLimited,
    StorageError,
    TransportError,
    error_for_status,
)
from server.limiter import Limiter
from server.policy import HTTP, Timing
from server.redact import Redactor

log = logging.getLogger("callsheet.http")

AUTH_HEADERS = frozenset({"authorization", "x-api-key"})
"""Headers that carry a provider key: their values are secrets whatever else is configured."""

# Exceptions raised before any byte of the request could have reached the server.
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout, httpx.UnsupportedProtocol)


class HttpCaller:
    def __init__(
        self,
        client: httpx.AsyncClient,
        *,
        provider: str,
        base_url: str,
        limiter: Limiter,
        headers: dict[str, str],
        key_var: str,
        describe_error: Callable[[httpx.Response], ErrorText] | None = None,
        time_scale: float = 1.0,
        redactor: Redactor | None = None,
    ) -> None:
        self.client = client
        self.provider = provider
        self.base_url = base_url.rstrip("/")
        self.limiter = limiter
        self._headers = headers
        self.key_var = key_var
        self._describe_error = describe_error or default_error_text
        self.time_scale = time_scale
        """Sandbox emulators answer faster than real providers: deadlines shrink with them."""
        if redactor is None:
            redactor = Redactor(v.split(" ", 1)[-1] for k, v in headers.items() if k.lower() in AUTH_HEADERS)
        self.redactor = redactor
        """Removes every secret from what the provider answers, before anything reads it."""

    def deadline(self, timing: Timing) -> float:
        return timing.deadline * self.time_scale

    def url(self, path: str) -> str:
        """Join a path to the base URL, keeping the base URL's own path prefix."""
        return self.base_url + "/" + path.lstrip("/")

    async def request(
        self, kind: str, method: str, path: str, *, timing: Timing = HTTP, **kwargs: Any
    ) -> httpx.Response:
        """Send one request; return the response if 2xx, else raise the mapped ProviderError."""
        ticket = await self.limiter.acquire(kind)
        headers = {**self._headers, **kwargs.pop("headers", {})}
        deadline = self.deadline(timing)
        answer: httpx.Headers | None = None
        try:
            with anyio.fail_after(deadline):
                response = await self.client.request(
                    method, self.url(path), headers=headers, timeout=timing.timeout, **kwargs
                )
            response = self._redacted(response)
            answer = response.headers
        except TimeoutError:
            raise TransportError(
                f"{self.provider} did not finish answering within {deadline:g} s; the request may have "
                "arrived.",
                maybe_sent=True,
                provider=self.provider,
            ) from None
        except _NOT_SENT as exc:
            raise TransportError(
                f"Could not connect to {self.provider} ({type(exc).__name__}).",
                maybe_sent=False,
                provider=self.provider,
            ) from None
        except httpx.TransportError as exc:
            raise TransportError(
                f"{self.provider} did not answer ({type(exc).__name__}); the request may have arrived.",
                maybe_sent=True,
                provider=self.provider,
            ) from None
        finally:
            # Shielded: a cancel must not leave the request uncounted. A store that cannot be reached
            # must not lose the answer (it may carry a job id): the request then counts from admission.
            with anyio.CancelScope(shield=True), contextlib.suppress(StorageError):
                await self.limiter.answered(ticket, answer)
        if response.status_code >= 400:
            retry_after = _retry_after(response)
            described = self._describe_error(response)
            error = error_for_status(
                response.status_code,
                described.message,
                provider=self.provider,
                key_var=self.key_var,
                retry_after=retry_after,
                provider_code=described.code,
            )
            if isinstance(error, RateLimited):
                with contextlib.suppress(StorageError):
                    await self.limiter.block(kind, retry_after if retry_after is not None else 1.0, ticket)
            log.info("%s %s %s -> %s", self.provider, method, path, response.status_code)
            raise error
        return response

    def _redacted(self, response: httpx.Response) -> httpx.Response:
        """The response with every secret removed from its body and headers (a copy, when needed)."""
        if not self.redactor:
            return response
        content = self.redactor.bytes(response.content)
        headers = [(k, self.redactor.text(v)) for k, v in response.headers.multi_items()]
        if content == response.content and headers == response.headers.multi_items():
            return response
        return httpx.Response(
            response.status_code, headers=headers, content=content, request=response.request
        )


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


def error_body(response: httpx.Response) -> dict[str, Any] | str:
    """An error answer's JSON object, or else the message to show: the JSON value, the text or the
    reason phrase, cut to 300 characters."""
    try:
        body = response.json()
    except ValueError:
        return response.text[:300] or response.reason_phrase
    if not isinstance(body, dict):
        return str(body)[:300]
    return body


def default_error_text(response: httpx.Response) -> ErrorText:
    """The usual error bodies: `{"error": "text"}`, `{"error": {"message"|"name"}}`, `{"message"}`."""
    body = error_body(response)
    if isinstance(body, str):
        return ErrorText(body)
    err = body.get("error")
    if isinstance(err, dict):
        return ErrorText(str(err.get("message") or err.get("name") or err), _code(err.get("code")))
    if err:
        return ErrorText(str(err), _code(body.get("code")))
    if body.get("message"):
        return ErrorText(str(body["message"]), _code(body.get("code")))
    return ErrorText(str(body)[:300])


def _code(value: object) -> str | None:
    return str(value) if isinstance(value, str | int) and str(value) else None


def json_body(response: httpx.Response, provider: str, title: str) -> Any:
    """A success body that must be JSON; anything else is a BadResponse naming the provider."""
    try:
        return response.json()
    except ValueError:
        raise BadResponse(
            f"{title} answered {response.status_code} with a body that is not JSON.", provider=provider
        ) from None


def json_object(response: httpx.Response, provider: str, title: str) -> dict[str, Any]:
    """A success body that must be a JSON object; anything else is a BadResponse naming the provider."""
    body = json_body(response, provider, title)
    if not isinstance(body, dict):
        raise BadResponse(f"{title} answered with JSON that is not an object.", provider=provider)
    return body
