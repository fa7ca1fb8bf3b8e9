"""Auto Toon adapter: the Fashion Editorial API (`provider-docs/autotoon-editorial-api.txt`).

    editorial   POST /api/fashion-editorial/generate        synchronous: answers with imageUrl
    variations  POST /api/fashion-editorial/variations      synchronous: answers with several URLs
    relight     POST /api/fashion-editorial/relight         synchronous
    upscale     POST /api/fashion-editorial/upscale         synchronous
    video       POST /api/fashion-editorial/video/generate  -> {id}, then
                GET  /api/fashion-editorial/video/status/{id} until completed or failed
    models      GET  /api/fashion-model/list                (query tool autotoon_models)

The image calls answer only when the image is done, so `submit` sends them with the long
`SYNC_GENERATION` timing and returns a `Submission` that is already `done`: they are still
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

import dataclasses
import json
from datetime import UTC, datetime
from typing import Any

import httpx
from pydantic import BaseModel

from server.errors import BadResponse, ErrorText, InputError
from server.http import error_body, json_object
from server.media import ImageInput, ImageResolver
from server.models import JobError, RemoteOutput
from server.policy import HTTP, Limits, RateWindow, Timing
from server.providers.autotoon.operations import CREDITS, OPERATIONS, ModelsQuery, nest
from server.providers.base import (
    Balance,
    Prepared,
    Provider,
    ProviderSettings,
    QuerySpec,
    RemoteState,
    StatusReport,
    Submission,
)

# Auto Toon documents no numbers: 429 RATE_LIMITED "retry after the indicated delay" is honoured, and
# these defaults keep well below what an interactive account would hit.
LIMITS = Limits(
    windows={
        "generate": (RateWindow(20, 60.0),),
        "status": (RateWindow(60, 60.0),),
        "list": (RateWindow(30, 60.0),),
    },
    max_in_flight=4,
)
SYNC_GENERATION = Timing(httpx.Timeout(connect=10.0, read=300.0, write=60.0, pool=30.0), deadline=360.0)
"""The image calls answer only when the image is done (tens of seconds): a long read timeout."""

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
    "that returns URLs, e.g. FASHN; or set CALLSHEET_PUBLIC_URL so that callsheet hands Auto Toon a "
    "signed link to the file."
)

QUERIES = (
    QuerySpec(
        name="models",
        title="Auto Toon saved models",
        description=(
            "The fashion models saved in the Auto Toon account (id, name, reference image): an id is "
            "autotoon_editorial's model_id. Costs nothing."
        ),
        inputs=ModelsQuery,
    ),
)


class AutoToon(Provider):
    name = "autotoon"
    title = "Auto Toon"
    image_urls_only = True
    badge = ("AT", "#7c3aed")
    key_var = "AUTOTOON_API_KEY"
    url_var = "AUTOTOON_BASE_URL"
    default_base_url = "https://auto-toon.com"
    fixed_operations = tuple(OPERATIONS.values())
    fixed_queries = QUERIES
    emulator_path = "server.providers.autotoon.emulator:AutoToonEmulator"

    def __init__(self, settings: ProviderSettings) -> None:
        super().__init__(settings)
        self._credits: float | None = None
        """The latest `creditsRemaining` Auto Toon reported (it has no balance endpoint)."""
        self._credits_at: datetime | None = None
        self._baseline: float | None = None
        """The balance right now, when known: None after a charged call that did not report it
        (variations, video), until the next answer that does."""
        self._calls = 0
        """Bumped when a generation call starts and when it ends: a call that sees no other bump ran
        alone, so the drop in `creditsRemaining` across it is its own cost."""

    def limits(self) -> Limits:
        return LIMITS

    def auth_headers(self, key: str) -> dict[str, str]:
        return {"x-api-key": key}

    def describe_error(self, response: httpx.Response) -> ErrorText:
        """The documented error body `{"error", "code"}`; a 402 adds `balance`, `required`, `needsTopUp`."""
        body = error_body(response)
        if isinstance(body, str):
            return ErrorText(body)
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
        return ErrorText(message, str(code) if code else None)

    async def prepare(self, operation: str, args: dict[str, Any], images: ImageResolver) -> Prepared:
        """The arguments with every image as the URL Auto Toon will fetch, in its JSON shape."""
        prepared = await super().prepare(operation, args, images)
        return dataclasses.replace(
            prepared, payload=nest(prepared.payload), key_material=nest(prepared.key_material)
        )

    def send_image(self, image: ImageInput) -> str:
        """The URL Auto Toon can fetch: a checked public URL, or an earlier output's provider URL."""
        for url in (image.url, image.link, image.source_url):  # a signed link outlives a provider's URL
            if url:
                return url
        if image.origin.lower().startswith("data:"):
            what = f"{image.origin} is a data URI"
        elif image.origin.startswith("callsheet:"):
            what = f"{image.origin} is a local file (its provider returned it inline, with no URL)"
        else:
            what = f"{image.origin} is a local file"
        raise InputError(image.field, f"Auto Toon takes image URLs only; {what}.", URL_ONLY_FIX)

    async def submit(
        self, operation: str, payload: dict[str, Any], *, webhook_url: str | None = None
    ) -> Submission:
        spec = self.operation(operation)
        # Synchronous calls answer when the image is done: they get the long read timeout.
        timing = SYNC_GENERATION if spec.answers_at_once else HTTP
        self._calls += 1
        started, before = self._calls, self._baseline
        try:
            response = await self.http.request("generate", "POST", spec.route, json=payload, timing=timing)
        finally:
            self._calls += 1
        body = _json(response)
        remaining = self._after_charge(body.get("creditsRemaining"))
        used = CREDITS[operation]
        alone = self._calls == started + 1
        if alone and before is not None and remaining is not None and before - remaining >= 0:
            used = before - remaining
        if not spec.answers_at_once:
            video_id = body.get("id")
            if not isinstance(video_id, str) or not video_id:
                raise BadResponse(
                    f"Auto Toon's answer to {spec.route} carried no job id.", provider=self.name
                )
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
