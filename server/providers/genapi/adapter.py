"""Generation API adapter (self-hosted): discovered tools, multipart generation, history polling.

Built on provider-docs/generation-api.txt:

    GET  /generation/tools                      the tool list: [{group_tool, tool, title}]
    GET  /generation/generationTypes?tool=<t>   that tool's generation types (shape undocumented)
    POST /generation/generate_image_v2/         multipart/form-data: tool, image files, text fields
                                                -> {preview_image, stock_image, history_item_id}
    GET  /user/generation-history/{id}          {status: pending|complete|error, preview_url, stock_url}

The tool list is discovered, not fixed: it is cached here, fetched again in the background every
GENAPI_TOOLS_REFRESH_SECONDS (`background`), and once on demand when a call names a tool the cache
does not know (`rediscover`, `prepare`). Whoever registered with `on_operations_changed` (the MCP
app) hears about every change, and `operations()` gives `genapi_generate`'s input model with
the discovered tools as an enum.

Where the document is silent (see DESIGN.md): output paths are relative (`/image/...` or
`image/...`) and are resolved against the base URL's origin (scheme, host, port), not its path
prefix; a trailing-slash redirect (the API looks like FastAPI, which answers 307) is followed
exactly once, on the same host, and nothing else is. Input URLs are refused rather than fetched:
the API takes uploaded files, and downloading arbitrary URLs here would add an SSRF-prone fetcher
for little gain (a local path, a data: URI or a callsheet:// output all work).
"""

from __future__ import annotations

import base64
import functools
import logging
import re
import time
from dataclasses import dataclass
from typing import Annotated, Any, Literal, cast
from urllib.parse import urlsplit

import anyio
import httpx
from pydantic import BaseModel, BeforeValidator, Field, WithJsonSchema, create_model, field_validator

from server.errors import (
    AuthError,
    BadResponse,
    ErrorText,
    InputError,
    ProviderError,
    ProviderRejected,
    StorageError,
)
from server.http import error_body, json_body
from server.media import ImageResolver
from server.models import JobError, RemoteOutput, utcnow
from server.policy import MAX_IMAGE_REF_CHARS, MAX_TEXT_CHARS, Limits, RateWindow
from server.providers.base import (
    ImageRef,
    OperationsListener,
    OperationSpec,
    Option,
    Prepared,
    Provider,
    ProviderInputs,
    ProviderSettings,
    QuerySpec,
    RemoteState,
    StatusReport,
    Submission,
    validate_inputs,
)

log = logging.getLogger("callsheet.genapi")

# --- The API's names, in one place so they are easy to correct ----------------------------------

TOOLS_PATH = "/generation/tools"
TYPES_PATH = "/generation/generationTypes"
GENERATE_PATH = "/generation/generate_image_v2/"
HISTORY_PATH = "/user/generation-history/{id}"
TOOL_FIELD = "tool"
GENERATION_TYPE_FIELD = "generation_type"
"""The document never shows the form field for a generation type. The API names its fields in
snake_case (`group_tool`, `history_item_id`, `preview_image`), so the type goes as `generation_type`."""
TYPE_KEYS = ("generation_type", "name", "type", "id", "value", "slug")
"""`generationTypes` answers are undocumented: a list of strings, or of objects carrying the value
under one of these keys (first match wins); a wrapping object `{"<key>": [...]}` is unwrapped too."""
TYPE_LIST_KEYS = ("generation_types", "generationTypes", "types", "items", "data", "results")
KIND = "api"
"""The one limiter kind: the document gives no per-endpoint numbers."""
LIMITS = Limits(windows={KIND: (RateWindow(120, 60.0),)}, max_in_flight=8, poll_kind=KIND, poll_share=0.5)
"""No documented numbers: a modest default, polling with backoff as its notes advise."""
REFRESH = Option(
    "GENAPI_TOOLS_REFRESH_SECONDS", 300, "how often the Generation API's tool list is fetched again"
)

FIRST_FETCH_AFTER = 1.0
"""Seconds after the start before the tool list is first fetched (or the refresh period, if shorter):
the client's handshake and first tools/list are answered first. A call that needs the list before
then fetches it at once."""
TYPICAL_SECONDS = 15.0
"""Undocumented; the document's advice (poll at 2 s, 4 s, 8 s) suggests jobs of 10-20 s."""
OPERATION = "generate"
PRICE_TEXT = "not published: a self-hosted Generation API charges no callsheet-known credits"

_STATES = {
    "pending": RemoteState.PENDING,
    "queued": RemoteState.PENDING,
    "processing": RemoteState.RUNNING,
    "running": RemoteState.RUNNING,
    "complete": RemoteState.SUCCEEDED,
    "completed": RemoteState.SUCCEEDED,
    "error": RemoteState.FAILED,
    "failed": RemoteState.FAILED,
}
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_FIELD_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]{0,63}")
_RESERVED_FIELDS = frozenset({TOOL_FIELD, GENERATION_TYPE_FIELD})
_EXTENSIONS = {"image/png": "png", "image/jpeg": "jpg", "image/webp": "webp", "image/gif": "gif"}

GENERATE_TITLE = "Generation API: generate"
GENERATE_DESCRIPTION = (
    "Run a tool of the self-hosted Generation API (genapi_tools lists them) on uploaded images, as a "
    "durable job. Images are uploaded as files: local paths, data: URIs or callsheet:// outputs, not "
    "URLs. Outputs: [0] the full image, [1] the preview. Cost: self-hosted, no credit prices."
)
TOOLS_DESCRIPTION = (
    "The tools this Generation API offers (group_tool, tool, title) and their generation types, for "
    "genapi_generate; cached and refreshed in the background. Costs nothing."
)


# --- Tool arguments -----------------------------------------------------------------------------


def _pairs(key: str, value: str) -> BeforeValidator:
    """A map also given as a list of `{key: name, value: v}` objects: the form a strict JSON Schema can
    express (a map's keys cannot be declared), and the form the tool publishes."""

    def to_map(given: Any) -> Any:
        if not isinstance(given, list):
            return given
        found: dict[Any, Any] = {}
        for n, item in enumerate(given):
            if not isinstance(item, dict) or set(item) != {key, value}:
                raise ValueError(f'item {n} must be {{"{key}": ..., "{value}": ...}}')
            if item[key] in found:
                raise ValueError(f"{key} {item[key]!r} is given twice")
            found[item[key]] = item[value]
        return found

    return BeforeValidator(to_map)


IMAGES_SCHEMA = {
    "type": "array",
    "minItems": 1,
    "items": {
        "type": "object",
        "properties": {
            "field": {
                "type": "string",
                "maxLength": MAX_TEXT_CHARS,
                "description": "The API's file field, e.g. clothes.",
            },
            "image": {"type": "string", "maxLength": MAX_IMAGE_REF_CHARS, "description": "Image reference."},
        },
        "required": ["field", "image"],
        "additionalProperties": False,
    },
}
FIELDS_SCHEMA = {
    "type": "array",
    "items": {
        "type": "object",
        "properties": {
            "name": {"type": "string", "maxLength": MAX_TEXT_CHARS},
            "value": {"type": ["string", "number", "boolean"], "maxLength": MAX_TEXT_CHARS},
        },
        "required": ["name", "value"],
        "additionalProperties": False,
    },
}


class GenerateInputs(ProviderInputs):
    """`genapi_generate`'s arguments. Once tools are discovered, `tool` becomes an enum of them.

    `images` and `fields` are maps, published as lists of pairs (`_pairs`); a map is accepted too."""

    tool: str = Field(description="A tool listed by genapi_tools, e.g. fashion_swap.")
    images: Annotated[dict[str, ImageRef], _pairs("field", "image"), WithJsonSchema(IMAGES_SCHEMA)] = Field(
        min_length=1,
        description='Files to upload, e.g. [{"field": "clothes", "image": "~/dress.png"}, '
        '{"field": "person", "image": "~/model.png"}] for fashion_swap.',
    )
    generation_type: str | None = Field(
        default=None, description="One of the tool's generation types; omit for the default."
    )
    fields: (
        Annotated[dict[str, str | int | float | bool], _pairs("name", "value"), WithJsonSchema(FIELDS_SCHEMA)]
        | None
    ) = Field(default=None, description="Extra text form fields the tool takes (e.g. a prompt).")

    @field_validator("images")
    @classmethod
    def _image_names(cls, value: dict[str, str]) -> dict[str, str]:
        for name in value:
            _check_field_name(name, "image")
        return value

    @field_validator("fields")
    @classmethod
    def _field_names(
        cls, value: dict[str, str | int | float | bool] | None
    ) -> dict[str, str | int | float | bool] | None:
        for name in value or {}:
            _check_field_name(name, "form")
        return value


class ToolsQuery(ProviderInputs):
    refresh: bool = Field(
        default=False, description="Fetch the tool list from the API now instead of the cached copy."
    )


def _check_field_name(name: str, what: str) -> None:
    if not _FIELD_NAME.fullmatch(name):
        raise ValueError(f"{what} field name {name!r} must be letters, digits, _ . - (at most 64)")
    if name in _RESERVED_FIELDS:
        raise ValueError(f"{name!r} is set by its own argument, not as an {what} field")


@functools.lru_cache(maxsize=16)
def _plain(name: str) -> str:
    return re.sub(r"[\W_]+", "", name).lower()


def generate_inputs(tools: tuple[str, ...], described: str = "") -> type[GenerateInputs]:
    """The arguments model with `tool` restricted to the discovered values (the schema's enum)."""
    if not tools:
        return GenerateInputs
    choices = cast(Any, Literal)[tools]
    description = "A tool discovered from the API (genapi_tools lists their types)"
    model = create_model(
        "GenApiGenerateInputs",
        __base__=GenerateInputs,
        tool=(choices, Field(description=f"{description}: {described}." if described else f"{description}.")),
    )
    return model


# --- Discovered tools ---------------------------------------------------------------------------


@dataclass(frozen=True)
class DiscoveredTool:
    tool: str
    title: str
    group_tool: str
    generation_types: tuple[str, ...] | None
    """None when the API did not say (its generationTypes call failed)."""

    def as_json(self) -> dict[str, Any]:
        return {
            "tool": self.tool,
            "title": self.title,
            "group_tool": self.group_tool,
            "generation_types": list(self.generation_types) if self.generation_types is not None else None,
        }


class GenApi(Provider):
    name = "genapi"
    title = "The Generation API"
    badge = ("GA", "#1d4ed8")
    key_var = "GENAPI_API_KEY"
    url_var = "GENAPI_BASE_URL"
    default_base_url = "http://localhost:8000"
    options = (REFRESH,)
    fixed_queries = (QuerySpec("tools", "Generation API: tools", TOOLS_DESCRIPTION, ToolsQuery),)
    emulator_path = "server.providers.genapi.emulator:GenApiEmulator"

    def __init__(self, settings: ProviderSettings) -> None:
        super().__init__(settings)
        self._tools: dict[str, DiscoveredTool] = {}
        self._fetched_at: float | None = None
        """Monotonic time of the latest successful fetch; None until the first one."""
        self._fetched_wall: str | None = None
        self._lock = anyio.Lock()
        self._listeners: list[OperationsListener] = []

    # -- what it is ------------------------------------------------------------------------

    def limits(self) -> Limits:
        return LIMITS

    def describe_error(self, response: httpx.Response) -> ErrorText:
        """FastAPI's `{"detail": "text"}` or `{"detail": [{"loc", "msg"}]}`, else the usual shapes."""
        return ErrorText(genapi_error_message(response))

    # -- the catalog -----------------------------------------------------------------------

    def operations(self) -> list[OperationSpec]:
        """The one operation, with an input model that matches the tools discovered so far."""
        # Only the titles that say more than the tool's name (the enum lists the names).
        described = ", ".join(
            f"{t.tool} ({t.title})" for t in self._tools.values() if _plain(t.title) != _plain(t.tool)
        )
        inputs = generate_inputs(tuple(self._tools), described[:1500])
        return [
            OperationSpec(
                OPERATION,
                GENERATE_TITLE,
                GENERATE_DESCRIPTION,
                inputs,
                seconds=lambda _: TYPICAL_SECONDS,
                price_text=PRICE_TEXT,
                route=GENERATE_PATH,
            )
        ]

    def on_operations_changed(self, listener: OperationsListener) -> None:
        """`listener` is awaited after every fetch that changed the tool list or a tool's types."""
        self._listeners.append(listener)

    async def background(self) -> None:
        """Keep the tool list fresh: fetch it once the start has settled (`FIRST_FETCH_AFTER`), then
        every GENAPI_TOOLS_REFRESH_SECONDS."""
        every = self.settings.options.get(REFRESH.var, REFRESH.default)
        await anyio.sleep(min(FIRST_FETCH_AFTER, every))
        while True:
            try:
                await self.refresh()
            except (ProviderError, StorageError) as exc:  # StorageError: the shared limits (Redis) away
                log.warning("could not fetch the Generation API tool list: %s", exc.message)
            await anyio.sleep(every)

    async def refresh(self) -> bool:
        """Fetch the tools and their generation types again; True when anything changed.

        A caller that waited for a concurrent fetch takes its result instead of fetching again.
        Listeners run under the lock, so once this returns every listener has seen the new list.
        """
        started = time.monotonic()
        async with self._lock:
            if self._fetched_at is not None and self._fetched_at >= started:
                return False
            tools = await self._fetch()
            changed = list(tools.values()) != list(self._tools.values())
            self._tools = tools
            self._fetched_at = time.monotonic()
            self._fetched_wall = utcnow().isoformat()
            if changed:
                log.info("Generation API tools: %s", ", ".join(tools) or "none")
                for listener in list(self._listeners):
                    await listener()
            return changed

    async def rediscover(self, operation: str, args: dict[str, Any]) -> bool:
        """A call names a tool the cache does not know: fetch the list again, once.

        True when the tool is known now (the caller checks the call again); False when it still is
        not, or the list could not be fetched (the caller refuses the call with what it knows).
        """
        tool = args.get(TOOL_FIELD)
        if operation != OPERATION or not isinstance(tool, str):
            return False
        try:
            return await self._known(tool) is not None
        except ProviderError as exc:
            log.warning("could not fetch the Generation API tool list: %s", exc.message)
            return False

    async def _known(self, tool: str) -> DiscoveredTool | None:
        """The tool from the cache; the first call fetches the list, an unknown tool refetches it once."""
        if self._fetched_at is None or tool not in self._tools:
            await self.refresh()
        return self._tools.get(tool)

    async def _fetch(self) -> dict[str, DiscoveredTool]:
        body = _body(await self._call("GET", TOOLS_PATH))
        if isinstance(body, dict) and isinstance(body.get("tools"), list):
            body = body["tools"]
        if not isinstance(body, list):
            raise BadResponse("The Generation API's tool list is not a JSON list.", provider=self.name)
        found: dict[str, tuple[str, str]] = {}
        for item in body:
            if isinstance(item, dict) and isinstance(item.get("tool"), str) and item["tool"].strip():
                value = item["tool"].strip()
                found[value] = (str(item.get("title") or value), str(item.get("group_tool") or ""))
        tools = {}
        for value, (title, group) in found.items():
            tools[value] = DiscoveredTool(value, title, group, await self._types(value))
        return tools

    async def _types(self, tool: str) -> tuple[str, ...] | None:
        """The tool's generation types; on a failure, what the cache had (None if nothing)."""
        try:
            response = await self._call("GET", TYPES_PATH, params={"tool": tool})
            return parse_generation_types(_body(response))
        except AuthError:
            raise
        except ProviderError as exc:
            log.info("generation types of %s unavailable: %s", tool, exc.message)
            previous = self._tools.get(tool)
            return previous.generation_types if previous is not None else None

    async def query(self, name: str, args: BaseModel) -> dict[str, Any]:
        if name != "tools" or not isinstance(args, ToolsQuery):
            return await super().query(name, args)
        if args.refresh or self._fetched_at is None:
            await self.refresh()
        tools = [t.as_json() for t in self._tools.values()]
        return {"tools": tools, "count": len(tools), "fetched_at": self._fetched_wall}

    # -- jobs ------------------------------------------------------------------------------

    async def prepare(self, operation: str, args: dict[str, Any], images: ImageResolver) -> Prepared:
        if operation != OPERATION:
            raise InputError(
                "operation", f"The Generation API has no operation {operation!r}.", "Use generate."
            )
        inputs = validate_inputs(GenerateInputs, args, "genapi_generate")
        known = await self._known(inputs.tool)
        if known is None:
            listed = ", ".join(self._tools) or "none (the API listed no tools)"
            raise InputError(
                "tool",
                f"{inputs.tool!r} is not a tool of this Generation API.",
                f"Use one of: {listed}. genapi_tools shows their titles and generation types.",
            )
        gen_type = inputs.generation_type
        if (
            gen_type is not None
            and known.generation_types is not None
            and gen_type not in known.generation_types
        ):
            allowed = ", ".join(known.generation_types) or "none"
            raise InputError(
                "generation_type",
                f"{gen_type!r} is not a generation type of {known.tool}.",
                f"Use one of: {allowed}, or leave it out.",
            )
        fields = {name: _text(value) for name, value in (inputs.fields or {}).items()}
        clash = sorted(set(fields) & set(inputs.images))
        if clash:
            raise InputError("fields", f"{', '.join(clash)} is both an image and a text field.", "Keep one.")
        files: list[dict[str, str]] = []
        keys: dict[str, str] = {}
        origins: dict[str, str] = {}
        for name, ref in inputs.images.items():
            image = await images.resolve(f"images.{name}", ref)
            if image.data is None:
                raise InputError(
                    f"images.{name}",
                    f"{image.origin} is a URL, and the Generation API takes uploaded files; callsheet does "
                    "not download input URLs for it.",
                    "Download the image into an allowed input folder and pass its path, or pass a data: URI "
                    "or a callsheet:// output.",
                )
            mime = image.mime_type or "application/octet-stream"
            files.append(
                {
                    "field": name,
                    "filename": f"{name}.{_EXTENSIONS.get(mime, 'bin')}",
                    "mime_type": mime,
                    "data": base64.b64encode(image.data).decode("ascii"),
                }
            )
            keys[name] = image.key()
            origins[name] = image.origin
        common = {"tool": known.tool, "generation_type": gen_type, "fields": fields}
        return Prepared(
            operation=OPERATION,
            payload={**common, "images": files},
            key_material={**common, "images": keys},
            credits_estimate=None,
            typical_seconds=TYPICAL_SECONDS,
            summary={**common, "images": origins},
        )

    async def submit(
        self, operation: str, payload: dict[str, Any], *, webhook_url: str | None = None
    ) -> Submission:
        form = {
            TOOL_FIELD: str(payload["tool"]),
            **{k: str(v) for k, v in (payload.get("fields") or {}).items()},
        }
        if payload.get("generation_type"):
            form[GENERATION_TYPE_FIELD] = str(payload["generation_type"])
        files = [
            (f["field"], (f["filename"], base64.b64decode(f["data"]), f["mime_type"]))
            for f in payload.get("images") or []
        ]
        response = await self._call("POST", GENERATE_PATH, data=form, files=files)
        body = _body(response)
        item = body.get("history_item_id") if isinstance(body, dict) else None
        if isinstance(item, bool) or not isinstance(item, str | int) or not str(item).strip():
            raise BadResponse(
                "The Generation API's answer to generate_image_v2 carried no history_item_id.",
                provider=self.name,
            )
        return Submission(provider_job_id=str(item).strip())

    async def status(self, provider_job_id: str, operation: str) -> StatusReport:
        response = await self._call("GET", HISTORY_PATH.format(id=provider_job_id))
        body = _body(response)
        if not isinstance(body, dict):
            raise BadResponse("The Generation API's history item is not a JSON object.", provider=self.name)
        raw = str(body.get("status") or "").strip().lower()
        state = _STATES.get(raw)
        if state is None:
            raise BadResponse(f"The Generation API reported an unknown status {raw!r}.", provider=self.name)
        if state is RemoteState.FAILED:
            detail = next(
                (str(body[k]) for k in ("error", "message", "detail") if body.get(k)), "no details given"
            )
            return StatusReport(
                state=state,
                error=JobError(
                    code="generation_error",
                    message=f"The Generation API ended generation {provider_job_id} in error: {detail}. "
                    "Check the images and fields for this tool, then try again.",
                    retryable=True,
                ),
            )
        if state is not RemoteState.SUCCEEDED:
            return StatusReport(state=state)
        urls = [body.get(k) for k in ("stock_url", "preview_url")]
        if not any(urls):
            urls = [body.get("output_url")]
        found = [self.output_url(u) for u in dict.fromkeys(urls) if isinstance(u, str) and u.strip()]
        if not found:
            raise BadResponse(
                f"The Generation API reported {provider_job_id} complete without output URLs.",
                provider=self.name,
            )
        return StatusReport(state=state, outputs=[RemoteOutput(url=u) for u in found])

    def output_url(self, path: str) -> str:
        """An output path made absolute against the base URL's origin (not its path prefix)."""
        path = path.strip()
        if path.lower().startswith(("http://", "https://")):
            return path
        parts = urlsplit(self.http.base_url)
        return f"{parts.scheme}://{parts.netloc}/{path.lstrip('/')}"

    # -- HTTP ------------------------------------------------------------------------------

    async def _call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """One request; a trailing-slash redirect on the same host is followed exactly once.

        A redirect means the API did not run the request, so sending it again cannot charge twice.
        """
        response = await self.http.request(KIND, method, path, **kwargs)
        if response.status_code not in _REDIRECTS:
            return response
        again = await self.http.request(KIND, method, self._slash_target(path, response), **kwargs)
        if again.status_code in _REDIRECTS:
            raise ProviderRejected(
                f"The Generation API redirected {path} again after a trailing-slash redirect; "
                "check GENAPI_BASE_URL.",
                provider=self.name,
                status_code=again.status_code,
            )
        return again

    def _slash_target(self, path: str, response: httpx.Response) -> str:
        sent = response.request.url
        location = response.headers.get("location", "")
        try:
            target = sent.join(location)
        except httpx.InvalidURL:
            target = None
        if (
            target is None
            or (target.scheme, target.host, target.port) != (sent.scheme, sent.host, sent.port)
            or target.path == sent.path
            or target.path.rstrip("/") != sent.path.rstrip("/")
        ):
            raise ProviderRejected(
                f"The Generation API answered {path} with HTTP {response.status_code} to {location or '?'}; "
                "only a trailing-slash redirect on the same host is followed. Check GENAPI_BASE_URL.",
                provider=self.name,
                status_code=response.status_code,
            )
        bare = path.rstrip("/")
        return bare + "/" if target.path.endswith("/") else bare


# --- Parsing ------------------------------------------------------------------------------------


def parse_generation_types(body: object) -> tuple[str, ...]:
    """A generationTypes answer as values: a list of strings, or of objects with a name/id/type-like
    key (`TYPE_KEYS`), possibly wrapped in an object under one of `TYPE_LIST_KEYS`."""
    items = body
    if isinstance(body, dict):
        items = next((body[k] for k in TYPE_LIST_KEYS if isinstance(body.get(k), list)), None)
    if not isinstance(items, list):
        raise BadResponse("The Generation API's generation types are not a JSON list.", provider="genapi")
    values: list[str] = []
    for item in items:
        value: object = item
        if isinstance(item, dict):
            value = next((item[k] for k in TYPE_KEYS if _scalar(item.get(k))), None)
        if _scalar(value):
            values.append(str(value).strip())
    return tuple(dict.fromkeys(values))


def _scalar(value: object) -> bool:
    return isinstance(value, str | int) and not isinstance(value, bool) and str(value).strip() != ""


def _text(value: str | int | float | bool) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _body(response: httpx.Response) -> Any:
    return json_body(response, "genapi", "The Generation API")


def genapi_error_message(response: httpx.Response) -> str:
    """FastAPI's `{"detail": "text"}` or `{"detail": [{"loc", "msg"}]}`, else the usual shapes."""
    body = error_body(response)
    if isinstance(body, str):
        return body
    detail = body.get("detail", body.get("error") or body.get("message"))
    if isinstance(detail, list):
        parts = []
        for item in detail[:5]:
            if isinstance(item, dict):
                loc = ".".join(str(p) for p in item.get("loc") or [] if p != "body")
                parts.append(f"{loc}: {item.get('msg')}" if loc else str(item.get("msg")))
            else:
                parts.append(str(item))
        return "; ".join(parts)[:300]
    if isinstance(detail, dict):
        return str(detail.get("message") or detail)[:300]
    return str(detail if detail else body)[:300]
