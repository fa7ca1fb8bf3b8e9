"""An in-process emulation of neo-fashion.ai's HTTP API, for sandbox mode and for tests.

It serves what `provider-docs/neofashion-api.txt` documents under the same paths, so the real
adapter runs against it unchanged (base URL `http://<host>/api/v1`):

    POST /api/v1/generate/image      one product photo      (sync when short, else async)
    POST /api/v1/generate/video      one short video        (async)
    POST /api/v1/generate/bulk       a batch of images      (async: one generation per item)
    POST /api/v1/sketch-to-photo     sketch -> photo        (sync when short, else async)
    GET  /api/v1/generations         paginated: ?page=&limit=&status=
    GET  /api/v1/generations/{id}    queued -> processing -> completed | failed
    GET  /api/v1/credits/balance
    GET  /api/v1/personas            fixtures
    GET  /api/v1/models              fixtures
    GET  /files/{id}/{name}          the labelled placeholder outputs (no auth, no rate limit, like storage)

Every answer is the documented envelope `{data, meta, error}` with `meta.request_id`; generation
answers carry `meta.credits_used` and `meta.credits_remaining`. Every answer also carries
`X-RateLimit-Limit`, `X-RateLimit-Remaining` and `X-RateLimit-Reset` for the workspace's rolling
window (plan rate per 60 s, times `time_scale`); past it, 429 RATE_LIMITED with `Retry-After`.
`X-RateLimit-Reset` is the number of seconds (decimal) until the oldest request leaves the window.

Credits are debited before the "AI provider" runs and refunded when it fails (PROVIDER_ERROR);
the balance is derived from the generations, so a refund can never count twice. A generation
whose duration (drawn per type, times `time_scale`) is at most `sync_seconds` (times `time_scale`)
is answered synchronously: the POST waits for it and returns `status: completed` with its
`output_url` (or 502 PROVIDER_ERROR). Longer ones answer at once with `status: queued` and are
polled. State is computed from the clock at each request: nothing runs in the background.

Emulator assumptions where the document is silent: the request bodies (see the adapter's
`REQUEST_FIELDS`), a 400 `VALIDATION_ERROR` for bad bodies, the bulk answer
`{id, status, total, generations: [{id, status}]}`, the `/generations` page meta
`{page, limit, total, has_more}`, and the balance answer `{balance, plan}`.

A generation fails at the AI provider on purpose when a string input contains
`[sandbox:fail]`, or through `NeoFashionFaults.provider_errors`; the other knobs provoke 401,
403, 404, 5xx, 429 and unreadable answers. With a `state_dir`, generations and the balance are kept
in `neofashion.json` there so a restarted server still finds the generations it submitted; times
are then wall-clock.
"""

from __future__ import annotations

import json
import random
import re
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

import anyio
import anyio.to_thread
from pydantic import BaseModel
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from server.providers.neofashion.operations import DURATIONS, credits
from server.sandbox.kit import Emulator, Refusal, SlidingWindow, next_fault, public_base, retry_after

# --- The documented contract, and the emulator's reading of what it leaves open -----------------

PREFIX = "/api/v1"
PLAN_RATES = {"starter": 60, "pro": 300}
"""Requests per rolling 60 s per workspace (Enterprise: custom, pass `rate_per_minute`)."""
WINDOW_SECONDS = 60.0

ERROR_CODES: dict[int, str] = {
    400: "VALIDATION_ERROR",  # not documented: the emulator's name for a bad request body
    401: "UNAUTHORIZED",
    402: "INSUFFICIENT_CREDITS",
    403: "FORBIDDEN",
    404: "NOT_FOUND",
    429: "RATE_LIMITED",
    500: "INTERNAL_ERROR",  # not documented
    502: "PROVIDER_ERROR",
    503: "SERVICE_UNAVAILABLE",  # not documented
}
ERROR_MESSAGES: dict[str, str] = {
    "UNAUTHORIZED": "Missing or invalid API key / JWT.",
    "FORBIDDEN": "Feature not available on current plan.",
    "NOT_FOUND": "Generation or resource does not exist in this workspace.",
    "RATE_LIMITED": "Request rate exceeds plan limit.",
    "PROVIDER_ERROR": "AI provider returned an error; credits refunded automatically.",
    "INTERNAL_ERROR": "Internal server error.",
    "SERVICE_UNAVAILABLE": "Service temporarily unavailable.",
}


BODY_FIELDS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    # kind: (required fields, optional fields)
    "image": (("prompt",), ("image_url", "persona_id", "model_id", "aspect_ratio")),
    "video": (("prompt",), ("image_url", "persona_id", "model_id", "aspect_ratio", "duration")),
    "sketch_to_photo": (("sketch_url",), ("prompt", "persona_id", "model_id", "aspect_ratio")),
}
URL_FIELDS = ("image_url", "sketch_url")
ASPECT_RATIOS = ("1:1", "4:5", "3:4", "2:3", "9:16", "16:9", "4:3", "3:2")
VIDEO_ASPECT_RATIOS = ("9:16", "16:9", "1:1", "4:5")
STATUSES = ("queued", "processing", "completed", "failed")
MAX_BULK_ITEMS = 50

SYNC_SECONDS = 12.0
"""Generations expected to take at most this long (before scaling) are answered synchronously."""
_QUEUED_SHARE = 0.1
_FAIL_SHARE = 0.5
_EPSILON = 1e-6

IMAGE_LONG_SIDE = 1024
VIDEO_LONG_SIDE = 256

FAIL_MARKER = "[sandbox:fail]"
STATE_FILE = "neofashion.json"
MAX_KEPT = 1000
"""At most this many generations are kept (and listed); the oldest finished ones go first."""

PERSONAS: list[dict[str, Any]] = [
    {
        "id": "per_ava",
        "name": "Ava",
        "description": "Early 30s, shoulder-length auburn hair, freckles; relaxed editorial presence.",
        "gender": "female",
        "age_range": "28-34",
    },
    {
        "id": "per_kenji",
        "name": "Kenji",
        "description": "Mid 20s, short black hair, lean build; streetwear and tailoring.",
        "gender": "male",
        "age_range": "22-28",
    },
    {
        "id": "per_amara",
        "name": "Amara",
        "description": "Late 20s, close-cropped natural hair, tall; high-fashion runway look.",
        "gender": "female",
        "age_range": "25-30",
    },
]
MODELS: list[dict[str, Any]] = [
    {
        "id": "mdl_spring_capsule",
        "name": "Spring capsule",
        "status": "ready",
        "description": "Trained on 40 product photos of the spring capsule collection.",
    },
    {
        "id": "mdl_denim_fit",
        "name": "Denim fit",
        "status": "training",
        "description": "Trained on 25 on-model denim photos; about 20 minutes left.",
    },
]

QUEUED, PROCESSING, COMPLETED, FAILED = STATUSES


# --- State --------------------------------------------------------------------------------------


@dataclass
class NeoFashionFaults:
    """Knobs tests turn to provoke the failures the document describes."""

    credits: int = 10_000
    """The workspace's starting balance (a saved state's balance wins over it)."""
    provider_errors: int = 0
    """The next N generations fail at the AI provider: PROVIDER_ERROR, credits refunded."""
    submit_errors: list[int] = field(default_factory=list)
    """HTTP statuses to answer the next generation POSTs with, in order (after auth and rate limit)."""
    read_errors: list[int] = field(default_factory=list)
    """The same for `GET /generations/{id}`."""
    forbidden: set[str] = field(default_factory=set)
    """Operations the plan lacks (image, video, bulk, sketch_to_photo): 403 FORBIDDEN."""
    submit_malformed: int = 0
    """The next N accepted generation POSTs create (and charge) the generation, then answer HTML."""


@dataclass
class Generation:
    id: str
    number: int
    kind: str
    """image, video or sketch_to_photo (bulk items are images)."""
    inputs: dict[str, Any]
    created: float
    duration: float
    """Scaled seconds from creation to completion."""
    cost: int
    created_wall: float
    """Wall-clock creation time, for `created_at` whatever the emulator's clock is."""
    fails: bool = False
    bulk_id: str | None = None

    def state(self, now: float) -> str:
        share = (now - self.created + _EPSILON) / self.duration
        if self.fails and share >= _FAIL_SHARE:
            return FAILED
        if share >= 1.0:
            return COMPLETED
        return QUEUED if share < _QUEUED_SHARE else PROCESSING

    def ends_at(self) -> float:
        return self.created + self.duration * (_FAIL_SHARE if self.fails else 1.0)

    def charged(self, now: float) -> int:
        """What this generation costs the workspace as of `now`: refunded once it failed."""
        return 0 if self.state(now) == FAILED else self.cost


class _SavedState(BaseModel):
    """The content of `<state_dir>/neofashion.json`."""

    version: Literal[1] = 1
    base_credits: int
    """The starting balance; the balance is this minus what the generations cost."""
    spent_forgotten: int = 0
    """What generations dropped from the file (MAX_KEPT) cost, so the balance stays right."""
    next_number: int
    generations: list[Generation]


@dataclass
class NeoFashionStats:
    """Counters for tests: what the client asked, and what the emulator answered."""

    requests: Counter[str] = field(default_factory=Counter)
    """Per endpoint, e.g. "POST /generate/image", "GET /generations/{id}"."""
    generate_calls: int = 0
    """Generation POSTs of any kind (image, video, bulk, sketch-to-photo), answered or refused."""
    detail_calls_by_id: dict[str, int] = field(default_factory=dict)
    file_calls: int = 0
    sent_429: int = 0
    max_window: int = 0
    """The most requests the rolling window ever held."""
    bulks: dict[str, list[str]] = field(default_factory=dict)
    """Bulk id -> its generation ids."""


class _Window(SlidingWindow):
    """The rolling-window rate limit, with the `X-RateLimit-*` headers every answer carries."""

    def headers(self, now: float) -> dict[str, str]:
        reset = self.wait(now)
        return {
            "x-ratelimit-limit": str(self.limit),
            "x-ratelimit-remaining": str(max(0, self.limit - self.count(now))),
            "x-ratelimit-reset": f"{reset:.3f}",
        }


def _refused(
    status: int,
    message: str | None = None,
    details: dict[str, Any] | None = None,
    *,
    wait: float | None = None,
) -> Refusal:
    """neo-fashion's error: its documented code for the status, its documented message by default."""
    code = ERROR_CODES.get(status, "HTTP_ERROR")
    return Refusal(
        status,
        message or ERROR_MESSAGES.get(code, "Request failed."),
        code=code,
        extra={"details": details} if details is not None else None,
        headers=retry_after(wait) if wait is not None else None,
    )


@dataclass
class _Ok:
    """A success answer: the pipeline wraps it in the envelope with the request id."""

    data: Any
    meta: dict[str, Any] = field(default_factory=dict)


Handler = Callable[[Request], Awaitable["_Ok | Response"]]


# --- The emulator -------------------------------------------------------------------------------


class NeoFashionEmulator(Emulator):
    title = "neo-fashion"
    state_file = STATE_FILE

    def __init__(
        self,
        *,
        faults: NeoFashionFaults | None = None,
        plan: str = "starter",
        rate_per_minute: int | None = None,
        sync_seconds: float = SYNC_SECONDS,
        image_long_side: int = IMAGE_LONG_SIDE,
        **common: Any,
    ) -> None:
        """`rate_per_minute` overrides the plan's rate. `sync_seconds=0` makes every generation
        asynchronous, a large value every image synchronous. `image_long_side` sizes the placeholder
        images (tests that make many use small ones). With `state_dir`, generations and the balance
        are loaded from and saved to `STATE_FILE` there; see `Emulator` for the rest.
        """
        super().__init__(**common)
        self.faults = faults if faults is not None else NeoFashionFaults()
        self.plan = plan
        self.rate_per_minute = rate_per_minute or PLAN_RATES.get(plan, PLAN_RATES["starter"])
        self.sync_seconds = sync_seconds
        self.image_long_side = image_long_side
        self.stats = NeoFashionStats()
        self.generations: dict[str, Generation] = {}
        self._base_credits = self.faults.credits
        self._spent_forgotten = 0
        self._window = _Window(self.rate_per_minute, WINDOW_SECONDS * self.time_scale)
        if self.state_dir is not None:
            self._sync(write=False)
        api = [
            ("/generate/image", "POST", self._generate_image),
            ("/generate/video", "POST", self._generate_video),
            ("/generate/bulk", "POST", self._generate_bulk),
            ("/sketch-to-photo", "POST", self._sketch_to_photo),
            ("/generations", "GET", self._list_generations),
            ("/generations/{id}", "GET", self._generation),
            ("/credits/balance", "GET", self._balance),
            ("/personas", "GET", self._personas),
            ("/models", "GET", self._models),
        ]
        routes = [
            Route(PREFIX + path, self._api(f"{method} {path}", fn), methods=[method])
            for path, method, fn in api
        ]
        routes.append(Route("/files/{id}/{name}", self._file, methods=["GET"]))
        self.app = Starlette(
            routes=routes,
            exception_handlers={HTTPException: self._http_exception},  # type: ignore[dict-item]
        )

    # --- the balance -----------------------------------------------------------------------

    def balance(self) -> int:
        now = self.clock()
        return (
            self._base_credits
            - self._spent_forgotten
            - sum(g.charged(now) for g in self.generations.values())
        )

    # --- the request pipeline: auth, rate window, envelope, headers -------------------------

    def _api(self, name: str, handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            self.stats.requests[name] += 1
            if name.startswith("POST "):
                self.stats.generate_calls += 1
            request_id = _new_id("req")
            response: Response
            try:
                self.check_key(request, message=ERROR_MESSAGES["UNAUTHORIZED"])
                if self._window.admit(self.clock()) is not None:
                    self.stats.sent_429 += 1
                    raise _refused(
                        429,
                        f"Request rate exceeds plan limit ({self.rate_per_minute} requests per rolling "
                        f"{WINDOW_SECONDS * self.time_scale:g} s on the {self.plan} plan).",
                        wait=self._window.wait(self.clock()),
                    )
                self.stats.max_window = max(self.stats.max_window, self._window.count(self.clock()))
                answer = await handler(request)
            except Refusal as exc:
                response = self._error_response(exc, request_id)
            else:
                if isinstance(answer, _Ok):
                    meta = {**answer.meta, "request_id": request_id}
                    response = JSONResponse({"data": answer.data, "meta": meta, "error": None})
                else:
                    response = answer
            response.headers.update(self._window.headers(self.clock()))
            return response

        return endpoint

    def _error_response(self, exc: Refusal, request_id: str) -> JSONResponse:
        error: dict[str, Any] = {"code": exc.code, "message": exc.message}
        if exc.extra.get("details") is not None:
            error["details"] = exc.extra["details"]
        meta: dict[str, Any] = {"request_id": request_id}
        if exc.code in ("PROVIDER_ERROR", "INSUFFICIENT_CREDITS"):
            meta.update(credits_used=0, credits_remaining=self.balance())
        headers = exc.headers or {}
        if exc.status == 429 and not headers:
            headers = retry_after(self.time_scale)
        return JSONResponse(
            {"data": None, "meta": meta, "error": error}, status_code=exc.status, headers=headers
        )

    async def _http_exception(self, request: Request, exc: HTTPException) -> Response:
        """Unknown paths and methods under /api/v1 get the envelope too."""
        status = exc.status_code if exc.status_code in (404, 405) else 400
        code = "NOT_FOUND" if status == 404 else "METHOD_NOT_ALLOWED" if status == 405 else "BAD_REQUEST"
        body = {
            "data": None,
            "meta": {"request_id": _new_id("req")},
            "error": {"code": code, "message": exc.detail},
        }
        return JSONResponse(body, status_code=status, headers=self._window.headers(self.clock()))

    # --- generation endpoints --------------------------------------------------------------

    async def _generate_image(self, request: Request) -> _Ok | Response:
        return await self._generate_one("image", request)

    async def _generate_video(self, request: Request) -> _Ok | Response:
        return await self._generate_one("video", request)

    async def _sketch_to_photo(self, request: Request) -> _Ok | Response:
        return await self._generate_one("sketch_to_photo", request)

    async def _generate_one(self, kind: str, request: Request) -> _Ok | Response:
        self._submit_checks(kind)
        inputs = self._inputs(kind, await _body(request))
        cost = _price(kind, inputs)
        self._charge_check(cost)
        now = self.clock()
        self._sync(write=False)
        generation = self._create(kind, inputs, cost, now)
        self._sync()
        if self._malformed():
            return _html()
        if kind != "video" and generation.duration <= self.sync_seconds * self.time_scale:
            # Short generations are answered synchronously: hold the request until it is done.
            await anyio.sleep(max(0.0, generation.ends_at() - self.clock()))
            now = max(self.clock(), generation.ends_at())
            if generation.state(now) == FAILED:
                raise _refused(502, _provider_failure(generation))
        return self._ok(self._view(generation, request, now), credits_used=cost)

    async def _generate_bulk(self, request: Request) -> _Ok | Response:
        self._submit_checks("bulk")
        body = await _body(request)
        unknown = sorted(set(body) - {"items"})
        if unknown:
            raise _refused(400, f"Unknown field '{unknown[0]}'. A bulk request takes 'items'.")
        items = body.get("items")
        if not isinstance(items, list) or not items:
            raise _refused(400, "Field 'items' must be a non-empty list of generation requests.")
        if len(items) > MAX_BULK_ITEMS:
            raise _refused(400, f"At most {MAX_BULK_ITEMS} items per bulk request.")
        checked = []
        for n, item in enumerate(items):
            if not isinstance(item, dict):
                raise _refused(400, f"items[{n}] must be an object.")
            try:
                checked.append(self._inputs("image", item))
            except Refusal as exc:
                raise _refused(exc.status, f"items[{n}]: {exc.message}", exc.extra.get("details")) from None
        cost = sum(_price("image", item) for item in checked)
        self._charge_check(cost)
        now = self.clock()
        bulk_id = _new_id("bulk")
        self._sync(write=False)
        created = [
            self._create("image", item, _price("image", item), now, bulk_id=bulk_id) for item in checked
        ]
        self._sync()
        self.stats.bulks[bulk_id] = [g.id for g in created]
        if self._malformed():
            return _html()
        data = {
            "id": bulk_id,
            "status": PROCESSING,
            "total": len(created),
            "generations": [{"id": g.id, "status": g.state(now)} for g in created],
            "credits_used": cost,
        }
        return self._ok(data, credits_used=cost)

    def _submit_checks(self, kind: str) -> None:
        if kind in self.faults.forbidden:
            raise _refused(
                403, f"Feature not available on current plan ({kind} is not on the {self.plan} plan)."
            )
        status = next_fault(self.faults.submit_errors)
        if status is not None:
            raise _refused(status, "Injected sandbox fault.")

    def _charge_check(self, cost: int) -> None:
        available = self.balance()
        if cost > available:
            raise _refused(
                402,
                "Credit balance too low for this operation.",
                {"required": cost, "available": available},
            )

    def _malformed(self) -> bool:
        if self.faults.submit_malformed > 0:
            self.faults.submit_malformed -= 1
            return True
        return False

    def _inputs(self, kind: str, body: dict[str, Any]) -> dict[str, Any]:
        required, optional = BODY_FIELDS[kind]
        unknown = sorted(set(body) - set(required) - set(optional))
        if unknown:
            allowed = ", ".join(required + optional)
            raise _refused(400, f"Unknown field '{unknown[0]}'. Allowed fields: {allowed}.")
        for name in required:
            if body.get(name) in (None, ""):
                raise _refused(400, f"Missing required field '{name}'.")
        for name in ("prompt", "persona_id", "model_id"):
            if name in body and (not isinstance(body[name], str) or not body[name]):
                raise _refused(400, f"Field '{name}' must be a non-empty string.")
        for name in URL_FIELDS:
            if name in body and not _is_url(body[name]):
                raise _refused(400, f"Field '{name}' must be a public http(s) URL of an image.")
        ratios = VIDEO_ASPECT_RATIOS if kind == "video" else ASPECT_RATIOS
        if "aspect_ratio" in body and body["aspect_ratio"] not in ratios:
            raise _refused(400, f"Field 'aspect_ratio' must be one of {', '.join(ratios)}.")
        if "duration" in body and (type(body["duration"]) is not int or body["duration"] not in (5, 10)):
            raise _refused(400, "Field 'duration' must be 5 or 10 (seconds).")
        if "persona_id" in body and body["persona_id"] not in {p["id"] for p in PERSONAS}:
            raise _refused(404, f"Persona '{body['persona_id']}' does not exist in this workspace.")
        if "model_id" in body:
            model = next((m for m in MODELS if m["id"] == body["model_id"]), None)
            if model is None:
                raise _refused(404, f"Model '{body['model_id']}' does not exist in this workspace.")
            if model["status"] != "ready":
                raise _refused(400, f"Model '{body['model_id']}' is still {model['status']}.")
        return dict(body)

    def _create(
        self, kind: str, inputs: dict[str, Any], cost: int, now: float, *, bulk_id: str | None = None
    ) -> Generation:
        """Callers merge with the state file before and save after (once for a whole bulk)."""
        number = self.number()
        rng = random.Random(f"{self.seed}:{number}")
        fails = FAIL_MARKER in json.dumps(inputs)
        if self.faults.provider_errors > 0:
            self.faults.provider_errors -= 1
            fails = True
        generation = Generation(
            id=_new_id("gen"),
            number=number,
            kind=kind,
            inputs=inputs,
            created=now,
            duration=self.seconds(_duration(kind, inputs, rng)),
            cost=cost,
            created_wall=time.time(),
            fails=fails,
            bulk_id=bulk_id,
        )
        self.generations[generation.id] = generation
        return generation

    # --- read endpoints --------------------------------------------------------------------

    async def _generation(self, request: Request) -> _Ok | Response:
        generation_id = request.path_params["id"]
        by_id = self.stats.detail_calls_by_id
        by_id[generation_id] = by_id.get(generation_id, 0) + 1
        status = next_fault(self.faults.read_errors)
        if status is not None:
            raise _refused(status, "Injected sandbox fault.")
        generation = self._lookup(generation_id)
        if generation is None:
            raise _refused(404, f"Generation '{generation_id}' does not exist in this workspace.")
        return self._ok(self._view(generation, request, self.clock()))

    async def _list_generations(self, request: Request) -> _Ok | Response:
        params = request.query_params
        try:
            page = int(params.get("page", "1"))
            limit = int(params.get("limit", "20"))
        except ValueError:
            raise _refused(400, "Query parameters 'page' and 'limit' must be whole numbers.") from None
        if page < 1 or not 1 <= limit <= 100:
            raise _refused(400, "'page' must be at least 1 and 'limit' from 1 to 100.")
        status = params.get("status")
        if status is not None and status not in STATUSES:
            raise _refused(400, f"Query parameter 'status' must be one of {', '.join(STATUSES)}.")
        unknown = sorted(set(params) - {"page", "limit", "status"})
        if unknown:
            raise _refused(400, f"Unknown query parameter '{unknown[0]}'.")
        self._sync(write=False)
        now = self.clock()
        newest_first = sorted(self.generations.values(), key=lambda g: g.number, reverse=True)
        matching = [g for g in newest_first if status is None or g.state(now) == status]
        start = (page - 1) * limit
        data = [self._view(g, request, now) for g in matching[start : start + limit]]
        meta = {
            "page": page,
            "limit": limit,
            "total": len(matching),
            "has_more": start + limit < len(matching),
        }
        return self._ok(data, meta=meta)

    async def _balance(self, request: Request) -> _Ok | Response:
        self._sync(write=False)
        return self._ok({"balance": self.balance(), "plan": self.plan})

    async def _personas(self, request: Request) -> _Ok | Response:
        return self._ok(PERSONAS, meta={"total": len(PERSONAS)})

    async def _models(self, request: Request) -> _Ok | Response:
        return self._ok(MODELS, meta={"total": len(MODELS)})

    async def _file(self, request: Request) -> Response:
        self.stats.file_calls += 1
        generation = self._lookup(request.path_params["id"])
        if generation is None or generation.state(self.clock()) != COMPLETED:
            return Response("Not Found", status_code=404, media_type="text/plain")
        if request.path_params["name"] != _file_name(generation):
            return Response("Not Found", status_code=404, media_type="text/plain")
        data, mime_type = await self._render(generation)
        return Response(data, media_type=mime_type, headers={"cache-control": "public, max-age=86400"})

    # --- views and helpers -----------------------------------------------------------------

    def _ok(self, data: Any, *, credits_used: int | None = None, meta: dict[str, Any] | None = None) -> _Ok:
        full: dict[str, Any] = dict(meta or {})
        if credits_used is not None:
            full["credits_used"] = credits_used
        full["credits_remaining"] = self.balance()
        return _Ok(data, full)

    def _view(self, generation: Generation, request: Request, now: float) -> dict[str, Any]:
        status = generation.state(now)
        inputs = generation.inputs
        view: dict[str, Any] = {
            "id": generation.id,
            "type": generation.kind,
            "status": status,
            "prompt": inputs.get("prompt"),
            "persona_id": inputs.get("persona_id"),
            "model_id": inputs.get("model_id"),
            "aspect_ratio": inputs.get("aspect_ratio"),
            "output_url": None,
            "credits_used": generation.charged(now),
            "error": None,
            "bulk_id": generation.bulk_id,
            "created_at": _iso(generation.created_wall),
            "completed_at": None,
        }
        if generation.kind == "video":
            view["duration"] = inputs.get("duration", 5)
        if status == COMPLETED:
            view["output_url"] = f"{public_base(request)}/files/{generation.id}/{_file_name(generation)}"
            view["completed_at"] = _iso(generation.created_wall + generation.duration)
        elif status == FAILED:
            view["error"] = {"code": "PROVIDER_ERROR", "message": _provider_failure(generation)}
            view["completed_at"] = _iso(generation.created_wall + generation.duration * _FAIL_SHARE)
        return view

    def _lookup(self, generation_id: str) -> Generation | None:
        """A generation by id; on a miss, another process on the state folder may have made it."""
        generation = self.generations.get(generation_id)
        if generation is None and self.state_dir is not None:
            self._sync(write=False)
            generation = self.generations.get(generation_id)
        return generation

    async def _render(self, generation: Generation) -> tuple[bytes, str]:
        width, height = _size(generation, self.image_long_side)
        prompt = str(generation.inputs.get("prompt") or generation.inputs.get("sketch_url") or "")
        lines = [f"neo-fashion · {generation.kind}", _shorten(prompt, 32), f"{width}x{height}"]
        seed = self.seed * 1_000_003 + generation.number
        kind = "video" if generation.kind == "video" else "png"
        return await self.render(generation.id, kind, width, height, lines, seed)

    # --- persistence -----------------------------------------------------------------------

    def _sync(self, *, write: bool = True) -> None:
        """Merge with the state file (generations united by id) and save when asked.

        The balance is derived from the generations, so merging never counts a charge or refund
        twice. Synchronous on purpose: the file is small, and the merge must not interleave.
        """
        if self.state_dir is None:
            return
        saved = self.load(_SavedState)
        if saved is not None:
            self._base_credits = saved.base_credits
            self._spent_forgotten = max(self._spent_forgotten, saved.spent_forgotten)
            self.next_number = max(self.next_number, saved.next_number)
            for generation in saved.generations:
                self.generations.setdefault(generation.id, generation)
        if not write:
            return
        now = self.clock()
        finished = sorted(
            (g for g in self.generations.values() if g.state(now) in (COMPLETED, FAILED)),
            key=lambda g: g.number,
        )
        for generation in finished[: max(0, len(self.generations) - MAX_KEPT)]:
            self._spent_forgotten += generation.charged(now)
            del self.generations[generation.id]
            self.forget_rendered(generation.id)
        self.save(
            _SavedState(
                base_credits=self._base_credits,
                spent_forgotten=self._spent_forgotten,
                next_number=self.next_number,
                generations=list(self.generations.values()),
            )
        )


# --- Pure helpers -------------------------------------------------------------------------------


async def _body(request: Request) -> dict[str, Any]:
    try:
        body = json.loads(await request.body())
    except (ValueError, UnicodeDecodeError):
        raise _refused(400, "The request body is not valid JSON.") from None
    if not isinstance(body, dict):
        raise _refused(400, "The request body must be a JSON object.")
    return body


def _html() -> Response:
    html = "<html><head><title>502 Bad Gateway</title></head><body>upstream hiccup</body></html>"
    return Response(html, status_code=200, media_type="text/html")


def _price(kind: str, inputs: dict[str, Any]) -> int:
    """What one generation costs: the adapter's own price table, so the sandbox charges its estimate."""
    return round(credits(kind, inputs))


def _duration(kind: str, inputs: dict[str, Any], rng: random.Random) -> float:
    fastest, usual_from, usual_to, slowest = DURATIONS[kind]
    roll = rng.random()
    if roll < 0.15:
        seconds = rng.uniform(fastest, usual_from)
    elif roll < 0.85:
        seconds = rng.uniform(usual_from, usual_to)
    else:
        seconds = rng.uniform(usual_to, slowest)
    return seconds * (2 if kind == "video" and inputs.get("duration") == 10 else 1)


def _provider_failure(generation: Generation) -> str:
    return (
        f"The AI provider failed to generate {generation.id}; the {generation.cost} credits were refunded "
        "automatically."
    )


def _size(generation: Generation, image_long_side: int) -> tuple[int, int]:
    ratio = str(generation.inputs.get("aspect_ratio") or ("9:16" if generation.kind == "video" else "4:5"))
    w, h = (int(x) for x in ratio.split(":"))
    long_side = VIDEO_LONG_SIDE if generation.kind == "video" else image_long_side
    if w >= h:
        return long_side, max(2, round(long_side * h / w))
    return max(2, round(long_side * w / h)), long_side


def _file_name(generation: Generation) -> str:
    return "output.mp4" if generation.kind == "video" else "output.png"


def _is_url(value: object) -> bool:
    return isinstance(value, str) and re.match(r"https?://[^/\s]+", value) is not None


def _new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:26]}"


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat().replace("+00:00", "Z")


def _shorten(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
