"""The one small interface every provider adapter implements.

An adapter turns a tool's arguments into a provider request (`prepare`), sends it
(`submit`), asks how it is going (`status`), cancels it and reads the balance. It speaks
HTTP through `HttpCaller`, which applies the provider's rate limits and timeouts and maps
transport failures and status codes into the exception tree; the engine owns retries.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import httpx
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.types import ASGIApp

from server.errors import InputError
from server.media import origin
from server.models import JobError
from server.policy import MAX_IMAGE_REF_CHARS, MAX_TEXT_CHARS

if TYPE_CHECKING:
    from server.config import Settings
    from server.http import HttpCaller
    from server.media import ImageResolver
    from server.policy import Limits


class ProviderInputs(BaseModel):
    """Base of every tool's typed arguments: unknown fields are refused and every text is capped at
    MAX_TEXT_CHARS, so no oversized argument is ever stored in a job record."""

    model_config = ConfigDict(extra="forbid", str_max_length=MAX_TEXT_CHARS, protected_namespaces=())


ImageRef = Annotated[str, Field(max_length=MAX_IMAGE_REF_CHARS)]
"""An image reference argument (URL, data URI, local path or callsheet:// output); long enough for a
data URI of the largest accepted image."""


@dataclass(frozen=True)
class OperationSpec:
    operation: str
    """The tool name without the provider prefix, e.g. tryon_max."""
    title: str
    description: str
    """What the tool does, when to use it, and its cost in credits."""
    inputs: type[BaseModel]
    """The typed arguments (provider field names, extra fields forbidden)."""
    credits: Callable[[BaseModel], float | None] | None = None
    """Estimated credits for validated inputs (shoot plans price every job before they start)."""


@dataclass(frozen=True)
class QuerySpec:
    """A read-only call that is not a job (listing saved models, history...): tool `<provider>_<name>`."""

    name: str
    title: str
    description: str
    inputs: type[BaseModel]


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


class RemoteState(StrEnum):
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
    children: tuple[str, ...] = ()
    """Provider ids of the items of a batch: each becomes a child job, polled on its own."""
    child_operation: str | None = None
    """The operation children are polled as (their `status` calls get this operation name)."""


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

    def __init__(self, http: HttpCaller, *, sandbox: bool, time_scale: float = 1.0) -> None:
        self.http = http
        self.sandbox = sandbox
        self.time_scale = time_scale
        """Sandbox emulators run faster than real providers; typical durations are scaled to match."""

    @property
    def trusted_origins(self) -> frozenset[str]:
        """Where outputs may be downloaded from without the public-address check: the provider's own
        base URL, by scheme, host and port (its host on another port is not the provider)."""
        own = origin(self.http.base_url)
        return frozenset({own}) if own else frozenset()

    @classmethod
    @abc.abstractmethod
    def operations(cls) -> list[OperationSpec]:
        """Every operation, each becoming the tool `<provider>_<operation>`."""

    @abc.abstractmethod
    async def prepare(self, operation: str, args: dict[str, Any], images: ImageResolver) -> Prepared:
        """Validate arguments and resolve image references; raises InputError naming field and fix."""

    @abc.abstractmethod
    async def submit(self, operation: str, payload: dict[str, Any]) -> Submission:
        """Send `Prepared.payload` once. Raises ProviderError; TransportError.maybe_sent says if it may have
        landed."""

    @abc.abstractmethod
    async def status(self, provider_job_id: str, operation: str) -> StatusReport:
        """Ask the provider how the job is going."""

    @classmethod
    def queries(cls) -> list[QuerySpec]:
        """Read-only calls this provider offers besides its generation operations."""
        return []

    async def query(self, name: str, args: BaseModel) -> dict[str, Any]:
        """Run a read-only call; `args` is an instance of the query's `inputs` model."""
        raise InputError("query", f"{self.name} has no query {name!r}.", "Use one of its listed tools.")

    async def cancel(self, provider_job_id: str, operation: str) -> bool:
        """Cancel at the provider; False when the provider has no way to cancel."""
        return False

    async def balance(self) -> Balance:
        return Balance(credits=None)

    def price_list(self) -> dict[str, str]:
        """Human-readable credit cost per operation, for the `providers` tool and tool descriptions."""
        return {}


M = TypeVar("M", bound=BaseModel)
S = TypeVar("S")


def validate_inputs(model: type[M], args: dict[str, Any], tool: str) -> M:
    """The tool's typed arguments, or an InputError naming each bad field and the fix."""
    try:
        return model.model_validate(args)
    except ValidationError as exc:
        raise input_error_from(exc, tool) from None


def lookup_operation(table: Mapping[str, S], provider: str, operation: str) -> S:
    """An adapter's entry for `operation`, or an InputError listing the ones there are."""
    try:
        return table[operation]
    except KeyError:
        raise InputError(
            "operation", f"{provider} has no operation {operation!r}.", f"Use one of: {', '.join(table)}."
        ) from None


def input_error_from(exc: ValidationError, tool: str) -> InputError:
    """Turn pydantic's report into one sentence per problem, naming the field and the fix."""
    problems = []
    fields = []
    for err in exc.errors():
        field = ".".join(str(p) for p in err["loc"]) or "arguments"
        fields.append(field)
        if err["type"] == "extra_forbidden":
            problems.append(f"{field}: unknown argument")
        elif err["type"] == "missing":
            problems.append(f"{field}: required")
        else:
            problems.append(f"{field}: {err['msg']} (got {err.get('input')!r:.60})")
    return InputError(
        fields[0] if len(fields) == 1 else ", ".join(fields),
        "; ".join(problems) + ".",
        f"Fix the argument(s) and call {tool} again; its input schema lists every allowed value.",
    )


@dataclass(frozen=True)
class Registration:
    """How the registry builds one provider: each provider module defines `REGISTRATION`."""

    adapter: type[Provider]
    limits: Callable[[Settings], Limits]
    """The limits callsheet keeps to (from the provider's documents, some configurable)."""
    auth_headers: Callable[[str], dict[str, str]]
    """Headers that carry the API key."""
    error_message: Callable[[httpx.Response], str] | None
    """Reads the provider's error body into one line."""
    sandbox_app: Callable[[float, Path], ASGIApp]
    """Builds the in-process emulator of the provider's HTTP API for sandbox mode, from the time
    scale and a folder where it keeps its state across restarts."""
