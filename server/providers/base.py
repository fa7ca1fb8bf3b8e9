"""The one small interface every provider implements, and the shapes it is built from.

A provider is one folder under `server/providers/` and one line in its registry
(`server/providers/__init__.py`). The folder holds:

- `adapter.py`: a `Provider` subclass. Its class attributes are the provider's settings (key and
  base URL variables, defaults, extra `options`); its methods say what it is (limits, auth headers,
  how to read its error bodies, its sandbox emulator) and what it does: `prepare` a call into a
  request, `submit` it, ask its `status`, `cancel` it, read the `balance`, run a read-only `query`.
- `operations.py`: the typed arguments of each operation (`ProviderInputs`, image arguments typed
  `ImageRef`, wire names as pydantic aliases) and the provider's one price table and durations, read
  by both the estimate and the emulator's charge.
- `emulator.py`: an in-process emulation of its HTTP API for sandbox mode, built on the shared kit
  (`server/sandbox/kit.py`).

Adapters are made when the app is built (their operations become tools) and connected to their
`HttpCaller` when the server starts; HTTP goes through that caller, which keeps the provider's
limits and deadlines and maps failures into the exception tree. The engine owns retries.
"""

from __future__ import annotations

import abc
import importlib
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, TypeVar, get_args, get_origin

import httpx
import pydantic_core
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.types import ASGIApp

from server.errors import ConfigError, ErrorText, InputError
from server.http import default_error_text
from server.media import ImageInput, ImageResolver, Media, origin
from server.models import JobError, JobRecord, Output, RemoteOutput
from server.policy import DOWNLOAD, MAX_IMAGE_REF_CHARS, MAX_TEXT_CHARS, Limits

if TYPE_CHECKING:
    from server.http import HttpCaller
    from server.limiter import Limiter
    from server.sandbox.kit import Emulator


# --- Settings ---------------------------------------------------------------------------------


class Mode(StrEnum):
    LIVE = "live"
    SANDBOX = "sandbox"
    OFF = "off"


@dataclass(frozen=True)
class Option:
    """A provider-specific setting: a positive number from an environment variable."""

    var: str
    default: float
    description: str


@dataclass(frozen=True)
class ProviderSettings:
    name: str
    mode: Mode
    base_url: str
    key_var: str
    api_key: str | None = field(default=None, repr=False)
    options: Mapping[str, float] = field(default_factory=dict)
    """The provider's `Option` values, by variable name."""


# --- Arguments --------------------------------------------------------------------------------


class ProviderInputs(BaseModel):
    """Base of every tool's typed arguments: unknown fields are refused and every text is capped at
    MAX_TEXT_CHARS, so no oversized argument is ever stored in a job record. A field's alias is its
    name on the wire. Each is built at its first use (`defer_build`), not by every start."""

    model_config = ConfigDict(
        extra="forbid",
        str_max_length=MAX_TEXT_CHARS,
        protected_namespaces=(),
        validate_by_name=True,
        defer_build=True,
    )

    def wire(self) -> dict[str, Any]:
        """The arguments as the provider names them, without the ones left unset."""
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")


class _ImageMark:
    def __repr__(self) -> str:
        return "IMAGE"


IMAGE = _ImageMark()
"""What marks an image argument in its type (inside `ImageRef`)."""

ImageRef = Annotated[str, Field(max_length=MAX_IMAGE_REF_CHARS), IMAGE]
"""An image reference argument (URL, data URI, local path or callsheet:// output): the one way to
mark one, alone, in a list or as the values of a map. Long enough for a data URI of the largest
accepted image."""


@dataclass(frozen=True)
class OperationSpec:
    """One generation operation of a provider: the tool `<provider>_<operation>`."""

    operation: str
    """The tool name without the provider prefix, e.g. tryon_max."""
    title: str
    description: str
    """What the tool does, when to use it, and its cost in credits."""
    inputs: type[ProviderInputs]
    """The typed arguments (the provider's field names, extra fields forbidden)."""
    credits: Callable[[Any], float | None] = lambda inputs: None
    """Estimated credits for validated inputs, from the provider's price table (None: unpublished)."""
    seconds: Callable[[Any], float] = lambda inputs: 30.0
    """How long such a job usually takes at the provider (real time); drives polling and progress."""
    price_text: str = "not published"
    """The price in words, for the `providers` tool."""
    route: str = ""
    """Where the provider takes it: FASHN's model name, or the endpoint's path."""
    answers_at_once: bool = False
    """The provider's answer to the submission is the result (no job id to poll)."""


PriceTable = Callable[[str, Mapping[str, Any]], float]
"""A provider's table: (what is priced or timed, the arguments in wire form) -> credits or seconds."""


def from_tables(
    operation: str,
    inputs: type[ProviderInputs],
    *,
    key: str,
    credits: PriceTable,
    seconds: PriceTable,
    **text: Any,
) -> OperationSpec:
    """An operation priced and timed by its provider's tables (which the emulator charges from too),
    looked up by `key` with the arguments in wire form."""
    return OperationSpec(
        operation=operation,
        inputs=inputs,
        credits=lambda values: credits(key, values.wire()),
        seconds=lambda values: seconds(key, values.wire()),
        **text,
    )


@dataclass(frozen=True)
class QuerySpec:
    """A read-only call that is not a job (listing saved models, history...): tool `<provider>_<name>`."""

    name: str
    title: str
    description: str
    inputs: type[ProviderInputs]


# --- What adapters return ---------------------------------------------------------------------


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
    """How long such a job usually takes at the provider (real time; the engine scales it in sandbox)."""
    summary: dict[str, Any] = field(default_factory=dict)
    """Arguments as the user gave them (references, prompts), for listings and contact sheets."""


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


OperationsListener = Callable[[], Awaitable[None]]


# --- The interface ----------------------------------------------------------------------------


class Provider(abc.ABC):
    """Base of every adapter. A subclass sets the class attributes and implements the abstract methods;
    the other methods have defaults that fit most providers."""

    name: ClassVar[str]
    """The prefix of its tools, e.g. fashn."""
    title: ClassVar[str]
    """How messages name it, e.g. FASHN."""
    badge: ClassVar[tuple[str, str]] = ("", "#55606e")
    """Its icon in clients: letters (default: the title's initials) on a colour."""
    key_var: ClassVar[str]
    url_var: ClassVar[str]
    default_base_url: ClassVar[str]
    options: ClassVar[tuple[Option, ...]] = ()
    fixed_operations: ClassVar[tuple[OperationSpec, ...]] = ()
    """Its operations, when they never change (a provider that discovers them overrides `operations`)."""
    fixed_queries: ClassVar[tuple[QuerySpec, ...]] = ()
    image_urls_only: ClassVar[bool] = False
    """It takes images by URL only: with signed links, local images are handed to it as a link
    (`ImageInput.link`), kept for that in the data folder; other providers are sent the bytes."""
    webhooks: ClassVar[bool] = False
    """It can call back when a job ends (`submit`'s `webhook_url`): then it is polled only as a safety net."""
    emulator_path: ClassVar[str]
    """Its sandbox emulator as `module:Class` (built on `server/sandbox/kit.py`), imported when sandbox
    mode first needs it: a server with live keys never loads one."""
    """Its sandbox emulator (built on `server/sandbox/kit.py`)."""

    def __init__(self, settings: ProviderSettings) -> None:
        self.settings = settings
        self._http: HttpCaller | None = None

    # -- what the provider is ------------------------------------------------------------------

    @abc.abstractmethod
    def limits(self) -> Limits:
        """The limits callsheet keeps to (from the provider's documents, some configurable)."""

    def auth_headers(self, key: str) -> dict[str, str]:
        """Headers that carry the API key."""
        return {"Authorization": f"Bearer {key}"}

    def describe_error(self, response: httpx.Response) -> ErrorText:
        """An error answer as one line, and the provider's own code for it when it gives one."""
        return default_error_text(response)

    def emulator(self, time_scale: float, state_dir: Path) -> ASGIApp:
        """The in-process emulator of the provider's HTTP API for sandbox mode: timings scaled by
        `time_scale`, state kept in `state_dir` across restarts."""
        return self.emulator_class()(time_scale=time_scale, state_dir=state_dir).app

    @classmethod
    def emulator_class(cls) -> type[Emulator]:
        module, _, name = cls.emulator_path.partition(":")
        found: type[Emulator] = getattr(importlib.import_module(module), name)
        return found

    def operations(self) -> list[OperationSpec]:
        """Every operation now, each becoming the tool `<provider>_<operation>`."""
        return list(self.fixed_operations)

    def queries(self) -> list[QuerySpec]:
        """Read-only calls this provider offers besides its generation operations."""
        return list(self.fixed_queries)

    def on_operations_changed(self, listener: OperationsListener) -> None:
        """`listener` is awaited whenever `operations()` changes (for providers that discover them)."""
        return  # most providers' operations never change

    async def rediscover(self, operation: str, args: dict[str, Any]) -> bool:
        """A call names something not known yet: look again (once); True if it is known now."""
        return False

    async def background(self) -> None:
        """Upkeep while the server runs (the Generation API refreshes its tools); returns at once if none."""
        return

    def operation(self, name: str) -> OperationSpec:
        """The spec of one operation, or an InputError listing the ones there are."""
        specs = {spec.operation: spec for spec in self.operations()}
        try:
            return specs[name]
        except KeyError:
            raise InputError(
                "operation", f"{self.title} has no operation {name!r}.", f"Use one of: {', '.join(specs)}."
            ) from None

    def price_list(self) -> dict[str, str]:
        """Credit cost per tool, for the `providers` tool."""
        return {f"{self.name}_{spec.operation}": spec.price_text for spec in self.operations()}

    # -- connection ----------------------------------------------------------------------------

    def connect(self, http: HttpCaller) -> None:
        """Give the adapter its HTTP caller (when the server starts)."""
        self._http = http

    @property
    def http(self) -> HttpCaller:
        if self._http is None:
            raise ConfigError(f"{self.title} is not connected yet: the server has not started.")
        return self._http

    @property
    def sandbox(self) -> bool:
        return self.settings.mode is Mode.SANDBOX

    @property
    def limiter(self) -> Limiter:
        return self.http.limiter

    @property
    def time_scale(self) -> float:
        """Sandbox emulators run faster than real providers: durations are scaled by this."""
        return self.http.time_scale

    @property
    def trusted_origins(self) -> frozenset[str]:
        """Where outputs may be downloaded from without the public-address check: the provider's own
        base URL, by scheme, host and port (its host on another port is not the provider)."""
        own = origin(self.http.base_url)
        return frozenset({own}) if own else frozenset()

    async def save_outputs(self, media: Media, job: JobRecord, outputs: list[RemoteOutput]) -> list[Output]:
        """Download and store a finished job's outputs, from the provider's own hosts or public ones."""
        return await media.save_outputs(
            job,
            outputs,
            self.http.client,
            trusted=self.trusted_origins,
            deadline=self.http.deadline(DOWNLOAD),
        )

    # -- what the provider does ----------------------------------------------------------------

    async def prepare(self, operation: str, args: dict[str, Any], images: ImageResolver) -> Prepared:
        """Validate arguments and resolve image references; raises InputError naming field and fix.

        The default: the operation's typed arguments, each image made what the provider takes
        (`send_image`), the result shaped for the wire (`payload`).
        """
        spec = self.operation(operation)
        inputs = validate_inputs(spec.inputs, args, f"{self.name}_{operation}")
        sent, key, summary = await resolve_images(inputs, images, self.send_image)
        return Prepared(
            operation=operation,
            payload=self.payload(spec, sent),
            key_material=key,
            credits_estimate=spec.credits(inputs),
            typical_seconds=spec.seconds(inputs),
            summary=summary,
        )

    def send_image(self, image: ImageInput) -> Any:
        """What the provider is sent for one resolved image: by default its URL, else a data: URI."""
        return image.url or image.data_uri()

    def payload(self, spec: OperationSpec, wire: dict[str, Any]) -> dict[str, Any]:
        """The request body from the arguments in wire names (images already as `send_image` made them)."""
        return wire

    @abc.abstractmethod
    async def submit(
        self, operation: str, payload: dict[str, Any], *, webhook_url: str | None = None
    ) -> Submission:
        """Send `Prepared.payload` once. Raises ProviderError; TransportError.maybe_sent says if it may have
        landed. `webhook_url` (only for a provider whose `webhooks` is true): where the provider should
        say that the job ended."""

    @abc.abstractmethod
    async def status(self, provider_job_id: str, operation: str) -> StatusReport:
        """Ask the provider how the job is going."""

    async def query(self, name: str, args: BaseModel) -> dict[str, Any]:
        """Run a read-only call; `args` is an instance of the query's `inputs` model."""
        raise InputError("query", f"{self.title} has no query {name!r}.", "Use one of its listed tools.")

    async def cancel(self, provider_job_id: str, operation: str) -> bool:
        """Cancel at the provider; False when the provider has no way to cancel."""
        return False

    async def balance(self) -> Balance:
        return Balance(credits=None)


# --- Helpers adapters share -------------------------------------------------------------------

M = TypeVar("M", bound=BaseModel)


def validate_inputs(model: type[M], args: dict[str, Any], tool: str) -> M:
    """The tool's typed arguments, or an InputError naming each bad field and the fix."""
    try:
        return model.model_validate(args)
    except ValidationError as exc:
        raise input_error_from(exc, tool) from None


def input_error_from(exc: ValidationError, tool: str) -> InputError:
    """Turn pydantic's report into one sentence per problem, naming the field and the fix."""
    problems = []
    fields = []
    for err in exc.errors():
        field_name = ".".join(str(p) for p in err["loc"]) or "arguments"
        fields.append(field_name)
        if err["type"] == "extra_forbidden":
            problems.append(f"{field_name}: unknown argument")
        elif err["type"] == "missing":
            problems.append(f"{field_name}: required")
        else:
            problems.append(f"{field_name}: {err['msg']} (got {err.get('input')!r:.60})")
    return InputError(
        fields[0] if len(fields) == 1 else ", ".join(fields),
        "; ".join(problems) + ".",
        f"Fix the argument(s) and call {tool} again; its input schema lists every allowed value.",
    )


SendImage = Callable[[ImageInput], Any]


async def resolve_images(
    inputs: BaseModel, images: ImageResolver, send: SendImage, prefix: str = ""
) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """The arguments in wire names three ways: as sent (each image as `send` makes it), as idempotency
    key material (each image by its content hash or URL), and as given (each image as the user named
    it). Image arguments are found by their `ImageRef` type, at any depth."""
    sent: dict[str, Any] = {}
    key: dict[str, Any] = {}
    summary: dict[str, Any] = {}
    for name, info in type(inputs).model_fields.items():
        value = getattr(inputs, name)
        if value is None:
            continue
        wire = info.serialization_alias or info.alias or name
        shape = _image_shape(info.annotation, info.metadata)
        here = f"{prefix}{name}"
        if shape == "one":
            image = await images.resolve(here, value)
            sent[wire], key[wire], summary[name] = send(image), image.key(), image.origin
        elif shape == "list":
            found = [await images.resolve(f"{here}[{n}]", ref) for n, ref in enumerate(value)]
            sent[wire] = [send(i) for i in found]
            key[wire], summary[name] = [i.key() for i in found], [i.origin for i in found]
        elif shape == "map":
            found_by = {k: await images.resolve(f"{here}.{k}", ref) for k, ref in value.items()}
            sent[wire] = {k: send(i) for k, i in found_by.items()}
            key[wire] = {k: i.key() for k, i in found_by.items()}
            summary[name] = {k: i.origin for k, i in found_by.items()}
        elif isinstance(value, BaseModel):
            sent[wire], key[wire], summary[name] = await resolve_images(value, images, send, f"{here}.")
        elif isinstance(value, list) and value and all(isinstance(v, BaseModel) for v in value):
            parts = [await resolve_images(v, images, send, f"{here}[{n}].") for n, v in enumerate(value)]
            sent[wire], key[wire], summary[name] = ([p[i] for p in parts] for i in range(3))
        else:
            plain = pydantic_core.to_jsonable_python(value)
            sent[wire] = key[wire] = summary[name] = plain
    return sent, key, summary


def _image_shape(annotation: Any, metadata: list[Any]) -> str | None:
    """ "one", "list" or "map" when the field holds image references, else None."""
    if IMAGE in metadata:
        return "one"
    for arg in (
        [annotation, *get_args(annotation)] if get_origin(annotation) is not Annotated else [annotation]
    ):
        origin_type = get_origin(arg)
        if origin_type is Annotated and IMAGE in get_args(arg)[1:]:
            return "one"
        if origin_type in (list, tuple) and any(_is_image(a) for a in get_args(arg)):
            return "list"
        if origin_type is dict and _is_image(get_args(arg)[-1]):
            return "map"
    return None


def _is_image(annotation: Any) -> bool:
    return get_origin(annotation) is Annotated and IMAGE in get_args(annotation)[1:]


def image_fields(model: type[BaseModel]) -> dict[str, str]:
    """The image arguments of a model (its own fields): name -> "one", "list" or "map"."""
    found = {}
    for name, info in model.model_fields.items():
        shape = _image_shape(info.annotation, info.metadata)
        if shape is not None:
            found[name] = shape
    return found
