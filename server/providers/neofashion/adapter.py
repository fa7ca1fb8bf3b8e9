"""neo-fashion.ai adapter: generation endpoints, generation status, balance, personas and models.

Built on `provider-docs/neofashion-api.txt`: base URL with its `/api/v1` prefix, Bearer keys
(`ne_live_...`, `ne_test_...`), the `{data, meta, error}` envelope on every answer, the six error
codes, `meta.credits_used` / `meta.credits_remaining`, and one rolling 60 s rate window per
workspace announced in `X-RateLimit-Remaining` / `X-RateLimit-Reset`.

The document does not show request bodies; the tables right below are callsheet's choice of names
from the document's own vocabulary, kept here and only here so they are easy to correct (the
README lists them). Image arguments are sent as URLs: see `_image_url` for why local files and
data: URIs are refused rather than inlined.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import httpx
from pydantic import BaseModel
from starlette.types import ASGIApp

from server.errors import (
    AuthError,
    BadResponse,
    InputError,
    ProviderError,
    ProviderRejected,
    ProviderUnavailable,
    RateLimited,
    error_for_status,
)
from server.http import error_body, json_body, rate_limit_headers
from server.media import ImageInput, ImageResolver
from server.models import JobError
from server.policy import NEOFASHION_GENERATE, neofashion_limits
from server.providers.base import (
    Balance,
    OperationSpec,
    Prepared,
    Provider,
    QuerySpec,
    Registration,
    RemoteOutput,
    RemoteState,
    StatusReport,
    Submission,
    lookup_operation,
    validate_inputs,
)
from server.providers.neofashion.operations import (
    OPERATIONS,
    QUERIES,
    BulkInputs,
    GenerationsQuery,
)

# --- The wire, in one place ---------------------------------------------------------------------
# neo-fashion documents endpoints and envelopes, not request bodies. Each operation's tool
# arguments map to these JSON fields (argument -> field); correct a name here and nowhere else.


@dataclass(frozen=True)
class Endpoint:
    method: str
    path: str
    fields: dict[str, str]
    """Tool argument -> request body field."""


REQUEST_FIELDS: dict[str, Endpoint] = {
    "image": Endpoint(
        "POST",
        "/generate/image",
        {
            "prompt": "prompt",
            "image_url": "image_url",
            "persona_id": "persona_id",
            "model_id": "model_id",
            "aspect_ratio": "aspect_ratio",
        },
    ),
    "video": Endpoint(
        "POST",
        "/generate/video",
        {
            "prompt": "prompt",
            "image_url": "image_url",
            "persona_id": "persona_id",
            "model_id": "model_id",
            "aspect_ratio": "aspect_ratio",
            "duration": "duration",
        },
    ),
    "sketch_to_photo": Endpoint(
        "POST",
        "/sketch-to-photo",
        {
            "sketch_url": "sketch_url",
            "prompt": "prompt",
            "persona_id": "persona_id",
            "model_id": "model_id",
            "aspect_ratio": "aspect_ratio",
        },
    ),
    # `{"items": [<an image request per item, fields as for "image">]}`
    "bulk": Endpoint("POST", "/generate/bulk", {"items": "items"}),
}
BULK_ITEM_OPERATION = "image"
"""Bulk items are image requests: their fields are `REQUEST_FIELDS["image"]`'s, and each item is
polled as an `image` job."""
IMAGE_URL_ARGUMENTS = frozenset({"image_url", "sketch_url"})
"""Arguments that take an image reference and are sent as a URL."""

QUERY_PATHS = {"generations": "/generations", "personas": "/personas", "models": "/models"}
QUERY_PARAMS = {"status": "status", "page": "page", "limit": "limit"}
"""`neofashion_generations` argument -> query parameter of `GET /generations`."""
GENERATION_PATH = "/generations/{id}"
BALANCE_PATH = "/credits/balance"

# Fields read from answers (the documented ones first; the others are accepted spellings).
ID_FIELD = "id"
STATUS_FIELD = "status"
OUTPUT_FIELDS = ("output_url", "output_urls", "outputs")
BULK_ITEM_FIELDS = ("generations", "generation_ids", "items")
BALANCE_FIELDS = ("balance", "credits_remaining", "credits")

_STATES = {
    "queued": RemoteState.PENDING,
    "pending": RemoteState.PENDING,
    "processing": RemoteState.RUNNING,
    "running": RemoteState.RUNNING,
    "in_progress": RemoteState.RUNNING,
    "completed": RemoteState.SUCCEEDED,
    "succeeded": RemoteState.SUCCEEDED,
    "failed": RemoteState.FAILED,
    "error": RemoteState.FAILED,
    "canceled": RemoteState.CANCELED,
    "cancelled": RemoteState.CANCELED,
}

# The documented error codes and their HTTP statuses.
DOCUMENTED_STATUS = {
    "INSUFFICIENT_CREDITS": 402,
    "UNAUTHORIZED": 401,
    "FORBIDDEN": 403,
    "NOT_FOUND": 404,
    "RATE_LIMITED": 429,
    "PROVIDER_ERROR": 502,
}
_CODE = re.compile(r"\b(" + "|".join(DOCUMENTED_STATUS) + r"):")
REFUNDED = "neo-fashion refunded the credits automatically."
KIND = "api"
"""Every request shares the workspace's one rolling window."""


def neofashion_error_message(response: httpx.Response) -> str:
    """The envelope's error as one line: `CODE: message (details; request id)`.

    The code leads so that callers can tell documented codes apart after `error_for_status`.
    """
    body = error_body(response)
    if isinstance(body, str):
        return body
    error, meta = body.get("error"), body.get("meta")
    request_id = meta.get("request_id") if isinstance(meta, dict) else None
    if isinstance(error, dict):
        code, message = error.get("code"), error.get("message")
        text = f"{code}: {message}" if code and message else str(message or code or error)
        details = error.get("details")
        if code == "INSUFFICIENT_CREDITS" and isinstance(details, dict):
            required, available = details.get("required"), details.get("available")
            text += f" This call needs {required} credits; the workspace has {available}."
        elif code == "UNAUTHORIZED":
            text += " neo-fashion API keys start with ne_live_ or ne_test_ (workspace settings)."
        elif code == "FORBIDDEN":
            text += " The workspace's plan does not include this feature: upgrade it or use another tool."
    elif error:
        text = str(error)
    else:
        text = str(body)[:300]
    return f"{text} (request {request_id})" if request_id else text


@dataclass(frozen=True)
class _Envelope:
    data: Any
    meta: dict[str, Any]


class _HeaderBudget:
    """What the latest `X-RateLimit-*` headers still allow, minus requests already on their way.

    `HttpCaller` stops a kind when an answer says `remaining: 0`; but requests sent concurrently
    before that answer arrived would each meet a 429 (the plan may also be lower than callsheet was
    told). This keeps the requests not yet counted by the provider (sent after the answer the
    numbers came from) below `remaining`; once `reset` has passed, one more may go to learn the new
    numbers. Until the first numbers arrive, one request at a time goes out; a provider that never
    sends the headers is then never held.
    """

    def __init__(self) -> None:
        self.remaining: int | None = None
        self.reset_at = 0.0
        self.headerless = False
        """True once an answer came without the headers: the provider does not send them."""
        self._seen = 0
        """Sequence number of the request whose answer gave the current numbers."""
        self._sent = 0
        self._outstanding: set[int] = set()
        self._changed = anyio.Event()

    def _room(self, now: float) -> int:
        uncounted = sum(1 for seq in self._outstanding if seq > self._seen)
        if self.remaining is None:
            return 1 if self.headerless else 1 - uncounted  # one probe until the numbers are known
        allowed = self.remaining + (1 if now >= self.reset_at else 0)
        return allowed - uncounted

    async def enter(self) -> int:
        while True:
            now = time.monotonic()
            if self._room(now) > 0:
                break
            changed = self._changed
            wait = self.reset_at - now if self.reset_at > now else 1.0
            with anyio.move_on_after(wait):
                await changed.wait()
        self._sent += 1
        self._outstanding.add(self._sent)
        return self._sent

    def leave(self, seq: int, remaining: int | None = None, reset: float | None = None) -> None:
        self._outstanding.discard(seq)
        if remaining is not None and seq > self._seen:
            self._seen = seq
            self.remaining = remaining
            self.reset_at = time.monotonic() + (reset or 0.0)
        self._changed.set()
        self._changed = anyio.Event()

    def observe(self, seq: int, headers: httpx.Headers) -> None:
        limits = rate_limit_headers(headers)
        if limits is None:
            self.headerless = self.headerless or self.remaining is None
            self.leave(seq)
            return
        self.headerless = False
        self.leave(seq, *limits)


class NeoFashion(Provider):
    name = "neofashion"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.credits_remaining: float | None = None
        """The workspace balance as of the latest answer that reported it (`meta.credits_remaining`)."""
        self._budget = _HeaderBudget()

    @classmethod
    def operations(cls) -> list[OperationSpec]:
        return [
            OperationSpec(op, spec.title, spec.description, spec.inputs, credits=spec.credits)
            for op, spec in OPERATIONS.items()
        ]

    @classmethod
    def queries(cls) -> list[QuerySpec]:
        return list(QUERIES.values())

    # --- prepare: arguments -> request body -------------------------------------------------

    async def prepare(self, operation: str, args: dict[str, Any], images: ImageResolver) -> Prepared:
        spec = lookup_operation(OPERATIONS, "neo-fashion", operation)
        inputs = validate_inputs(spec.inputs, args, f"neofashion_{operation}")
        if isinstance(inputs, BulkInputs):
            parts = [
                await self._body(BULK_ITEM_OPERATION, item, images, f"items[{n}].")
                for n, item in enumerate(inputs.items)
            ]
            wire = REQUEST_FIELDS[operation].fields["items"]
            body: dict[str, Any] = {wire: [p[0] for p in parts]}
            key: dict[str, Any] = {"items": [p[1] for p in parts]}
            summary: dict[str, Any] = {"items": [p[2] for p in parts]}
        else:
            body, key, summary = await self._body(operation, inputs, images)
        return Prepared(
            operation=operation,
            payload=body,
            key_material=key,
            credits_estimate=spec.credits(inputs),
            typical_seconds=spec.typical_seconds(inputs) * self.time_scale,
            summary=summary,
        )

    async def _body(
        self, operation: str, inputs: BaseModel, images: ImageResolver, prefix: str = ""
    ) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
        """The request body, the idempotency key material and the summary of one request."""
        fields = REQUEST_FIELDS[operation].fields
        body: dict[str, Any] = {}
        key: dict[str, Any] = {}
        summary: dict[str, Any] = {}
        for name, value in inputs.model_dump(exclude_none=True, mode="json").items():
            key[name] = summary[name] = value
            if name in IMAGE_URL_ARGUMENTS:
                image = await images.resolve(prefix + name, value)
                value = _image_url(image)
                key[name], summary[name] = image.key(), image.origin
            body[fields[name]] = value
        return body, key, summary

    # --- submit, status, balance ---------------------------------------------------------------

    async def submit(self, operation: str, payload: dict[str, Any]) -> Submission:
        endpoint = REQUEST_FIELDS[operation]
        answer = await self._call(endpoint.method, endpoint.path, json=payload, timing=NEOFASHION_GENERATE)
        data = _object(answer.data, "data")
        charged = _number(answer.meta.get("credits_used"))
        if charged is None:
            charged = _number(data.get("credits_used"))
        provider_id = data.get(ID_FIELD)
        if not isinstance(provider_id, str) or not provider_id:
            raise BadResponse(f"neo-fashion's answer to {endpoint.path} carried no id.", provider=self.name)
        if operation == "bulk":
            children = _bulk_items(data)
            if not children:
                raise BadResponse(
                    "neo-fashion accepted the batch but listed no generations.", provider=self.name
                )
            return Submission(
                provider_job_id=provider_id,
                credits_used=charged,
                children=children,
                child_operation=BULK_ITEM_OPERATION,
            )
        report = self._report(data)
        done = report if report.state in (RemoteState.SUCCEEDED, RemoteState.FAILED) else None
        if done is not None and done.state is RemoteState.SUCCEEDED and not done.outputs:
            done = None  # completed without an output URL yet: poll for it
        return Submission(provider_job_id=provider_id, credits_used=charged, done=done)

    async def status(self, provider_job_id: str, operation: str) -> StatusReport:
        if operation == "bulk":
            # Only reached if the server stopped between accepting a batch and storing its items.
            raise ProviderRejected(
                "The items of this neo-fashion batch were never recorded, and neo-fashion has no endpoint to "
                f"read a batch ({provider_job_id}). Its generations are listed by neofashion_generations.",
                code="batch_items_unknown",
                provider=self.name,
            )
        try:
            answer = await self._call("GET", GENERATION_PATH.format(id=provider_job_id))
        except ProviderUnavailable as exc:
            if exc.code == "provider_error":  # the generation failed at neo-fashion's AI provider
                return StatusReport(state=RemoteState.FAILED, error=_refunded(exc.message), credits_used=0)
            raise
        return self._report(_object(answer.data, "data"))

    async def balance(self) -> Balance:
        answer = await self._call("GET", BALANCE_PATH)
        data = answer.data if isinstance(answer.data, dict) else {}
        numbers = (_number(data.get(name)) for name in BALANCE_FIELDS)
        credits = next((n for n in numbers if n is not None), None)
        if credits is None:
            credits = _number(answer.meta.get("credits_remaining"))
        if credits is None:
            raise BadResponse("neo-fashion's balance answer has no balance.", provider=self.name)
        self.credits_remaining = credits
        return Balance(credits=credits, detail=data)

    async def query(self, name: str, args: BaseModel) -> dict[str, Any]:
        if name not in QUERY_PATHS:
            return await super().query(name, args)
        params: dict[str, Any] = {}
        if isinstance(args, GenerationsQuery):
            params = {QUERY_PARAMS[k]: v for k, v in args.model_dump(exclude_none=True).items()}
        answer = await self._call("GET", QUERY_PATHS[name], params=params)
        items = answer.data if isinstance(answer.data, list) else []
        if name != "generations":
            return {name: items, "total": answer.meta.get("total", len(items))}
        page = int(answer.meta.get("page") or params.get("page") or 1)
        more = answer.meta.get("has_more")
        return {
            "generations": items,
            "page": page,
            "limit": answer.meta.get("limit", params.get("limit")),
            "total": answer.meta.get("total"),
            "next_page": page + 1 if more else None,
        }

    def price_list(self) -> dict[str, str]:
        return {f"neofashion_{op}": spec.price_text for op, spec in OPERATIONS.items()}

    # --- one request through the envelope ------------------------------------------------------

    async def _call(self, method: str, path: str, **kwargs: Any) -> _Envelope:
        """Send one request within the rate budget; return the envelope or raise the mapped error."""
        seq = await self._budget.enter()
        observed = False
        try:
            response = await self.http.request(KIND, method, path, **kwargs)
            self._budget.observe(seq, response.headers)
            observed = True
        except RateLimited as exc:
            self._budget.leave(seq, 0, exc.retry_after if exc.retry_after is not None else 1.0)
            observed = True
            raise
        except ProviderError as exc:
            raise _refine(exc) from None
        finally:
            if not observed:
                self._budget.leave(seq)
        envelope = self._envelope(response)
        remaining = _number(envelope.meta.get("credits_remaining"))
        if remaining is not None:
            self.credits_remaining = remaining
        return envelope

    def _envelope(self, response: httpx.Response) -> _Envelope:
        body = json_body(response, self.name, "neo-fashion")
        if not isinstance(body, dict) or not ({"data", "error"} & body.keys()):
            raise BadResponse(
                "neo-fashion answered without its {data, meta, error} envelope.", provider=self.name
            )
        error = body.get("error")
        if error:  # an error inside a 2xx answer: map it by its documented code
            code = error.get("code") if isinstance(error, dict) else None
            status = DOCUMENTED_STATUS.get(str(code), 400)
            raise _refine(
                error_for_status(
                    status, neofashion_error_message(response), provider=self.name, key_var=self.http.key_var
                )
            )
        meta = body.get("meta")
        return _Envelope(data=body.get("data"), meta=meta if isinstance(meta, dict) else {})

    def _report(self, data: dict[str, Any]) -> StatusReport:
        raw = str(data.get(STATUS_FIELD) or "").lower()
        state = _STATES.get(raw)
        if state is None:
            raise BadResponse(f"neo-fashion reported an unknown status {raw!r}.", provider=self.name)
        credits = _number(data.get("credits_used"))
        if state is RemoteState.FAILED:
            return StatusReport(state=state, error=_generation_error(data.get("error")), credits_used=0)
        if state is not RemoteState.SUCCEEDED:
            return StatusReport(state=state)
        outputs = [RemoteOutput(url=url) for url in _output_urls(data)]
        return StatusReport(state=state, outputs=outputs, credits_used=credits)


# --- Pure helpers -------------------------------------------------------------------------------


def _image_url(image: ImageInput) -> str:
    """neo-fashion's image fields are URLs, so a reference must be (or have) one.

    A local file or data: URI is refused rather than sent inline as a data: URI: the document
    names no upload and no base64 form, a multi-megabyte JSON field is likely to be rejected,
    and a rejection after the credits are debited would cost the user. An earlier callsheet
    output is sent by the provider URL it came from (`source_url`).
    """
    url = image.url or image.source_url
    if url:
        return url
    raise InputError(
        image.field,
        f"{image.origin} is a local file or inline image, and neo-fashion takes images by URL only.",
        "Upload the image somewhere public (your CDN, a storage bucket) and pass its https URL, or pass an "
        "earlier callsheet output that came from a provider URL (callsheet://jobs/{job_id}/outputs/{n}).",
    )


def _refine(exc: ProviderError) -> ProviderError:
    """Sharpen what `error_for_status` made from a status, using the envelope's documented code."""
    match = _CODE.search(exc.message)
    code = match.group(1) if match else None
    if code == "FORBIDDEN" or (code is None and exc.status_code == 403):
        return AuthError(exc.message, code="forbidden", provider=exc.provider, status_code=exc.status_code)
    if code == "PROVIDER_ERROR":
        message = exc.message if "refund" in exc.message.lower() else f"{exc.message} {REFUNDED}"
        return ProviderUnavailable(
            message,
            code="provider_error",
            provider=exc.provider,
            status_code=exc.status_code,
        )
    return exc


def _refunded(message: str) -> JobError:
    text = message if REFUNDED in message or "refund" in message.lower() else f"{message} {REFUNDED}"
    return JobError(
        code="provider_error",
        message=f"{text} Nothing was charged for this generation; try again (a repeat of the same call "
        "starts a new job).",
        retryable=True,
    )


def _generation_error(raw: object) -> JobError:
    if isinstance(raw, dict):
        code, message = str(raw.get("code") or "PROVIDER_ERROR"), str(raw.get("message") or "")
    else:
        code, message = "PROVIDER_ERROR", str(raw or "The generation failed.")
    if code == "PROVIDER_ERROR":
        return _refunded(f"neo-fashion PROVIDER_ERROR: {message}".strip())
    return JobError(code=code.lower(), message=f"neo-fashion {code}: {message}".strip(), retryable=False)


def _output_urls(data: dict[str, Any]) -> list[str]:
    for name in OUTPUT_FIELDS:
        value = data.get(name)
        if isinstance(value, str) and value:
            return [value]
        if isinstance(value, list):
            urls = [v if isinstance(v, str) else v.get("url") for v in value if isinstance(v, str | dict)]
            return [u for u in urls if isinstance(u, str) and u]
    return []


def _bulk_items(data: dict[str, Any]) -> tuple[str, ...]:
    for name in BULK_ITEM_FIELDS:
        value = data.get(name)
        if isinstance(value, list):
            ids = [v if isinstance(v, str) else v.get(ID_FIELD) for v in value if isinstance(v, str | dict)]
            return tuple(i for i in ids if isinstance(i, str) and i)
    return ()


def _object(value: object, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise BadResponse(f"neo-fashion's answer has no {what} object.", provider="neofashion")
    return value


def _number(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _sandbox(time_scale: float, state_dir: Path) -> ASGIApp:
    from server.providers.neofashion.emulator import NeoFashionEmulator

    app: ASGIApp = NeoFashionEmulator(time_scale=time_scale, state_dir=state_dir).app
    return app


REGISTRATION = Registration(
    adapter=NeoFashion,
    limits=lambda settings: neofashion_limits(settings.neofashion_rate_per_minute),
    auth_headers=lambda key: {"Authorization": f"Bearer {key}"},
    error_message=neofashion_error_message,
    sandbox_app=_sandbox,
)
