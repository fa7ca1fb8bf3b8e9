"""An in-process emulation of FASHN's HTTP API, for sandbox mode and for tests.

It serves what the provider documents (`provider-docs/fashn-*`) under the same paths, so the real
FASHN adapter runs against it unchanged, in process through `httpx.ASGITransport(app=emu.app)`
or over a socket under uvicorn; the base URL is `http://<host>/v1`:

    POST /v1/run              {"model_name", "inputs"} (or the legacy top-level try-on form)
    GET  /v1/status/{id}      starting -> in_queue -> processing -> completed | failed | canceled
    GET  /v1/cancel/{id}
    GET  /v1/credits
    GET  /cdn/{id}/output_{n}.{ext}   the labelled placeholder outputs (no auth, like a CDN)

Timings come from the models' typical durations (`fashn-models.md`) times `time_scale`; a
prediction's state is computed from the clock at each request, so nothing runs in the background.
The documented limits apply with their windows scaled the same way: `/run` 50 per 60 s, `/status`
50 per 10 s, `/credits` 30 per 10 s, 6 predictions in flight; 429s carry a fractional
`Retry-After` in seconds. Credits are charged at `/run` (header `x-fashn-credits-used`) and
refunded when a prediction fails or is canceled, as FASHN charges nothing for those; a terminal
`/status` answer repeats the header with what the prediction finally cost (FASHN's SDK reads it there).

A prediction fails on purpose when any string input contains `[sandbox:fail=<ErrorName>]`.
`FashnFaults` provokes the other documented failures (5xx, 402 or 429 out of credits, bodies that
are not JSON, a connection dropped after the prediction was created). A dropped connection is
an `httpx.RemoteProtocolError` raised inside the app after the response has started:
`httpx.ASGITransport` re-raises an app's exception to the caller unchanged, so in process the
client sees exactly that exception; under uvicorn the server closes the socket mid-response and
httpx raises `RemoteProtocolError` ("peer closed connection ...") of its own.

With a `state_dir` (sandbox mode passes `<CALLSHEET_HOME>/sandbox`), predictions and the balance
are kept in `fashn.json` there, so a restarted server (or `callsheet jobs cancel` in another
process) still finds the predictions it submitted, like the real service would; times are then
wall-clock. The file is small: data: URIs are cut to their header, outputs are re-rendered from
the seed on demand, and finished predictions are forgotten after an hour (`KEEP_FINISHED`).

Deliberate simplifications: a 4k request is drawn at 2048 px on its long side (placeholders stay
cheap), and videos are ~1 s clips of 256 px on the long side whatever the requested resolution.
"""

from __future__ import annotations

import base64
import json
import random
import re
import threading
import uuid
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any, Literal

import httpx
from pydantic import BaseModel
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from server.providers.base import image_fields
from server.providers.fashn.operations import (
    DEFAULT_VIDEO_RESOLUTION,
    DURATIONS,
    OPERATIONS,
    TRYON_V1_6_SECONDS,
    VIDEO_SECONDS,
    credits,
)
from server.sandbox.kit import (
    DroppedConnection,
    Emulator,
    Refusal,
    SlidingWindow,
    fit,
    public_base,
    retry_after,
)

# --- The documented contract -------------------------------------------------------------------

RUN_LIMIT = (50, 60.0)
STATUS_LIMIT = (50, 10.0)
CREDITS_LIMIT = (30, 10.0)
MAX_IN_FLIGHT = 6
CREDITS_HEADER = "x-fashn-credits-used"

STATE_FILE = "fashn.json"
KEEP_FINISHED = 3600.0
"""Seconds (wall-clock, unscaled) a finished prediction stays answerable when state is persisted."""
MAX_KEPT = 500
"""At most this many predictions are persisted; the oldest finished ones go first."""

REQUIRED: dict[str, tuple[str, ...]] = {
    spec.route: tuple(name for name, field in spec.inputs.model_fields.items() if field.is_required())
    for spec in OPERATIONS.values()
}
"""Each model's required inputs, as the adapter's typed models declare them."""
MODEL_NAMES = tuple(REQUIRED)
IMAGE_FIELDS = frozenset(name for spec in OPERATIONS.values() for name in image_fields(spec.inputs))
"""Inputs that take an image: an http(s) URL or a base64 data URI."""
_ENUMS: dict[str, tuple[object, ...]] = {
    "output_format": ("png", "jpeg"),
    "resolution": ("1k", "2k", "4k"),
    "generation_mode": ("fast", "balanced", "quality"),
    "category": ("auto", "tops", "bottoms", "one-pieces"),
    "garment_photo_type": ("auto", "flat-lay", "model"),
    "mode": ("performance", "balanced", "quality"),
    "moderation_level": ("conservative", "permissive", "none"),
    "face_reference_mode": ("match_base", "match_reference"),
}
_MODEL_ENUMS: dict[str, dict[str, tuple[object, ...]]] = {
    "tryon-max": {"generation_mode": ("balanced", "quality")},
    "image-to-video": {"resolution": ("480p", "720p", "1080p"), "duration": (5, 10)},
}
_STRING_FIELDS = ("prompt", "negative_prompt")
_COUNT_FIELDS = ("num_images", "num_samples")

_LONG_SIDE = {"1k": 1024, "2k": 2048, "4k": 2048}  # 4k capped: see the module docstring
_VIDEO_LONG_SIDE = 256

# Shares of a prediction's duration spent in each state before it completes.
_STARTING_SHARE = 0.05
_QUEUE_SHARE = 0.2
_FAIL_SHARE = 0.5

FAIL_MARKER = re.compile(r"\[sandbox:fail=([A-Za-z]+)\]")
FAILURE_MESSAGES = {
    "ImageLoadError": "Error loading model image: The URL's Content-Type is not an image. "
    "Content-Type: text/plain;charset=UTF-8",
    "PoseError": "Could not detect a body pose in the model image. Make sure the person is fully "
    "visible and not occluded.",
    "ContentModerationError": "The inputs were flagged by content moderation and cannot be processed.",
    "NSFWError": "NSFW content was detected in the inputs.",
    "InputValidationError": "The inputs could not be processed: the product image does not show a "
    "recognisable garment.",
    "PhotoTypeError": "Could not determine the garment photo type; set garment_photo_type to "
    "'flat-lay' or 'model'.",
    "PipelineError": "An unexpected error occurred in the generation pipeline. Please try again.",
    "ThirdPartyError": "An upstream service failed to process the request. Please try again later.",
    "InternalServerError": "Internal server error. Please try again later or contact support@fashn.ai.",
}

STARTING, IN_QUEUE, PROCESSING = "starting", "in_queue", "processing"
COMPLETED, FAILED, CANCELED = "completed", "failed", "canceled"
TERMINAL = frozenset({COMPLETED, FAILED, CANCELED})
WEBHOOK_RETRIES = (30.0, 60.0, 60.0, 60.0, 90.0)
"""Seconds before each retry of a webhook that was not answered 2xx: 5 retries, about 5 minutes."""


def fashn_credits(model_name: str, inputs: dict[str, Any]) -> int:
    """Credits one `/run` costs: the adapter's own price table (`operations.credits`), so that a
    rehearsal in the sandbox costs what the estimate said."""
    return round(credits(model_name, inputs))


# --- State -------------------------------------------------------------------------------------


@dataclass
class FashnFaults:
    """Knobs tests turn to provoke the failures the documents describe."""

    run_errors: list[int] = field(default_factory=list)
    """HTTP statuses to answer the next `/run` calls with, in order (popped per call, after auth)."""
    status_errors: list[int] = field(default_factory=list)
    """The same for `/status`."""
    run_malformed: int = 0
    """The next N accepted `/run` calls create (and charge) the prediction, then answer 200 with HTML."""
    run_drop_after_accept: int = 0
    """The next N accepted `/run` calls create (and charge) the prediction, then drop the connection."""
    credits: int = 1000
    """The account balance: charged at `/run`, refunded for failed and canceled predictions."""
    out_of_credits_as_429: bool = False
    """Refuse a `/run` the balance cannot pay with 429 (as FASHN sometimes does) instead of 402."""
    error_shape: str = "object"
    """"object": `{"error": {"name", "message"}}`; "string": `{"error": "message"}`. Both are documented."""
    webhooks_lost: bool = False
    """Never deliver a webhook (a network that drops them): polling must end the job."""
    webhooks_twice: bool = False
    """Deliver every webhook twice (FASHN retries; a handler must be idempotent)."""


@dataclass(frozen=True)
class Output:
    kind: str  # "image" or "video"
    ext: str
    mime_type: str
    width: int
    height: int
    label: str


@dataclass
class Prediction:
    id: str
    number: int
    model_name: str
    inputs: dict[str, Any]
    created: float
    duration: float
    """Scaled seconds from creation to completion."""
    credits: int
    outputs: list[Output]
    failure: tuple[str, str] | None = None
    status: str = STARTING
    """As of the latest request to the emulator (the state is computed from the clock)."""
    canceled_at: float | None = None
    refunded: bool = False

    def state(self, now: float) -> str:
        if self.canceled_at is not None:
            return CANCELED
        share = (now - self.created) / self.duration
        if self.failure is not None and share >= _FAIL_SHARE:
            return FAILED
        if share >= 1.0:
            return COMPLETED
        if share < _STARTING_SHARE:
            return STARTING
        return IN_QUEUE if share < _QUEUE_SHARE else PROCESSING

    def ends_at(self) -> float:
        return self.created + self.duration * (_FAIL_SHARE if self.failure else 1.0)

    def finished_at(self) -> float:
        return self.canceled_at if self.canceled_at is not None else self.ends_at()

    def charged(self) -> int:
        return 0 if self.refunded else self.credits

    def absorb(self, other: Prediction) -> None:
        """Take in a cancel or refund another process recorded for this prediction."""
        if other.canceled_at is not None:
            mine = self.canceled_at
            self.canceled_at = other.canceled_at if mine is None else min(mine, other.canceled_at)
        self.refunded = self.refunded or other.refunded


class _SavedState(BaseModel):
    """The content of `<state_dir>/fashn.json`."""

    version: Literal[1] = 1
    credits: int
    next_number: int
    predictions: list[Prediction]

    def base(self) -> int:
        """The ledger base: the balance plus what the kept predictions cost (see `_sync`)."""
        return self.credits + sum(p.charged() for p in self.predictions)


@dataclass
class FashnStats:
    """Counters for tests: what the client asked, and what the emulator answered."""

    run_calls: int = 0
    status_calls: int = 0
    status_calls_by_id: dict[str, int] = field(default_factory=dict)
    cancel_calls: int = 0
    credits_calls: int = 0
    cdn_calls: int = 0
    sent_429: int = 0
    max_in_flight: int = 0
    webhooks: list[tuple[str, int]] = field(default_factory=list)
    """Every webhook POST made: (prediction id, the answer's HTTP status, 0 when none came)."""
    predictions: dict[str, Prediction] = field(default_factory=dict)


# --- The emulator ------------------------------------------------------------------------------


class FashnEmulator(Emulator):
    title = "FASHN"
    state_file = STATE_FILE

    def __init__(
        self,
        *,
        faults: FashnFaults | None = None,
        **common: Any,
    ) -> None:
        """With `state_dir`, predictions and the balance are loaded from and saved to `STATE_FILE`
        there (the saved balance wins over `faults.credits`); see `Emulator` for the rest."""
        super().__init__(**common)
        self.faults = faults if faults is not None else FashnFaults()
        self.stats = FashnStats()
        self._base = self.faults.credits
        """Ledger base as of the latest sync: the balance is `_base` minus what kept predictions cost."""
        self._synced: set[str] = set()
        """Ids the state file held at the latest sync: if one disappears, another process forgot it."""
        self._windows = {
            "run": SlidingWindow(RUN_LIMIT[0], RUN_LIMIT[1] * self.time_scale),
            "status": SlidingWindow(STATUS_LIMIT[0], STATUS_LIMIT[1] * self.time_scale),
            "credits": SlidingWindow(CREDITS_LIMIT[0], CREDITS_LIMIT[1] * self.time_scale),
        }
        self._take_in(self.clock())
        self.app = Starlette(
            routes=[
                Route("/v1/run", self._run, methods=["POST"]),
                Route("/v1/status/{id}", self._status, methods=["GET"]),
                Route("/v1/cancel/{id}", self._cancel, methods=["GET"]),
                Route("/v1/credits", self._credits, methods=["GET"]),
                Route("/cdn/{id}/{name}", self._cdn, methods=["GET"]),
            ]
        )

    # --- endpoints ---

    async def _run(self, request: Request) -> Response:
        self.stats.run_calls += 1
        now = self.clock()
        await self._bring_up_to(now, reload=True)
        try:
            self.check_key(request, code="UnauthorizedAccess")
            if self.faults.run_errors:
                return self._injected(self.faults.run_errors.pop(0), with_id=True)
            wait = self._windows["run"].admit(now)
            if wait is not None:
                return self._too_many(
                    "RateLimitExceeded", "Rate limit exceeded: at most 50 /run requests per 60 s.", wait, True
                )
            model_name, inputs = _parse_run(await request.body())
            in_flight = [p for p in self.stats.predictions.values() if p.status not in TERMINAL]
            if len(in_flight) >= MAX_IN_FLIGHT:
                wait = min(p.ends_at() for p in in_flight) - now
                return self._too_many(
                    "ConcurrencyLimitExceeded",
                    f"Concurrency limit reached: at most {MAX_IN_FLIGHT} predictions may run at once.",
                    wait,
                    True,
                )
            cost = fashn_credits(model_name, inputs)
            if cost > self.faults.credits:
                message = (
                    f"Insufficient credits: this request needs {cost}, the balance is {self.faults.credits}."
                )
                if self.faults.out_of_credits_as_429:
                    raise Refusal(429, message, code="OutOfCredits")
                raise Refusal(402, message, code="InsufficientCredits")
        except Refusal as exc:
            return self._error(exc.status, exc.code or "Error", exc.message, with_id=True)

        prediction = self._create(model_name, inputs, cost, now)
        await self.persist(self._state)  # answered once it is on disk: a restarted server finds it
        hook = request.query_params.get("webhook_url")
        if hook:
            self._call_back(prediction.id, hook, public_base(request), attempt=0)
        self.stats.max_in_flight = max(self.stats.max_in_flight, len(in_flight) + 1)
        headers = {CREDITS_HEADER: str(cost)}
        if self.faults.run_malformed > 0:
            self.faults.run_malformed -= 1
            html = "<html><head><title>502 Bad Gateway</title></head><body>upstream hiccup</body></html>"
            return Response(html, status_code=200, media_type="text/html", headers=headers)
        if self.faults.run_drop_after_accept > 0:
            self.faults.run_drop_after_accept -= 1
            return DroppedConnection()
        return JSONResponse({"id": prediction.id, "error": None}, headers=headers)

    def _call_back(self, prediction_id: str, url: str, base: str, attempt: int) -> None:
        """FASHN's webhook: when the prediction ends, POST its final state (`id`, `status`, `output`,
        `error`) to `url`, unsigned; a non-2xx answer is retried up to 5 times over about 5 minutes
        (scaled). It runs on a timer thread: the emulator has no task of its own."""
        prediction = self.stats.predictions.get(prediction_id)
        if prediction is None or self.faults.webhooks_lost:
            return
        if attempt == 0:
            delay = prediction.finished_at() - self.clock()
        else:
            delay = WEBHOOK_RETRIES[attempt - 1] * self.time_scale
        timer = threading.Timer(max(delay, 0.01), self._deliver, (prediction_id, url, base, attempt))
        timer.daemon = True
        timer.start()

    def _deliver(self, prediction_id: str, url: str, base: str, attempt: int) -> None:
        prediction = self.stats.predictions.get(prediction_id)
        if prediction is None:
            return
        state = prediction.state(self.clock())
        if state not in TERMINAL:  # the clock was held (tests): not ended yet, look again later
            self._call_back(prediction_id, url, base, attempt=0)
            return
        body = {
            "id": prediction.id,
            "status": state,
            "output": [
                f"{base}/cdn/{prediction.id}/output_{n}.{o.ext}" for n, o in enumerate(prediction.outputs)
            ]
            if state == COMPLETED
            else None,
            "error": self._error_value(*prediction.failure)
            if state == FAILED and prediction.failure
            else None,
        }
        for _ in range(2 if self.faults.webhooks_twice else 1):
            try:
                answer = httpx.post(url, json=body, timeout=5.0).status_code
            except httpx.HTTPError:
                answer = 0
            self.stats.webhooks.append((prediction_id, answer))
        if not 200 <= answer < 300 and attempt < len(WEBHOOK_RETRIES):
            self._call_back(prediction_id, url, base, attempt + 1)

    async def _status(self, request: Request) -> Response:
        prediction_id = request.path_params["id"]
        self.stats.status_calls += 1
        by_id = self.stats.status_calls_by_id
        by_id[prediction_id] = by_id.get(prediction_id, 0) + 1
        now = self.clock()
        await self._bring_up_to(now)
        try:
            self.check_key(request, code="UnauthorizedAccess")
            if self.faults.status_errors:
                return self._injected(self.faults.status_errors.pop(0))
        except Refusal as exc:
            return self._error(exc.status, exc.code or "Error", exc.message)
        wait = self._windows["status"].admit(now)
        if wait is not None:
            return self._too_many(
                "RateLimitExceeded", "Rate limit exceeded: at most 50 /status requests per 10 s.", wait
            )
        prediction = await self._lookup(prediction_id, now)
        if prediction is None:
            return self._error(404, "NotFound", f"Prediction {prediction_id} not found.")
        body: dict[str, Any] = {
            "id": prediction.id,
            "status": prediction.status,
            "output": None,
            "error": None,
        }
        if prediction.status == COMPLETED:
            if prediction.inputs.get("return_base64"):
                body["output"] = [await self._data_uri(prediction, n) for n in range(len(prediction.outputs))]
            else:
                base = public_base(request)
                body["output"] = [
                    f"{base}/cdn/{prediction.id}/output_{n}.{out.ext}"
                    for n, out in enumerate(prediction.outputs)
                ]
        elif prediction.status == FAILED and prediction.failure is not None:
            body["error"] = self._error_value(*prediction.failure)
        headers = {}
        if prediction.status in TERMINAL:
            # FASHN's SDK reads what a finished prediction cost from its terminal /status answer.
            headers[CREDITS_HEADER] = str(prediction.credits if prediction.status == COMPLETED else 0)
        return JSONResponse(body, headers=headers)

    async def _cancel(self, request: Request) -> Response:
        prediction_id = request.path_params["id"]
        self.stats.cancel_calls += 1
        now = self.clock()
        await self._bring_up_to(now)
        try:
            self.check_key(request, code="UnauthorizedAccess")
        except Refusal as exc:
            return self._error(exc.status, exc.code or "Error", exc.message)
        prediction = await self._lookup(prediction_id, now)
        if prediction is None:
            return self._error(404, "NotFound", f"Prediction {prediction_id} not found.")
        if prediction.status not in TERMINAL:
            prediction.canceled_at = now
            await self._bring_up_to(now)
        return JSONResponse({"id": prediction.id, "status": prediction.status, "error": None})

    async def _credits(self, request: Request) -> Response:
        self.stats.credits_calls += 1
        now = self.clock()
        await self._bring_up_to(now, reload=True)
        try:
            self.check_key(request, code="UnauthorizedAccess")
        except Refusal as exc:
            return self._error(exc.status, exc.code or "Error", exc.message)
        wait = self._windows["credits"].admit(now)
        if wait is not None:
            return self._too_many(
                "RateLimitExceeded", "Rate limit exceeded: at most 30 /credits requests per 10 s.", wait
            )
        balance = self.faults.credits
        return JSONResponse({"credits": {"total": balance, "subscription": balance, "on_demand": 0}})

    async def _cdn(self, request: Request) -> Response:
        self.stats.cdn_calls += 1
        now = self.clock()
        await self._bring_up_to(now)
        prediction = await self._lookup(request.path_params["id"], now)
        match = re.fullmatch(r"output_(\d+)\.(\w+)", request.path_params["name"])
        if prediction is None or prediction.status != COMPLETED or match is None:
            return Response("Not Found", status_code=404, media_type="text/plain")
        n = int(match.group(1))
        if n >= len(prediction.outputs) or match.group(2) != prediction.outputs[n].ext:
            return Response("Not Found", status_code=404, media_type="text/plain")
        data, mime_type = await self._render(prediction, n)
        return Response(data, media_type=mime_type, headers={"cache-control": "public, max-age=259200"})

    # --- helpers ---

    async def _bring_up_to(self, now: float, *, reload: bool = False) -> None:
        """Bring every prediction's status up to `now`, refunding those that failed or were canceled, and
        save when something changed. `reload` first takes in what other processes on the same state
        folder recorded (reading the file only if one wrote it)."""
        if self._take_in(now) if reload else self._advance(now):
            await self.persist(self._state)

    def _advance(self, now: float) -> bool:
        """Update the statuses; True when something was refunded (and so should be saved)."""
        refunded = False
        for prediction in self.stats.predictions.values():
            if prediction.status in TERMINAL:
                continue
            prediction.status = prediction.state(now)
            if prediction.status in (FAILED, CANCELED) and not prediction.refunded:
                prediction.refunded = True
                self.faults.credits += prediction.credits
                refunded = True
        return refunded

    async def _lookup(self, prediction_id: str, now: float) -> Prediction | None:
        """A prediction by id; on a miss, another process on the state folder may have made it."""
        prediction = self.stats.predictions.get(prediction_id)
        if prediction is None and self.state_dir is not None:
            await self._bring_up_to(now, reload=True)
            prediction = self.stats.predictions.get(prediction_id)
        return prediction

    def _create(self, model_name: str, inputs: dict[str, Any], cost: int, now: float) -> Prediction:
        number = self.number()
        rng = random.Random(f"{self.seed}:{number}")
        prediction = Prediction(
            id=f"{uuid.uuid4()}-u1",
            number=number,
            model_name=model_name,
            inputs=_without_data(inputs),  # drawn from now on, never read again: no image bytes kept
            created=now,
            duration=self.seconds(_typical_seconds(model_name, inputs, rng)),
            credits=cost,
            outputs=_outputs(model_name, inputs),
            failure=_failure(inputs),
        )
        self.faults.credits -= cost
        self.stats.predictions[prediction.id] = prediction
        return prediction

    # --- persistence ---

    def _take_in(self, now: float) -> bool:
        """Merge with the state file if another process wrote it since this one last read or wrote it,
        and bring the statuses up to `now`; True when there is something to save.

        Other processes on the same folder (a second server, `callsheet jobs cancel`) save too, so
        this merges rather than overwrites: predictions are united by id, a cancel or refund seen by
        either side sticks, and the balance is a ledger, `base` minus what the kept predictions cost,
        where only forgetting a prediction moves `base`, so no charge or refund counts twice.
        Synchronous on purpose: the merge must not interleave with requests. An unchanged file is not
        read: it holds what this process took in or wrote (predictions are forgotten only as it is
        written, in `_state`).
        """
        if not self.changed_on_disk():
            return self._advance(now)
        predictions = self.stats.predictions
        base = self.faults.credits + sum(p.charged() for p in predictions.values())
        saved = self.load(_SavedState)
        if saved is not None:
            base += saved.base() - self._base  # keeps a balance changed through `faults.credits`
            theirs = {p.id: p for p in saved.predictions}
            for prediction_id, prediction in theirs.items():
                mine = predictions.get(prediction_id)
                if mine is None:
                    predictions[prediction_id] = prediction
                else:
                    mine.absorb(prediction)
            for prediction_id in [i for i in predictions if i not in theirs and i in self._synced]:
                self._forget(prediction_id)  # another process forgot it, and moved its base for it
            self.next_number = max(self.next_number, saved.next_number)
        self._synced = {p.id for p in saved.predictions} if saved is not None else set()
        self._base = base
        self.faults.credits = base - sum(p.charged() for p in predictions.values())
        return self._advance(now)

    def _expired(self, now: float) -> list[Prediction]:
        finished = sorted(
            (p for p in self.stats.predictions.values() if p.status in TERMINAL), key=Prediction.finished_at
        )
        excess = len(self.stats.predictions) - MAX_KEPT
        return [p for n, p in enumerate(finished) if n < excess or p.finished_at() <= now - KEEP_FINISHED]

    def _forget(self, prediction_id: str) -> None:
        prediction = self.stats.predictions.pop(prediction_id)
        for n in range(len(prediction.outputs)):
            self.forget_rendered((prediction_id, n))

    def _state(self) -> _SavedState:
        """What the state file is to hold, as of now: taken in from the file first if another process
        wrote it meanwhile, since this replaces it."""
        now = self.clock()
        self._take_in(now)
        for prediction in self._expired(now):
            self._forget(prediction.id)  # and its cost with it: the ledger's base moves below
        predictions = self.stats.predictions
        self._base = self.faults.credits + sum(p.charged() for p in predictions.values())
        self._synced = set(predictions)
        return _SavedState(
            credits=self.faults.credits,
            next_number=self.next_number,
            predictions=list(predictions.values()),
        )

    async def _render(self, prediction: Prediction, n: int) -> tuple[bytes, str]:
        out = prediction.outputs[n]
        lines = [f"fashn · {prediction.model_name}", f"output {n} of {len(prediction.outputs)}", out.label]
        seed = self.seed * 1_000_003 + prediction.number * 16 + n
        kind = "video" if out.kind == "video" else out.ext
        return await self.render((prediction.id, n), kind, out.width, out.height, lines, seed)

    async def _data_uri(self, prediction: Prediction, n: int) -> str:
        data, mime_type = await self._render(prediction, n)
        return f"data:{mime_type};base64,{base64.b64encode(data).decode('ascii')}"

    def _error_value(self, name: str, message: str) -> dict[str, str] | str:
        return {"name": name, "message": message} if self.faults.error_shape == "object" else message

    def _error(
        self,
        status: int,
        name: str,
        message: str,
        *,
        with_id: bool = False,
        headers: dict[str, str] | None = None,
    ) -> JSONResponse:
        if status == 429:
            self.stats.sent_429 += 1
        body: dict[str, Any] = {"id": None} if with_id else {}
        body["error"] = self._error_value(name, message)
        return JSONResponse(body, status_code=status, headers=headers)

    def _injected(self, status: int, *, with_id: bool = False) -> JSONResponse:
        message = f"Injected sandbox fault: HTTP {status}."
        if status == 429:
            return self._too_many("RateLimitExceeded", message, self.time_scale, with_id)
        return self._error(status, _status_name(status), message, with_id=with_id)

    def _too_many(self, name: str, message: str, wait: float, with_id: bool = False) -> JSONResponse:
        return self._error(429, name, message, with_id=with_id, headers=retry_after(wait))


# --- Request parsing and the model table -------------------------------------------------------


def _parse_run(raw: bytes) -> tuple[str, dict[str, Any]]:
    """The model and its inputs, from the documented form or the legacy top-level try-on form."""
    try:
        payload = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise Refusal(400, "The request body is not valid JSON.", code="RequestError") from None
    if not isinstance(payload, dict):
        raise Refusal(400, "The request body must be a JSON object.", code="RequestError")
    if "model_name" not in payload and ("model_image" in payload or "garment_image" in payload):
        inputs = {k: v for k, v in payload.items() if k != "webhook_url"}
        if "category" not in inputs:
            raise Refusal(400, "Missing required field 'category'.", code="InputValidationError")
        model_name = "tryon-v1.6"
    else:
        named, raw_inputs = payload.get("model_name"), payload.get("inputs")
        if not isinstance(named, str) or not named:
            raise Refusal(400, "Missing required field 'model_name'.", code="InputValidationError")
        model_name = named
        if model_name not in REQUIRED:
            known = ", ".join(MODEL_NAMES)
            message = f"Unknown model_name '{model_name}'. Use one of: {known}."
            raise Refusal(400, message, code="InputValidationError")
        if not isinstance(raw_inputs, dict):
            raise Refusal(400, "Missing required field 'inputs' (an object).", code="InputValidationError")
        inputs = raw_inputs
    problem = _input_problem(model_name, inputs)
    if problem is not None:
        raise Refusal(400, problem, code="InputValidationError")
    return model_name, inputs


def _input_problem(model_name: str, inputs: dict[str, Any]) -> str | None:
    for name in REQUIRED[model_name]:
        if inputs.get(name) in (None, ""):
            return f"Missing required input '{name}' for model '{model_name}'."
    for name in sorted(IMAGE_FIELDS & inputs.keys()):
        value = inputs[name]
        if value is not None and not _is_image_reference(value):
            return (
                f"Invalid input '{name}': expected an http(s) image URL or a base64 data URI "
                "with its prefix (e.g. data:image/jpeg;base64,<YOUR_BASE64>)."
            )
    enums = {**_ENUMS, **_MODEL_ENUMS.get(model_name, {})}
    for name, allowed in enums.items():
        if name in inputs and (inputs[name] not in allowed or isinstance(inputs[name], bool)):
            choices = " | ".join(map(str, allowed))
            return f"Invalid input '{name}': {inputs[name]!r} is not one of {choices}."
    for name in _COUNT_FIELDS:
        value = inputs.get(name)
        if value is not None and (type(value) is not int or not 1 <= value <= 4):
            return f"Invalid input '{name}': must be an integer from 1 to 4."
    for name in _STRING_FIELDS:
        if name in inputs and not isinstance(inputs[name], str):
            return f"Invalid input '{name}': must be a string."
    if "aspect_ratio" in inputs and _ratio(inputs["aspect_ratio"]) is None:
        return f"Invalid input 'aspect_ratio': {inputs['aspect_ratio']!r} is not a ratio such as '4:5'."
    if "seed" in inputs and type(inputs["seed"]) is not int:
        return "Invalid input 'seed': must be an integer."
    return None


_DATA_URI = re.compile(r"data:image/[\w.+-]+;base64,\s*\S")


def _is_image_reference(value: object) -> bool:
    if not isinstance(value, str):
        return False
    if value.startswith("data:"):
        return _DATA_URI.match(value) is not None
    url = httpx.URL(value) if value.startswith(("http://", "https://")) else None
    return url is not None and bool(url.host)


def _ratio(value: object) -> tuple[int, int] | None:
    match = re.fullmatch(r"(\d{1,2}):(\d{1,2})", value) if isinstance(value, str) else None
    if match is None or int(match.group(1)) == 0 or int(match.group(2)) == 0:
        return None
    return int(match.group(1)), int(match.group(2))


def _typical_seconds(model_name: str, inputs: dict[str, Any], rng: random.Random) -> float:
    if model_name == "tryon-v1.6":
        return rng.uniform(*TRYON_V1_6_SECONDS[str(inputs.get("mode", "balanced"))])
    if model_name == "image-to-video":
        base = VIDEO_SECONDS[str(inputs.get("resolution") or DEFAULT_VIDEO_RESOLUTION)]
        return base * (2 if inputs.get("duration") == 10 else 1) * rng.uniform(0.8, 1.5)
    fastest, usual_from, usual_to, slowest = DURATIONS[model_name]
    roll = rng.random()
    if roll < 0.1:
        return rng.uniform(fastest, usual_from)
    if roll < 0.85:
        return rng.uniform(usual_from, usual_to)
    return rng.uniform(usual_to, slowest)


def _outputs(model_name: str, inputs: dict[str, Any]) -> list[Output]:
    if model_name == "image-to-video":
        ratio = _ratio(inputs.get("aspect_ratio")) or (2, 3)
        width, height = fit(_VIDEO_LONG_SIDE, ratio)
        resolution = inputs.get("resolution") or DEFAULT_VIDEO_RESOLUTION
        label = f"{width}x{height} video ({resolution}, {inputs.get('duration', 5)} s)"
        return [Output("video", "mp4", "video/mp4", width, height, label)]
    if model_name == "tryon-v1.6":
        width, height, count = 864, 1296, int(inputs.get("num_samples", 1))
        label = f"{width}x{height}"
    else:
        default = (1, 1) if model_name in ("packshot", "background-remove") else (2, 3)
        resolution = str(inputs.get("resolution", "1k"))
        width, height = fit(_LONG_SIDE[resolution], _ratio(inputs.get("aspect_ratio")) or default)
        count = int(inputs.get("num_images", 1))
        label = f"{width}x{height}" + (" (4k requested)" if resolution == "4k" else "")
    if inputs.get("output_format") == "jpeg":
        return [Output("image", "jpg", "image/jpeg", width, height, label) for _ in range(count)]
    return [Output("image", "png", "image/png", width, height, label) for _ in range(count)]


def _failure(inputs: dict[str, Any]) -> tuple[str, str] | None:
    for value in _strings(inputs):
        match = FAIL_MARKER.search(value)
        if match is not None:
            name = match.group(1)
            return name, FAILURE_MESSAGES.get(name, f"{name}: the prediction failed.")
    return None


def _without_data(value: Any) -> Any:
    """`value` with each data: URI cut to its header: the state file needs no image bytes."""
    if isinstance(value, str) and value.startswith("data:"):
        return f"{value.partition(',')[0][:80]},<{len(value)} characters not kept>"
    if isinstance(value, dict):
        return {key: _without_data(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_without_data(item) for item in value]
    return value


def _strings(value: object) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for item in value.values() for s in _strings(item)]
    if isinstance(value, list):
        return [s for item in value for s in _strings(item)]
    return []


def _status_name(status: int) -> str:
    try:
        return HTTPStatus(status).phrase.title().replace(" ", "").replace("-", "")
    except ValueError:
        return "HTTPError"
