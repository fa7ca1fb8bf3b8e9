"""The one small interface every provider adapter implements.

An adapter turns a tool's arguments into a provider request (`prepare`), sends it
(`submit`), asks how it is going (`status`), cancels it and reads the balance. It speaks
HTTP through `HttpCaller`, which applies the provider's rate limits and timeouts and maps
transport failures and status codes into the exception tree; the engine owns retries.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING, Any

from server.models import JobError

if TYPE_CHECKING:
    from server.http import HttpCaller
    from server.media import ImageResolver


@dataclass(frozen=True)
class Prepared:
    """A validated request, ready to submit; nothing has been sent or stored yet."""

    operation: str
    payload: dict[str, Any]
    """Exactly what `submit` sends (JSON-able; local images already encoded as the provider needs)."""
    key_material: dict[str, Any]
    """Normalized inputs for the idempotency key: files by content hash, defaults filled in."""
    credits_estimate: float | None
    typical_seconds: float
    """How long such a job usually takes at the provider; drives polling and progress."""
    summary: dict[str, Any] = field(default_factory=dict)
    """Arguments as the user gave them (references, prompts), for listings and contact sheets."""


@dataclass(frozen=True)
class RemoteOutput:
    """An output as the provider gives it: a URL to download, or inline bytes."""

    url: str | None = None
    data: bytes | None = None
    mime_type: str | None = None


class RemoteState(str, Enum):
    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELED = "canceled"


@dataclass(frozen=True)
class Submission:
    """What the provider answered to a submission."""

    provider_job_id: str | None
    credits_used: float | None = None
    done: StatusReport | None = None
    """Set by synchronous providers whose submit call already returns the result."""


@dataclass(frozen=True)
class StatusReport:
    state: RemoteState
    outputs: list[RemoteOutput] = field(default_factory=list)
    error: JobError | None = None
    credits_used: float | None = None


@dataclass(frozen=True)
class Balance:
    credits: float | None
    detail: dict[str, Any] = field(default_factory=dict)


class Provider(abc.ABC):
    """Base of every adapter. Subclasses set `name` and implement the abstract methods."""

    name: str = ""

    def __init__(self, http: HttpCaller, *, sandbox: bool) -> None:
        self.http = http
        self.sandbox = sandbox

    @abc.abstractmethod
    def operations(self) -> list[str]:
        """Operation names (the tool name without the provider prefix)."""

    @abc.abstractmethod
    async def prepare(self, operation: str, args: dict[str, Any], images: ImageResolver) -> Prepared:
        """Validate arguments and resolve image references; raises InputError naming field and fix."""

    @abc.abstractmethod
    async def submit(self, prepared: Prepared) -> Submission:
        """Send the request once. Raises ProviderError; TransportError.maybe_sent says if it may have landed."""

    @abc.abstractmethod
    async def status(self, provider_job_id: str, operation: str) -> StatusReport:
        """Ask the provider how the job is going."""

    async def cancel(self, provider_job_id: str, operation: str) -> bool:
        """Cancel at the provider; False when the provider has no way to cancel."""
        return False

    async def balance(self) -> Balance:
        return Balance(credits=None)

    def price_list(self) -> dict[str, str]:
        """Human-readable credit cost per operation, for the `providers` tool and tool descriptions."""
        return {}
