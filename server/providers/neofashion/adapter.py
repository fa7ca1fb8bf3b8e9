"""neo-fashion.ai adapter: generation endpoints, generation status, balance, personas and models.

Built on `provider-docs/neofashion-api.txt`: base URL with its `/api/v1` prefix, Bearer keys
(`ne_live_...`, `ne_test_...`), the `{data, meta, error}` envelope on every answer, the six error
codes, `meta.credits_used` / `meta.credits_remaining`, and one rolling 60 s rate window per
workspace announced in `X-RateLimit-Remaining` / `X-RateLimit-Reset`.

The document does not show request bodies; the argument names are callsheet's choice from the
document's own vocabulary and double as the JSON field names (`operations.py`; the README lists
them). Image arguments are sent as URLs: see `send_image` for why local files and data: URIs are
refused rather than inlined. The `X-RateLimit-*` headers are kept by the limiter (`rate_headers`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx
from pydantic import BaseModel

from server.errors import (
    AuthError,
    BadResponse,
    ErrorText,
    InputError,
    ProviderError,
    ProviderRejected,
    ProviderUnavailable,
    error_for_status,
)
from server.http import error_body, json_body
from server.media import ImageInput
from server.models import JobError, RemoteOutput
from server.policy import Limits, RateWindow, Timing
from server.providers.base import (
    Balance,
    Option,
    Provider,
    ProviderSettings,
    RemoteState,
    StatusReport,
    Submission,
)
from server.providers.neofashion.operations import OPERATIONS, QUERIES, GenerationsQuery

RATE = Option(
    "NEOFASHION_RATE_PER_MINUTE", 60, "your neo-fashion plan's rate per rolling minute (Starter 60, Pro 300)"
)
GENERATE = Timing(httpx.Timeout(connect=10.0, read=180.0, write=60.0, pool=30.0), deadline=240.0)
"""A short image may be answered synchronously (the POST returns the finished result): a long read
timeout, since a read timeout on a POST could mean a charge without a result."""
KIND = "api"
"""Every request shares the workspace's one rolling window."""
BULK_ITEM_OPERATION = "image"
"""Bulk items are image requests, and each item is polled as an `image` job."""

QUERY_PATHS = {"generations": "/generations", "personas": "/personas", "models": "/models"}
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
REFUNDED = "neo-fashion refunded the credits automatically."


@dataclass(frozen=True)
class _Envelope:
    data: Any
    meta: dict[str, Any]


class NeoFashion(Provider):
    name = "neofashion"
    title = "neo-fashion"
    image_urls_only = True
    badge = ("nf", "#be185d")
    key_var = "NEOFASHION_API_KEY"
    url_var = "NEOFASHION_BASE_URL"
    default_base_url = "https://app.neofashion.ai/api/v1"
    fixed_operations = tuple(OPERATIONS.values())
    fixed_queries = tuple(QUERIES.values())
    emulator_path = "server.providers.neofashion.emulator:NeoFashionEmulator"
    options = (RATE,)

    def __init__(self, settings: ProviderSettings) -> None:
        super().__init__(settings)
        self.credits_remaining: float | None = None
        """The workspace balance as of the latest answer that reported it (`meta.credits_remaining`)."""

    def limits(self) -> Limits:
        """One rolling 60 s window per workspace for every request, at the plan's rate; polls keep to
        half of it; the `X-RateLimit-*` headers refine it live."""
        rate = int(self.settings.options.get(RATE.var, RATE.default))
        return Limits(
            windows={KIND: (RateWindow(rate, 60.0),)}, poll_kind=KIND, poll_share=0.5, rate_headers=True
        )

    def describe_error(self, response: httpx.Response) -> ErrorText:
        """The envelope's error as one line, `CODE: message (details; request id)`, and its code."""
        body = error_body(response)
        if isinstance(body, str):
            return ErrorText(body)
        error, meta = body.get("error"), body.get("meta")
        request_id = meta.get("request_id") if isinstance(meta, dict) else None
        code = None
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
        text = f"{text} (request {request_id})" if request_id else text
        return ErrorText(text, str(code) if code else None)

    def send_image(self, image: ImageInput) -> str:
        """neo-fashion's image fields are URLs, so a reference must be (or have) one.

        A local file or data: URI is refused rather than sent inline as a data: URI: the document
        names no upload and no base64 form, a multi-megabyte JSON field is likely to be rejected,
        and a rejection after the credits are debited would cost the user. An earlier callsheet
        output is sent by the provider URL it came from (`source_url`).
        """
        url = image.url or image.link or image.source_url  # a signed link: CALLSHEET_PUBLIC_URL is set
        if url:
            return url
        raise InputError(
            image.field,
            f"{image.origin} is a local file or inline image, and neo-fashion takes images by URL only.",
            "Upload the image somewhere public (your CDN, a storage bucket) and pass its https URL, or "
            "pass an earlier callsheet output that came from a provider URL "
            "(callsheet://jobs/{job_id}/outputs/{n}); or set CALLSHEET_PUBLIC_URL so that callsheet hands "
            "neo-fashion a signed link to the file.",
        )

    # --- submit, status, balance ---------------------------------------------------------------

    async def submit(
        self, operation: str, payload: dict[str, Any], *, webhook_url: str | None = None
    ) -> Submission:
        route = self.operation(operation).route
        answer = await self._call("POST", route, json=payload, timing=GENERATE)
        data = _object(answer.data, "data")
        charged = _number(answer.meta.get("credits_used"))
        if charged is None:
            charged = _number(data.get("credits_used"))
        provider_id = data.get(ID_FIELD)
        if not isinstance(provider_id, str) or not provider_id:
            raise BadResponse(f"neo-fashion's answer to {route} carried no id.", provider=self.name)
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
            params = args.model_dump(by_alias=True, exclude_none=True)
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

    # --- one request through the envelope ------------------------------------------------------

    async def _call(self, method: str, path: str, **kwargs: Any) -> _Envelope:
        """Send one request; return the envelope or raise the mapped error."""
        try:
            response = await self.http.request(KIND, method, path, **kwargs)
        except ProviderError as exc:
            raise _refine(exc) from None
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
            described = self.describe_error(response)
            raise _refine(
                error_for_status(
                    status,
                    described.message,
                    provider=self.name,
                    key_var=self.http.key_var,
                    provider_code=described.code,
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


def _refine(exc: ProviderError) -> ProviderError:
    """Sharpen what `error_for_status` made from a status, using the envelope's documented code."""
    code = exc.provider_code
    if code == "FORBIDDEN" or (code is None and exc.status_code == 403):
        return AuthError(
            exc.message,
            code="forbidden",
            provider=exc.provider,
            status_code=exc.status_code,
            provider_code=code,
        )
    if code == "PROVIDER_ERROR":
        message = exc.message if "refund" in exc.message.lower() else f"{exc.message} {REFUNDED}"
        return ProviderUnavailable(
            message,
            code="provider_error",
            provider=exc.provider,
            status_code=exc.status_code,
            provider_code=code,
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
