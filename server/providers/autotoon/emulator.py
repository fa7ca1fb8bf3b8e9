"""An in-process emulation of Auto Toon's Fashion Editorial API, for sandbox mode and for tests.

It serves what `provider-docs/autotoon-editorial-api.txt` documents, under the same paths, so the
real Auto Toon adapter runs against it unchanged (in process through `httpx.ASGITransport`, or
under uvicorn); the base URL is `http://<host>`:

    POST /api/fashion-editorial/generate            -> {imageUrl, creditsRemaining, prompt, fallbackUsed}
    POST /api/fashion-editorial/variations          -> {success, variations: [url, url, url]}
    POST /api/fashion-editorial/relight             -> {imageUrl, creditsRemaining}
    POST /api/fashion-editorial/upscale             -> {imageUrl, creditsRemaining}
    POST /api/fashion-editorial/video/generate      -> {id, status: "processing"}
    GET  /api/fashion-editorial/video/status/{id}   -> {id, status, videoUrl, createdAt}
    GET  /api/fashion-editorial/videos              -> {videos: [...]}
    GET  /api/fashion-model/list                    -> {models: [{id, name, imageUrl}]}
    GET  /storage/{name}                            the labelled placeholder files (no key, like a bucket)

Every `/api/...` call needs an `x-api-key` header (any non-empty key when the emulator was built
without one). Errors use the documented shape `{"error", "code"}`: 400 BAD_REQUEST for missing or
invalid parameters (including an image given as anything but an http(s) URL: Auto Toon takes URLs
only), 401 UNAUTHORIZED, 402 INSUFFICIENT_CREDITS with `balance`, `required` and `needsTopUp`,
429 RATE_LIMITED with a `Retry-After` (fractional seconds) past the configured rates, and 500
INTERNAL_ERROR through `AutoToonFaults`. Unknown body fields are refused with 400: stricter than
a typical JSON API, on purpose, so a wrong camelCase name in the adapter shows up in tests.

The image calls are synchronous, as documented: the answer comes when the image is "done", after
a realistic 8-60 s (by endpoint) times `time_scale`. Video is a job whose state is computed from
the clock at each request (`processing` -> `completed` | `failed`), so nothing runs in the
background. Credits are charged when a call is accepted and `creditsRemaining` reports the balance
after it; the document says nothing about refunds, so none are made.

Where the document is silent the emulator chooses, and says so here: the prices and durations (the
adapter's estimates, `operations.CREDITS` and `operations.DURATIONS`), the rate limits
(`DEFAULT_RATES`, above the adapter's own `LIMITS` so that callsheet's limiter binds first), the
shape of `/api/fashion-model/list` (three saved models), an `error` text on a failed video, and
404 NOT_FOUND for an unknown video id.

With a `state_dir` (sandbox mode passes `<CALLSHEET_HOME>/sandbox`), the balance, the videos and
the stored files are kept in `autotoon.json` there, so a restarted server still finds its video
jobs and can still download its outputs; times are then wall-clock. The state is read when the
emulator starts and written after every change: one process owns it at a time (a deliberate
simplification; Auto Toon offers no cancel, so the command line never needs to change it).
Finished entries are forgotten after an hour (`KEEP_FINISHED`).
"""

from __future__ import annotations

import json
import random
import re
import uuid
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

import anyio
import anyio.to_thread
import httpx
from pydantic import BaseModel
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from server.providers.autotoon.operations import CREDITS, DURATIONS
from server.sandbox.kit import (
    DroppedConnection,
    Emulator,
    Refusal,
    SlidingWindow,
    fit,
    next_fault,
    public_base,
    retry_after,
)

# --- The documented contract, and what the emulator chooses where the document is silent ---------

API = "/api/fashion-editorial"
PRICES: dict[str, int] = {operation: round(price) for operation, price in CREDITS.items()}
"""Not published by Auto Toon (its 402 example asks for 3): the adapter's estimates, from one table."""
DEFAULT_RATES: dict[str, tuple[int, float]] = {
    "generate": (30, 60.0),
    "status": (120, 60.0),
    "list": (60, 60.0),
}
"""Requests per window (seconds, before time scaling), by kind: every POST is "generate", the video
status "status", the two listings "list". Stand-ins: the document publishes no numbers."""

AI_MODELS = (
    "gemini-3-pro-image-preview",
    "gemini-3.1-flash-image-preview",
    "bytedance/seedream-4.5",
    "bytedance/seedream-5-lite",
)
LIGHTING = (
    "golden-hour",
    "blue-hour",
    "studio-soft",
    "dramatic",
    "neon",
    "natural-window",
    "backlit",
    "moonlight",
)
VARIATION_STYLES = ("fashion-editorial", "surreal-product-hero")
VARIATION_MODES = ("user-model", "scratch-model")
SAVED_MODELS: tuple[tuple[str, str], ...] = (
    ("clx9abc123def456", "Ava (editorial, 20s)"),
    ("clx9xyz789ghi012", "Noah (street, 30s)"),
    ("clx9mno345pqr678", "Mei (commercial, 20s)"),
)
"""The account's saved models (ids from the document's examples)."""
VARIATION_COUNT = 3
MAX_UPSCALE_SIDE = 2048
"""Upscaled placeholders are capped at this long side so that they stay cheap to draw."""

PROCESSING, COMPLETED, FAILED = "processing", "completed", "failed"

STATE_FILE = "autotoon.json"
KEEP_FINISHED = 3600.0
"""Seconds (unscaled) a finished video or a stored file stays available."""
MAX_KEPT = 500
_KEEP_STATS = 1000
"""Test counters keep this many recent entries, so a long sandbox session does not grow them."""

_CODES = {400: "BAD_REQUEST", 401: "UNAUTHORIZED", 402: "INSUFFICIENT_CREDITS", 404: "NOT_FOUND"}


# --- State -------------------------------------------------------------------------------------


@dataclass
class AutoToonFaults:
    """Knobs tests turn to provoke the documented failures."""

    generate_errors: list[int] = field(default_factory=list)
    """HTTP statuses to answer the next POST calls with (any endpoint), in order, after the key check."""
    status_errors: list[int] = field(default_factory=list)
    """The same for the video status endpoint."""
    list_errors: list[int] = field(default_factory=list)
    """The same for the two listings."""
    credits: int = 1000
    """The account balance, charged when a call is accepted."""
    video_failures: int = 0
    """The next N videos end `failed`."""
    generate_drop_after_accept: int = 0
    """The next N image calls are charged and generated, then the connection drops before the answer."""


@dataclass
class StoredFile:
    """A generated file under /storage; its bytes are drawn again from `seed` on demand."""

    name: str
    kind: str  # "image" or "video"
    width: int
    height: int
    label: list[str]
    seed: int
    created: float


@dataclass
class Video:
    id: str
    image_url: str
    created: float
    created_at: str
    duration: float
    """Scaled seconds from submission to the end."""
    file: str
    fails: bool = False

    def state(self, now: float) -> str:
        if now - self.created < self.duration:
            return PROCESSING
        return FAILED if self.fails else COMPLETED


class _SavedState(BaseModel):
    """The content of `<state_dir>/autotoon.json`."""

    version: Literal[1] = 1
    credits: int
    next_number: int
    videos: list[Video]
    files: list[StoredFile]


@dataclass
class AutoToonStats:
    """Counters for tests: what the client asked, and what the emulator answered."""

    calls: dict[str, int] = field(default_factory=dict)
    """By endpoint: editorial, variations, relight, upscale, video, video_status, videos, models, storage."""
    requests: deque[tuple[str, dict[str, Any]]] = field(default_factory=lambda: deque(maxlen=_KEEP_STATS))
    """(endpoint, JSON body) of the latest accepted generation calls."""
    arrivals: dict[str, deque[float]] = field(default_factory=dict)
    """Emulator clock times of the latest requests admitted past the rate limit, by kind."""
    sent_429: int = 0
    in_flight: int = 0
    max_in_flight: int = 0
    videos: dict[str, Video] = field(default_factory=dict)

    def generation_calls(self) -> int:
        return sum(self.calls.get(name, 0) for name in PRICES)


Handler = Callable[[Request], Awaitable[Response]]


# --- The emulator ------------------------------------------------------------------------------


class AutoToonEmulator(Emulator):
    title = "Auto Toon"
    state_file = STATE_FILE

    def __init__(
        self,
        *,
        faults: AutoToonFaults | None = None,
        rates: dict[str, tuple[int, float]] | None = None,
        sync_seconds: tuple[float, float] | None = None,
        **common: Any,
    ) -> None:
        """`rates` overrides `DEFAULT_RATES` (windows are scaled by `time_scale`); `sync_seconds`
        overrides every image call's duration range (unscaled seconds). With `state_dir`, the
        balance, videos and files are loaded from and saved to `STATE_FILE` there (the saved balance
        wins over `faults.credits`); see `Emulator` for the rest.
        """
        super().__init__(**common)
        self.faults = faults if faults is not None else AutoToonFaults()
        self.stats = AutoToonStats()
        self.sync_seconds = sync_seconds
        self._files: dict[str, StoredFile] = {}
        self._windows = {
            kind: SlidingWindow(limit, seconds * self.time_scale)
            for kind, (limit, seconds) in {**DEFAULT_RATES, **(rates or {})}.items()
        }
        self._load()
        self.app = Starlette(
            routes=[
                Route(f"{API}/generate", self._sync("editorial"), methods=["POST"]),
                Route(f"{API}/variations", self._sync("variations"), methods=["POST"]),
                Route(f"{API}/relight", self._sync("relight"), methods=["POST"]),
                Route(f"{API}/upscale", self._sync("upscale"), methods=["POST"]),
                Route(f"{API}/video/generate", self._video_generate, methods=["POST"]),
                Route(f"{API}/video/status/{{id}}", self._video_status, methods=["GET"]),
                Route(f"{API}/videos", self._videos, methods=["GET"]),
                Route("/api/fashion-model/list", self._models, methods=["GET"]),
                Route("/storage/{name}", self._storage, methods=["GET"]),
            ]
        )

    @property
    def credits(self) -> int:
        return self.faults.credits

    # --- endpoints ---

    def _sync(self, operation: str) -> Handler:
        async def handler(request: Request) -> Response:
            return await self._generate(request, operation)

        return handler

    async def _generate(self, request: Request, operation: str) -> Response:
        """One synchronous image call: check, charge, "generate" for a while, answer with URLs."""
        self._count(operation)
        now = self.clock()
        try:
            body = await self._accept(request, operation, now)
        except Refusal as exc:
            return self._error(exc)
        number = self.number()
        rng = random.Random(f"{self.seed}:{number}")
        low, high = self.sync_seconds or DURATIONS[operation]
        duration = self.seconds(rng.uniform(low, high))
        names = [self._store(operation, body, number, n, now) for n in range(_output_count(operation))]
        self._save(now)
        self.stats.in_flight += 1
        self.stats.max_in_flight = max(self.stats.max_in_flight, self.stats.in_flight)
        try:
            await anyio.sleep(duration)
        finally:
            self.stats.in_flight -= 1
        if self.faults.generate_drop_after_accept > 0:
            self.faults.generate_drop_after_accept -= 1
            return DroppedConnection()
        base = public_base(request)
        urls = [f"{base}/storage/{name}" for name in names]
        if operation == "variations":
            return JSONResponse({"success": True, "variations": urls})
        answer: dict[str, Any] = {"imageUrl": urls[0], "creditsRemaining": self.faults.credits}
        if operation == "editorial":
            answer["prompt"] = _editorial_prompt(body)
            answer["fallbackUsed"] = False
        return JSONResponse(answer)

    async def _video_generate(self, request: Request) -> Response:
        self._count("video")
        now = self.clock()
        try:
            body = await self._accept(request, "video", now)
        except Refusal as exc:
            return self._error(exc)
        number = self.number()
        rng = random.Random(f"{self.seed}:{number}")
        fails = self.faults.video_failures > 0
        if fails:
            self.faults.video_failures -= 1
        video_id = f"vid_{uuid.uuid4().hex[:16]}"
        name = self._store("video", body, number, 0, now)
        video = Video(
            id=video_id,
            image_url=str(body["imageUrl"]),
            created=now,
            created_at=_iso_now(),
            duration=self.seconds(rng.uniform(*DURATIONS["video"])),
            file=name,
            fails=fails,
        )
        self.stats.videos[video_id] = video
        self._save(now)
        return JSONResponse({"id": video_id, "status": PROCESSING})

    async def _video_status(self, request: Request) -> Response:
        self._count("video_status")
        now = self.clock()
        try:
            self._check("status", request, now, self.faults.status_errors)
        except Refusal as exc:
            return self._error(exc)
        video = self.stats.videos.get(request.path_params["id"])
        if video is None:
            return self._error(Refusal(404, f"Video {request.path_params['id']} not found."))
        return JSONResponse(self._video_json(video, now, public_base(request)))

    async def _videos(self, request: Request) -> Response:
        self._count("videos")
        now = self.clock()
        try:
            self._check("list", request, now, self.faults.list_errors)
        except Refusal as exc:
            return self._error(exc)
        base = public_base(request)
        newest_first = sorted(self.stats.videos.values(), key=lambda v: v.created, reverse=True)
        return JSONResponse({"videos": [self._video_json(v, now, base) for v in newest_first]})

    async def _models(self, request: Request) -> Response:
        self._count("models")
        now = self.clock()
        try:
            self._check("list", request, now, self.faults.list_errors)
        except Refusal as exc:
            return self._error(exc)
        base = public_base(request)
        models = [
            {"id": model_id, "name": name, "imageUrl": f"{base}/storage/model_{model_id}.png"}
            for model_id, name in SAVED_MODELS
        ]
        return JSONResponse({"models": models})

    async def _storage(self, request: Request) -> Response:
        self._count("storage")
        name = request.path_params["name"]
        stored = self._files.get(name) or _saved_model_file(name)
        if stored is None:
            return Response("Not Found", status_code=404, media_type="text/plain")
        data, mime_type = await self._render(stored)
        return Response(data, media_type=mime_type, headers={"cache-control": "public, max-age=86400"})

    # --- request handling ---

    async def _accept(self, request: Request, operation: str, now: float) -> dict[str, Any]:
        """Key, faults, rate, body, balance: what every POST goes through before it is charged."""
        self._check("generate", request, now, self.faults.generate_errors)
        body = _json_body(await request.body())
        _VALIDATORS[operation](body)
        cost = PRICES[operation]
        if cost > self.faults.credits:
            raise Refusal(
                402,
                "Insufficient credits",
                extra={"balance": self.faults.credits, "required": cost, "needsTopUp": True},
            )
        self.faults.credits -= cost
        self.stats.requests.append((operation, body))
        return body

    def _check(self, kind: str, request: Request, now: float, injected: list[int]) -> None:
        self.check_key(request, header="x-api-key", message="Invalid or missing API key.")
        status = next_fault(injected)
        if status is not None:
            raise self._injected(status)
        wait = self._windows[kind].admit(now)
        if wait is not None:
            message = "Too many requests. Retry after the indicated delay."
            raise Refusal(429, message, headers=retry_after(wait))
        self.stats.arrivals.setdefault(kind, deque(maxlen=_KEEP_STATS)).append(now)

    def _injected(self, status: int) -> Refusal:
        message = f"Injected sandbox fault: HTTP {status}."
        if status == 429:
            return Refusal(429, message, headers=retry_after(self.time_scale))
        if status == 402:
            return Refusal(
                402, "Insufficient credits", extra={"balance": 0, "required": 3, "needsTopUp": True}
            )
        return Refusal(status, message)

    def _error(self, exc: Refusal) -> JSONResponse:
        if exc.status == 429:
            self.stats.sent_429 += 1
            code = "RATE_LIMITED"
        else:
            code = _CODES.get(exc.status, "INTERNAL_ERROR" if exc.status >= 500 else "BAD_REQUEST")

        body = {"error": exc.message, "code": code, **exc.extra}
        return JSONResponse(body, status_code=exc.status, headers=exc.headers)

    def _count(self, endpoint: str) -> None:
        self.stats.calls[endpoint] = self.stats.calls.get(endpoint, 0) + 1

    def _store(self, operation: str, body: dict[str, Any], number: int, n: int, now: float) -> str:
        """Register output `n` of a call under /storage and return its file name."""
        kind = "video" if operation == "video" else "image"
        width, height, detail = _output_size(operation, body)
        total = _output_count(operation)
        label = [f"autotoon · {operation}", f"output {n + 1} of {total}" if total > 1 else "", detail]
        ext = "mp4" if kind == "video" else "png"
        name = f"{operation}_{uuid.uuid4().hex[:12]}.{ext}"
        seed = self.seed * 1_000_003 + number * 16 + n
        self._files[name] = StoredFile(name, kind, width, height, [s for s in label if s], seed, now)
        return name

    def _video_json(self, video: Video, now: float, base: str) -> dict[str, Any]:
        state = video.state(now)
        answer: dict[str, Any] = {
            "id": video.id,
            "status": state,
            "videoUrl": f"{base}/storage/{video.file}" if state == COMPLETED else None,
            "createdAt": video.created_at,
        }
        if state == FAILED:
            answer["error"] = "Video generation failed: the source image could not be animated."
        return answer

    async def _render(self, stored: StoredFile) -> tuple[bytes, str]:
        kind = "video" if stored.kind == "video" else "png"
        return await self.render(stored.name, kind, stored.width, stored.height, stored.label, stored.seed)

    # --- persistence ---

    def _load(self) -> None:
        saved = self.load(_SavedState)
        if saved is None:
            return
        self.faults.credits = saved.credits
        self.next_number = saved.next_number
        self.stats.videos = {v.id: v for v in saved.videos}
        self._files = {f.name: f for f in saved.files}

    def _save(self, now: float) -> None:
        """Forget old entries, then (with a state folder) replace the state file atomically."""
        old = now - KEEP_FINISHED
        videos = self.stats.videos
        for video_id in [i for i, v in videos.items() if v.state(now) != PROCESSING and v.created < old]:
            del videos[video_id]
        keep = {v.file for v in videos.values()}
        for name in [n for n, f in self._files.items() if f.created < old and n not in keep]:
            del self._files[name]
        excess = len(self._files) - MAX_KEPT
        if excess > 0:
            oldest = sorted((f for f in self._files.values() if f.name not in keep), key=lambda f: f.created)
            for stored in oldest[:excess]:
                del self._files[stored.name]
        self.save(
            _SavedState(
                credits=self.faults.credits,
                next_number=self.next_number,
                videos=list(videos.values()),
                files=list(self._files.values()),
            )
        )


# --- Request validation (400 BAD_REQUEST), one function per endpoint ----------------------------


def _json_body(raw: bytes) -> dict[str, Any]:
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise Refusal(400, "The request body is not valid JSON.") from None
    if not isinstance(body, dict):
        raise Refusal(400, "The request body must be a JSON object.")
    return body


def _only(body: dict[str, Any], allowed: set[str], where: str = "") -> None:
    for key in body:
        if key not in allowed:
            raise Refusal(400, f"Unknown parameter '{where}{key}'.")


def _is_url(value: object) -> bool:
    if not isinstance(value, str) or not value.startswith(("http://", "https://")):
        return False
    try:
        return bool(httpx.URL(value).host)
    except httpx.InvalidURL:
        return False


def _url(body: dict[str, Any], key: str, *, required: bool, where: str = "") -> None:
    if key not in body or body[key] is None:
        if required:
            raise Refusal(400, f"Missing required parameter '{where}{key}'.")
        return
    if not _is_url(body[key]):
        raise Refusal(
            400,
            f"Invalid parameter '{where}{key}': expected an http(s) image URL (uploads are not accepted).",
        )


def _urls(body: dict[str, Any], key: str, *, required: bool, where: str = "") -> None:
    value = body.get(key)
    if value is None:
        if required:
            raise Refusal(400, f"Missing required parameter '{where}{key}'.")
        return
    if not isinstance(value, list) or not value:
        raise Refusal(400, f"Invalid parameter '{where}{key}': expected a non-empty array of image URLs.")
    for n, item in enumerate(value):
        if not _is_url(item):
            raise Refusal(
                400, f"Invalid parameter '{where}{key}[{n}]': expected an http(s) image URL (no uploads)."
            )


def _string(body: dict[str, Any], key: str, *, required: bool = False, where: str = "") -> None:
    value = body.get(key)
    if value is None:
        if required:
            raise Refusal(400, f"Missing required parameter '{where}{key}'.")
        return
    if not isinstance(value, str) or not value.strip():
        raise Refusal(400, f"Invalid parameter '{where}{key}': expected a non-empty string.")


def _choice(body: dict[str, Any], key: str, allowed: tuple[str, ...], where: str = "") -> None:
    if key in body and body[key] not in allowed:
        raise Refusal(400, f"Invalid parameter '{where}{key}': must be one of {', '.join(allowed)}.")


def _object(body: dict[str, Any], key: str) -> dict[str, Any] | None:
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, dict):
        raise Refusal(400, f"Invalid parameter '{key}': expected an object.")
    return value


def _check_editorial(body: dict[str, Any]) -> None:
    _only(
        body,
        {
            "modelId",
            "models",
            "clothingImageUrls",
            "aiModel",
            "makeupAnalysis",
            "hairstyleAnalysis",
            "styleData",
            "backgroundData",
            "promptModifier",
            "brandAnalysis",
        },
    )
    models = body.get("models")
    if body.get("modelId") is None and models is None:
        raise Refusal(400, "Either modelId or models[] is required.")
    if body.get("modelId") is not None:
        _string(body, "modelId")
        if body["modelId"] not in {model_id for model_id, _ in SAVED_MODELS}:
            raise Refusal(400, f"Invalid parameter 'modelId': no saved model {body['modelId']!r}.")
    if models is not None:
        if not isinstance(models, list) or not models:
            raise Refusal(400, "Invalid parameter 'models': expected a non-empty array.")
        for n, model in enumerate(models):
            where = f"models[{n}]."
            if not isinstance(model, dict):
                raise Refusal(400, f"Invalid parameter 'models[{n}]': expected an object.")
            _only(model, {"modelId", "clothingImageUrls", "imageUrl", "prompt", "characterSheetUrl"}, where)
            _string(model, "modelId", required=True, where=where)
            _urls(model, "clothingImageUrls", required=True, where=where)
            _url(model, "imageUrl", required=False, where=where)
            _url(model, "characterSheetUrl", required=False, where=where)
            _string(model, "prompt", where=where)
    _urls(body, "clothingImageUrls", required=models is None)
    _choice(body, "aiModel", AI_MODELS)
    for key in ("makeupAnalysis", "hairstyleAnalysis", "promptModifier", "brandAnalysis"):
        _string(body, key)
    for key, inner in (("styleData", "style"), ("backgroundData", "background")):
        value = _object(body, key)
        if value is not None:
            _only(value, {inner}, f"{key}.")
            _string(value, inner, required=True, where=f"{key}.")


def _check_variations(body: dict[str, Any]) -> None:
    _only(body, {"baseImageUrl", "styleData", "modelImageUrls", "clothingImageUrls", "aspectRatio"})
    _url(body, "baseImageUrl", required=True)
    style = _object(body, "styleData")
    if style is not None:
        _only(style, {"style", "mode"}, "styleData.")
        _choice(style, "style", VARIATION_STYLES, "styleData.")
        _choice(style, "mode", VARIATION_MODES, "styleData.")
    _urls(body, "modelImageUrls", required=False)
    _urls(body, "clothingImageUrls", required=False)
    if "aspectRatio" in body and _ratio(body["aspectRatio"]) is None:
        raise Refusal(400, "Invalid parameter 'aspectRatio': expected a ratio such as '4:5'.")


def _check_relight(body: dict[str, Any]) -> None:
    _only(body, {"baseImageUrl", "lighting", "lightPosition", "lightColor", "aiModel"})
    _url(body, "baseImageUrl", required=True)
    if body.get("lighting") is None and body.get("lightPosition") is None:
        raise Refusal(400, "Either lighting or lightPosition is required.")
    _choice(body, "lighting", LIGHTING)
    for key in ("lightPosition", "lightColor", "aiModel"):
        _string(body, key)


def _check_upscale(body: dict[str, Any]) -> None:
    _only(body, {"imageUrl", "scale"})
    _url(body, "imageUrl", required=True)
    scale = body.get("scale")
    if scale is not None and (
        isinstance(scale, bool) or not isinstance(scale, int | float) or not 1 < scale <= 8
    ):
        raise Refusal(400, "Invalid parameter 'scale': expected a number above 1 and at most 8.")


def _check_video(body: dict[str, Any]) -> None:
    _only(body, {"imageUrl"})
    _url(body, "imageUrl", required=True)


_VALIDATORS: dict[str, Callable[[dict[str, Any]], None]] = {
    "editorial": _check_editorial,
    "variations": _check_variations,
    "relight": _check_relight,
    "upscale": _check_upscale,
    "video": _check_video,
}


# --- Outputs -----------------------------------------------------------------------------------


def _output_count(operation: str) -> int:
    return VARIATION_COUNT if operation == "variations" else 1


def _output_size(operation: str, body: dict[str, Any]) -> tuple[int, int, str]:
    """Width, height and a label line for an output of this call."""
    if operation == "video":
        width, height = fit(256, (2, 3))
        return width, height, f"{width}x{height} clip"
    if operation == "variations":
        ratio = _ratio(body.get("aspectRatio")) or (4, 5)
        width, height = fit(1024, ratio)
        style = (body.get("styleData") or {}).get("style", "fashion-editorial")
        return width, height, f"{style} {width}x{height}"
    if operation == "upscale":
        scale = float(body.get("scale") or 2)
        width, height = fit(min(MAX_UPSCALE_SIDE, round(1024 * scale)), (2, 3))
        return width, height, f"{scale:g}x upscale, {width}x{height}"
    if operation == "relight":
        width, height = fit(1024, (2, 3))
        light = body.get("lighting") or body.get("lightPosition")
        return width, height, f"light: {str(light)[:40]}"
    width, height = fit(1024, (2, 3))
    style = (body.get("styleData") or {}).get("style") or body.get("aiModel") or AI_MODELS[0]
    return width, height, f"{str(style)[:40]} {width}x{height}"


def _saved_model_file(name: str) -> StoredFile | None:
    match = re.fullmatch(r"model_(\w+)\.png", name)
    for n, (model_id, model_name) in enumerate(SAVED_MODELS):
        if match is not None and match.group(1) == model_id:
            return StoredFile(name, "image", 512, 768, ["autotoon · saved model", model_name], 7919 + n, 0.0)
    return None


def _editorial_prompt(body: dict[str, Any]) -> str:
    items = len(body.get("clothingImageUrls") or []) or sum(
        len(m.get("clothingImageUrls") or []) for m in body.get("models") or []
    )
    style = (body.get("styleData") or {}).get("style", "editorial")
    background = (body.get("backgroundData") or {}).get("background", "studio")
    return (
        f"A fashion editorial photo of a model wearing {items} item(s), "
        f"{style} style, {background} background."
    )


def _ratio(value: object) -> tuple[int, int] | None:
    match = re.fullmatch(r"(\d{1,3}):(\d{1,3})", value) if isinstance(value, str) else None
    if match is None or int(match.group(1)) == 0 or int(match.group(2)) == 0:
        return None
    return int(match.group(1)), int(match.group(2))


def _iso_now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
