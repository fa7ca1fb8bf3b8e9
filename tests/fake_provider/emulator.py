"""The fake provider's emulator, on the shared kit."""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from server.sandbox.kit import Emulator, Refusal, next_fault, public_base, retry_after
from tests.fake_provider.operations import DURATIONS, credits


@dataclass
class FakeFaults:
    credits: int = 100
    submit_errors: list[int] = field(default_factory=list)


@dataclass
class FakeStats:
    submissions: int = 0


@dataclass
class Render:
    id: str
    number: int
    created: float
    duration: float
    cost: int
    fails: bool
    canceled: bool = False

    def status(self, now: float) -> str:
        if self.canceled:
            return "canceled"
        if now - self.created < self.duration:
            return "working"
        return "failed" if self.fails else "done"


class FakeEmulator(Emulator):
    title = "Fake"
    state_file = "fake.json"

    def __init__(self, *, faults: FakeFaults | None = None, **common: Any) -> None:
        super().__init__(**common)
        self.faults = faults or FakeFaults()
        self.stats = FakeStats()
        self.renders: dict[str, Render] = {}
        self.app = Starlette(
            routes=[
                Route("/v1/renders", self._submit, methods=["POST"]),
                Route("/v1/renders/{id}", self._status, methods=["GET"]),
                Route("/v1/renders/{id}/cancel", self._cancel, methods=["POST"]),
                Route("/v1/balance", self._balance, methods=["GET"]),
                Route("/files/{id}.png", self._file, methods=["GET"]),
            ]
        )

    async def _submit(self, request: Request) -> Response:
        self.stats.submissions += 1
        try:
            self.check_key(request)
            status = next_fault(self.faults.submit_errors)
            if status is not None:
                headers = retry_after(self.time_scale) if status == 429 else None
                raise Refusal(status, "Injected sandbox fault.", headers=headers)
        except Refusal as exc:
            return JSONResponse({"error": exc.message}, status_code=exc.status, headers=exc.headers)
        body = await request.json()
        number = self.number()
        cost = round(credits("render", body))
        self.faults.credits -= cost
        low, high = DURATIONS[str(body.get("size") or "small")]
        render = Render(
            id=uuid.uuid4().hex,
            number=number,
            created=self.clock(),
            duration=random.Random(number).uniform(low, high) * self.time_scale,
            cost=cost,
            fails="[sandbox:fail]" in str(body.get("prompt")),
        )
        self.renders[render.id] = render
        return JSONResponse({"id": render.id}, headers={"x-credits": str(cost)})

    async def _status(self, request: Request) -> Response:
        self.check_key(request)
        render = self.renders[request.path_params["id"]]
        status = render.status(self.clock())
        if status == "failed" and render.cost:
            self.faults.credits, render.cost = self.faults.credits + render.cost, 0  # refunded
        body: dict[str, Any] = {"id": render.id, "status": status}
        if status == "done":
            body["output_url"] = f"{public_base(request)}/files/{render.id}.png"
        if status == "failed":
            body["error"] = "The render failed."
        return JSONResponse(body)

    async def _cancel(self, request: Request) -> Response:
        self.check_key(request)
        render = self.renders[request.path_params["id"]]
        render.canceled = True
        return JSONResponse({"id": render.id, "status": "canceled"})

    async def _balance(self, request: Request) -> Response:
        self.check_key(request)
        return JSONResponse({"credits": self.faults.credits})

    async def _file(self, request: Request) -> Response:
        render = self.renders[request.path_params["id"]]
        data, mime = await self.render(render.id, "png", 64, 64, ["fake"], render.number)
        return Response(data, media_type=mime)
