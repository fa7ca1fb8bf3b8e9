"""Auto Toon adapter: the Fashion Editorial API (`provider-docs/autotoon-editorial-api.txt`).

    editorial   POST /api/fashion-editorial/generate        synchronous: answers with imageUrl
    variations  POST /api/fashion-editorial/variations      synchronous: answers with several URLs
    relight     POST /api/fashion-editorial/relight         synchronous
    upscale     POST /api/fashion-editorial/upscale         synchronous
    video       POST /api/fashion-editorial/video/generate  -> {id}, then
                GET  /api/fashion-editorial/video/status/{id} until completed or failed
    models      GET  /api/fashion-model/list                (query tool autotoon_models)

The image calls answer only when the image is done, so `submit` sends them with the long
`SYNC_GENERATION` and returns a `Submission` that is already `done`: they are still
durable, idempotent jobs whose outputs are downloaded and thumbnailed. Their provider job id is
synthetic (`sync:` + the output URLs as JSON), so a server that stops between storing it and
downloading the outputs finds them again on restart, without a second (paid) call.

Auto Toon takes image URLs only: every image argument must be a public http(s) URL or an earlier
output whose provider URL (`source_url`) is known; local files and data URIs are refused in
`prepare`, before anything is stored or sent.

The document has no balance endpoint: the adapter keeps the last `creditsRemaining` it saw, and a
call's `credits_used` is the drop in it when that can be told (the call ran alone and a balance
was known before it), else the estimate from `autotoon_models.CREDITS`.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
from pydantic import BaseModel
from starlette.types import ASGIApp

from server.errors import BadResponse, InputError
from server.http import error_body, json_object
from server.media import ImageInput, ImageResolver
from server.models import JobError
from server.policy import AUTOTOON_LIMITS, HTTP, SYNC_GENERATION
from server.providers.autotoon.operations import (
    IMAGE_FIELDS,
    IMAGE_LIST_FIELDS,
    OPERATIONS,
    ModelsQuery,
    to_wire,
)
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

if TYPE_CHECKING:
    from server.http import HttpCaller

SYNC_PREFIX = "sync:"
"""Provider job ids of synchronous calls: `sync:` + the JSON list of their output URLs."""

_VIDEO_STATES = {
    "pending": RemoteState.PENDING,
    "queued": RemoteState.PENDING,
    "processing": RemoteState.RUNNING,
    "completed": RemoteState.SUCCEEDED,
    "failed": RemoteState.FAILED,
}

URL_ONLY_FIX = (
    "Pass a public http(s) URL, or an earlier output (callsheet://jobs/{id}/outputs/{n}) of a provider "
    "that returns URLs, e.g. FASHN."
)

QUERIES = (
    QuerySpec(
        name="models",
        title="Auto Toon saved models",
        description=(
            "List the fashion models saved in the Auto Toon account (id, name, reference image URL), to "
            "pass as model_id to autotoon_editorial. Read-only; costs no credits."
        ),
        inputs=ModelsQuery,
    ),
)


def autotoon_error_message(response: httpx.Response) -> str:
    """The documented error body `{"error", "code"}`; a 402 adds `balance`, `required`, `needsTopUp`."""
    body = error_body(response)
    if isinstance(body, str):
        return body
    error, code = body.get("error"), body.get("code")
    message = f"{code}: {error}" if code and error else str(error or code or body)[:300]
    if response.status_code == 402 or code == "INSUFFICIENT_CREDITS":
        facts = []
        if body.get("required") is not None:
            facts.append(f"this call needs {body['required']} credits")
        if body.get("balance") is not None:
            facts.append(f"the balance is {body['balance']}")
        if body.get("needsTopUp") or facts:
            facts.append("top up Auto Toon credits")
        if facts:
            message += " (" + "; ".join(facts) + ")."
    return message


class AutoToon(Provider):
    name = "autotoon"

    def __init__(self, http: HttpCaller, *, sandbox: bool, time_scale: float = 1.0) -> None:
        super().__init__(http, sandbox=sandbox, time_scale=time_scale)
        self._credits: float | None = None
        """The latest `creditsRemaining` Auto Toon reported (it has no balance endpoint)."""
        self._credits_at: datetime | None = None
        self._baseline: float | None = None
        """The balance right now, when known: None after a charged call that did not report it
        (variations, video), until the next answer that does."""
        self._calls = 0
        """Bumped when a generation call starts and when it ends: a call that sees no other bump ran
        alone, so the drop in `creditsRemaining` across it is its own cost."""

    @classmethod
    def operations(cls) -> list[OperationSpec]:
        return [
            OperationSpec(op.operation, op.title, op.description, op.inputs, credits=op.estimate)
            for op in OPERATIONS.values()
        ]

    @classmethod
    def queries(cls) -> list[QuerySpec]:
        return list(QUERIES)

    async def prepare(self, operation: str, args: dict[str, Any], images: ImageResolver) -> Prepared:
        spec = lookup_operation(OPERATIONS, "Auto Toon", operation)
        inputs = validate_inputs(spec.inputs, args, f"autotoon_{operation}")
        given = inputs.model_dump(exclude_none=True, mode="json")
        body = to_wire(await _resolve_urls(given, images))
        return Prepared(
            operation=operation,
            payload=body,
            key_material=body,  # image arguments as the URLs Auto Toon receives
            credits_estimate=spec.credits,
            typical_seconds=spec.typical_seconds * self.time_scale,
            summary=given,
        )

    async def submit(self, operation: str, payload: dict[str, Any]) -> Submission:
        spec = lookup_operation(OPERATIONS, "Auto Toon", operation)
        # Synchronous calls answer when the image is done: they get the long read timeout.
        timing = HTTP if spec.asynchronous else SYNC_GENERATION
        self._calls += 1
        started, before = self._calls, self._baseline
        try:
            response = await self.http.request("generate", "POST", spec.path, json=payload, timing=timing)
        finally:
            self._calls += 1
        body = _json(response)
        remaining = self._after_charge(body.get("creditsRemaining"))
        used = spec.credits
        alone = self._calls == started + 1
        if alone and before is not None and remaining is not None and before - remaining >= 0:
            used = before - remaining
        if spec.asynchronous:
            video_id = body.get("id")
            if not isinstance(video_id, str) or not video_id:
                raise BadResponse(f"Auto Toon's answer to {spec.path} carried no job id.", provider=self.name)
            return Submission(provider_job_id=video_id, credits_used=used)
        urls = _output_urls(operation, body)
        done = StatusReport(
            state=RemoteState.SUCCEEDED, outputs=[RemoteOutput(url=u) for u in urls], credits_used=used
        )
        return Submission(provider_job_id=SYNC_PREFIX + json.dumps(urls), credits_used=used, done=done)

    async def status(self, provider_job_id: str, operation: str) -> StatusReport:
        if provider_job_id.startswith(SYNC_PREFIX):
            # A synchronous call that had already answered when the server stopped: its URLs are here.
            try:
                urls = json.loads(provider_job_id[len(SYNC_PREFIX) :])
            except ValueError:
                urls = None
            if not isinstance(urls, list) or not urls:
                raise BadResponse(
                    "The stored Auto Toon result is damaged.", retryable=False, provider=self.name
                )
            return StatusReport(state=RemoteState.SUCCEEDED, outputs=[RemoteOutput(url=str(u)) for u in urls])
        response = await self.http.request(
            "status", "GET", f"/api/fashion-editorial/video/status/{provider_job_id}"
        )
        body = _json(response)
        self._observe(body.get("creditsRemaining"))
        raw = str(body.get("status") or "").lower()
        state = _VIDEO_STATES.get(raw)
        if state is None:
            raise BadResponse(
                f"Auto Toon reported an unknown video status {body.get('status')!r}.",
                retryable=False,
                provider=self.name,
            )
        if state is RemoteState.FAILED:
            detail = body.get("error") or body.get("message") or "no reason given"
            return StatusReport(
                state=state,
                error=JobError(
                    code="video_failed",
                    message=f"Auto Toon could not make the video ({detail}). Try again (force: true) or with "
                    "another image; Auto Toon does not document whether a failed video is charged.",
                    retryable=True,
                ),
            )
        if state is not RemoteState.SUCCEEDED:
            return StatusReport(state=state)
        url = body.get("videoUrl")
        if not isinstance(url, str) or not url:
            raise BadResponse("Auto Toon reported a completed video without videoUrl.", provider=self.name)
        return StatusReport(state=state, outputs=[RemoteOutput(url=url)])

    async def query(self, name: str, args: BaseModel) -> dict[str, Any]:
        if name != "models":
            return await super().query(name, args)
        response = await self.http.request("list", "GET", "/api/fashion-model/list")
        try:
            body = response.json()
        except ValueError:
            raise BadResponse("Auto Toon's model list is not JSON.", provider=self.name) from None
        # The document does not show this answer. Accepted: {"models": [...]}, {"data": [...]} or a
        # bare list, each item with id (or modelId/_id), name and an image URL (imageUrl or image_url).
        items = body.get("models", body.get("data")) if isinstance(body, dict) else body
        if not isinstance(items, list):
            raise BadResponse("Auto Toon's model list has no list of models.", provider=self.name)
        models = [_saved_model(item) for item in items if isinstance(item, dict)]
        return {"models": models, "count": len(models)}

    async def balance(self) -> Balance:
        if self._credits is None:
            return Balance(
                credits=None,
                detail={
                    "note": "Auto Toon has no balance endpoint; callsheet learns the balance from "
                    "creditsRemaining in the answer to the next editorial, relight or upscale call."
                },
            )
        as_of = self._credits_at.isoformat() if self._credits_at else None
        return Balance(
            credits=self._credits,
            detail={
                "source": "creditsRemaining of the latest Auto Toon answer that reported it",
                "as_of": as_of,
                "note": "variations and video answers report no balance: their cost is not included "
                "until the next editorial, relight or upscale answer.",
            },
        )

    def price_list(self) -> dict[str, str]:
        return {f"autotoon_{op}": spec.price_text for op, spec in OPERATIONS.items()}

    def _observe(self, value: object) -> float | None:
        """Keep a reported `creditsRemaining` as the known balance."""
        if isinstance(value, bool) or not isinstance(value, int | float):
            return None
        self._credits = self._baseline = float(value)
        self._credits_at = datetime.now(UTC)
        return self._credits

    def _after_charge(self, value: object) -> float | None:
        """After a charged call: its `creditsRemaining`, or (when it reported none) forget the baseline."""
        remaining = self._observe(value)
        if remaining is None:
            self._baseline = None
        return remaining


async def _resolve_urls(values: dict[str, Any], images: ImageResolver, where: str = "") -> dict[str, Any]:
    """`values` with every image reference (at any depth) replaced by the URL Auto Toon will fetch."""
    out: dict[str, Any] = {}
    for name, value in values.items():
        field = f"{where}{name}"
        if name in IMAGE_FIELDS and isinstance(value, str):
            out[name] = _url_of(await images.resolve(field, value))
        elif name in IMAGE_LIST_FIELDS and isinstance(value, list):
            out[name] = [_url_of(await images.resolve(f"{field}[{n}]", ref)) for n, ref in enumerate(value)]
        elif isinstance(value, list) and all(isinstance(item, dict) for item in value):
            out[name] = [await _resolve_urls(item, images, f"{field}[{n}].") for n, item in enumerate(value)]
        else:
            out[name] = value
    return out


def _url_of(image: ImageInput) -> str:
    """The URL Auto Toon can fetch: a checked public URL, or an earlier output's provider URL."""
    if image.url:
        return image.url
    if image.source_url:
        return image.source_url
    if image.origin.lower().startswith("data:"):
        what = f"{image.origin} is a data URI"
    elif image.origin.startswith("callsheet:"):
        what = f"{image.origin} is a local file (its provider returned it inline, with no URL)"
    else:
        what = f"{image.origin} is a local file"
    raise InputError(image.field, f"Auto Toon takes image URLs only; {what}.", URL_ONLY_FIX)


def _output_urls(operation: str, body: dict[str, Any]) -> list[str]:
    if operation == "variations":
        if body.get("success") is False:
            raise BadResponse("Auto Toon answered success: false to a variations call.", provider="autotoon")
        raw = body.get("variations")
        urls = [u for u in raw if isinstance(u, str) and u] if isinstance(raw, list) else []
    else:
        url = body.get("imageUrl")
        urls = [url] if isinstance(url, str) and url else []
    if not urls:
        raise BadResponse(f"Auto Toon's answer to {operation} carried no image URL.", provider="autotoon")
    return urls


def _saved_model(item: dict[str, Any]) -> dict[str, Any]:
    model_id = item.get("id") or item.get("modelId") or item.get("_id")
    image = item.get("imageUrl") or item.get("image_url") or item.get("thumbnailUrl")
    return {"id": model_id, "name": item.get("name"), "image_url": image}


def _json(response: httpx.Response) -> dict[str, Any]:
    return json_object(response, "autotoon", "Auto Toon")


def _sandbox(time_scale: float, state_dir: Path) -> ASGIApp:
    from server.providers.autotoon.emulator import AutoToonEmulator

    app: ASGIApp = AutoToonEmulator(time_scale=time_scale, state_dir=state_dir).app
    return app


REGISTRATION = Registration(
    adapter=AutoToon,
    limits=lambda settings: AUTOTOON_LIMITS,
    auth_headers=lambda key: {"x-api-key": key},
    error_message=autotoon_error_message,
    sandbox_app=_sandbox,
)
