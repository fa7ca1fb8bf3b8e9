"""The neo-fashion adapter against fake HTTP (`httpx.MockTransport`) and the emulator's HTTP surface.

Envelope parsing, every documented error code, the forms neo-fashion may answer in, the rate
budget kept from the `X-RateLimit-*` headers, and what the emulator answers on the wire.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import anyio
import httpx
import pytest

from server.errors import (
    AuthError,
    BadResponse,
    InsufficientCredits,
    ProviderError,
    ProviderRejected,
    ProviderUnavailable,
    RateLimited,
)
from server.providers.base import RemoteState, image_fields
from server.providers.neofashion.adapter import NeoFashion
from server.providers.neofashion.emulator import NeoFashionEmulator, NeoFashionFaults
from server.providers.neofashion.operations import OPERATIONS, BulkItem, GenerationsQuery, NoArguments
from tests.conftest import TIME_SCALE, connected

pytestmark = pytest.mark.anyio

BASE = "https://app.neofashion.ai/api/v1"
Handler = Callable[[httpx.Request], httpx.Response]


def envelope(data: Any = None, meta: dict[str, Any] | None = None, error: Any = None) -> dict[str, Any]:
    return {"data": data, "meta": {"request_id": "req_01test", **(meta or {})}, "error": error}


def failure(status: int, code: str, message: str, **details: Any) -> httpx.Response:
    error: dict[str, Any] = {"code": code, "message": message}
    if details:
        error["details"] = details
    return httpx.Response(status, json=envelope(error=error))


def adapter(handler: Handler | httpx.AsyncBaseTransport, key: str = "ne_test_abc") -> NeoFashion:
    transport = handler if isinstance(handler, httpx.AsyncBaseTransport) else httpx.MockTransport(handler)
    client = httpx.AsyncClient(transport=transport)
    neo: NeoFashion = connected(NeoFashion, client, BASE, key)
    return neo


GENERATION = {
    "id": "gen_01",
    "status": "completed",
    "output_url": "https://cdn.example/gen_01.png",
    "credits_used": 50,
}


# --- the wire tables ----------------------------------------------------------------------------------


def test_every_argument_has_one_wire_field_and_every_field_an_argument() -> None:
    for operation, spec in OPERATIONS.items():
        fields = spec.inputs.model_fields
        assert all((f.serialization_alias or name) == name for name, f in fields.items()), operation
    assert set(BulkItem.model_fields) == set(OPERATIONS["image"].inputs.model_fields)
    images = {name for spec in OPERATIONS.values() for name in image_fields(spec.inputs)}
    assert images == {"image_url", "sketch_url"}
    assert {op: spec.route for op, spec in OPERATIONS.items()} == {
        "image": "/generate/image",
        "video": "/generate/video",
        "sketch_to_photo": "/sketch-to-photo",
        "bulk": "/generate/bulk",
    }


async def test_requests_keep_the_base_path_and_carry_the_bearer_key() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json=envelope(GENERATION, {"credits_used": 50, "credits_remaining": 7950}))

    nf = adapter(handler, key="ne_live_secret")
    submission = await nf.submit("image", {"prompt": "dress"})
    (request,) = seen
    assert str(request.url) == f"{BASE}/generate/image"
    assert request.headers["authorization"] == "Bearer ne_live_secret"
    assert json.loads(request.content) == {"prompt": "dress"}
    assert submission.provider_job_id == "gen_01" and submission.credits_used == 50
    assert submission.done is not None and submission.done.state is RemoteState.SUCCEEDED
    assert [o.url for o in submission.done.outputs] == ["https://cdn.example/gen_01.png"]
    assert nf.credits_remaining == 7950


async def test_an_accepted_generation_without_its_output_yet_is_polled() -> None:
    answers = [
        envelope({"id": "gen_02", "status": "queued"}, {"credits_used": 50}),
        envelope({"id": "gen_02", "status": "completed", "credits_used": 50}, {"credits_used": 0}),
        envelope({**GENERATION, "id": "gen_02"}, {"credits_used": 0}),
    ]
    nf = adapter(lambda request: httpx.Response(200, json=answers.pop(0)))
    submission = await nf.submit("image", {"prompt": "dress"})
    assert submission.done is None and submission.provider_job_id == "gen_02"
    late = await nf.submit("image", {"prompt": "dress"})
    assert late.done is None  # completed, but no output_url in the answer: poll for it
    report = await nf.status("gen_02", "image")
    assert report.state is RemoteState.SUCCEEDED and report.credits_used == 50  # data's, not meta's 0


async def test_bulk_answer_lists_the_child_generations() -> None:
    data = {"id": "bulk_01", "status": "processing", "generations": [{"id": "gen_a"}, {"id": "gen_b"}]}
    nf = adapter(lambda request: httpx.Response(200, json=envelope(data, {"credits_used": 100})))
    submission = await nf.submit("bulk", {"items": [{"prompt": "a"}, {"prompt": "b"}]})
    assert submission.provider_job_id == "bulk_01" and submission.children == ("gen_a", "gen_b")
    assert submission.child_operation == "image" and submission.credits_used == 100


# --- the documented error codes ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("response", "kind", "code", "words"),
    [
        (
            failure(
                402,
                "INSUFFICIENT_CREDITS",
                "Credit balance too low for this operation.",
                required=50,
                available=20,
            ),
            InsufficientCredits,
            "insufficient_credits",
            ["needs 50 credits", "has 20", "Top up", "req_01test"],
        ),
        (
            failure(401, "UNAUTHORIZED", "Missing or invalid API key / JWT."),
            AuthError,
            "unauthorized",
            ["NEOFASHION_API_KEY", "ne_live_", "ne_test_"],
        ),
        (
            failure(403, "FORBIDDEN", "Feature not available on current plan."),
            AuthError,
            "forbidden",
            ["plan", "FORBIDDEN"],
        ),
        (
            failure(404, "NOT_FOUND", "Generation or resource does not exist in this workspace."),
            ProviderRejected,
            "not_found",
            ["does not exist"],
        ),
        (
            failure(502, "PROVIDER_ERROR", "AI provider returned an error; credits refunded automatically."),
            ProviderUnavailable,
            "provider_error",
            ["refunded"],
        ),
        (failure(500, "INTERNAL_ERROR", "boom"), ProviderUnavailable, "provider_unavailable", ["boom"]),
        (
            httpx.Response(502, text="<html>Bad Gateway</html>"),
            ProviderUnavailable,
            "provider_unavailable",
            ["Bad Gateway"],
        ),
    ],
)
async def test_documented_error_codes_map_to_the_exception_tree(
    response: httpx.Response, kind: type[ProviderError], code: str, words: list[str]
) -> None:
    nf = adapter(lambda request: response)
    with pytest.raises(kind) as caught:
        await nf.submit("image", {"prompt": "dress"})
    error = caught.value
    assert type(error) is kind and error.code == code and error.provider == "neofashion"
    assert error.retryable is (code in ("provider_error", "provider_unavailable"))
    for word in words:
        assert word in error.message, error.message


async def test_rate_limited_carries_retry_after_and_stops_the_kind() -> None:
    nf = adapter(
        lambda request: httpx.Response(
            429,
            json=envelope(error={"code": "RATE_LIMITED", "message": "Request rate exceeds plan limit."}),
            headers={"retry-after": "0.25", "x-ratelimit-remaining": "0", "x-ratelimit-reset": "0.25"},
        )
    )
    with pytest.raises(RateLimited) as caught:
        await nf.submit("image", {"prompt": "dress"})
    assert caught.value.retryable and caught.value.retry_after == 0.25


async def test_an_error_inside_a_2xx_envelope_is_mapped_by_its_code() -> None:
    body = envelope(
        error={
            "code": "INSUFFICIENT_CREDITS",
            "message": "Too low.",
            "details": {"required": 200, "available": 5},
        }
    )
    nf = adapter(lambda request: httpx.Response(200, json=body))
    with pytest.raises(InsufficientCredits, match="needs 200 credits"):
        await nf.submit("video", {"prompt": "turn"})


@pytest.mark.parametrize(
    "response",
    [
        httpx.Response(200, text="<html>hello</html>"),
        httpx.Response(200, json={"id": "gen_01", "status": "completed"}),  # no envelope
        httpx.Response(200, json=envelope({"status": "queued"})),  # no id
    ],
)
async def test_an_unreadable_success_is_a_bad_response(response: httpx.Response) -> None:
    nf = adapter(lambda request: response)
    with pytest.raises(BadResponse):
        await nf.submit("image", {"prompt": "dress"})


async def test_provider_error_while_polling_fails_the_generation_refunded() -> None:
    """Either form: a failed generation in the data, or the detail answered 502 PROVIDER_ERROR."""
    failed = {"id": "gen_03", "status": "failed", "error": {"code": "PROVIDER_ERROR", "message": "upstream"}}
    answers = [
        httpx.Response(200, json=envelope(failed)),
        failure(502, "PROVIDER_ERROR", "AI provider returned an error; credits refunded automatically."),
    ]
    nf = adapter(lambda request: answers.pop(0))
    for _ in range(2):
        report = await nf.status("gen_03", "image")
        assert report.state is RemoteState.FAILED and report.credits_used == 0
        assert report.error is not None and report.error.code == "provider_error" and report.error.retryable
        assert "refunded" in report.error.message


async def test_a_plain_502_while_polling_is_retried_not_failed() -> None:
    nf = adapter(lambda request: httpx.Response(502, text="Bad Gateway"))
    with pytest.raises(ProviderUnavailable) as caught:
        await nf.status("gen_04", "image")
    assert caught.value.code == "provider_unavailable"


async def test_balance_queries_and_credits_remaining() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        path = request.url.path.removeprefix("/api/v1")
        if path == "/credits/balance":
            return httpx.Response(200, json=envelope({"balance": 7950}, {"credits_remaining": 7950}))
        if path == "/generations":
            assert dict(request.url.params) == {"status": "completed", "page": "2", "limit": "5"}
            meta = {"page": 2, "limit": 5, "total": 12, "has_more": True}
            return httpx.Response(200, json=envelope([GENERATION], meta))
        return httpx.Response(200, json=envelope([{"id": "per_ava", "name": "Ava"}]))

    nf = adapter(handler)
    balance = await nf.balance()
    assert balance.credits == 7950 and nf.credits_remaining == 7950
    listed = await nf.query("generations", GenerationsQuery(status="completed", page=2, limit=5))
    assert listed == {"generations": [GENERATION], "page": 2, "limit": 5, "total": 12, "next_page": 3}
    personas = await nf.query("personas", NoArguments())
    assert personas == {"personas": [{"id": "per_ava", "name": "Ava"}], "total": 1}


# --- the rate budget from X-RateLimit-* -------------------------------------------------------------


class _Gate(httpx.AsyncBaseTransport):
    """Holds every request until released, counting how many are in flight at once."""

    def __init__(self, headers: dict[str, str]) -> None:
        self.headers = headers
        self.in_flight = 0
        self.most = 0
        self.release = anyio.Event()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.in_flight += 1
        self.most = max(self.most, self.in_flight)
        await self.release.wait()
        self.in_flight -= 1
        return httpx.Response(200, json=envelope([]), headers=self.headers)


@pytest.mark.parametrize(
    ("headers", "most"),
    [
        ({"x-ratelimit-remaining": "3", "x-ratelimit-reset": "30"}, 3),
        ({}, 10),  # a provider that sends no headers is never held back
    ],
)
async def test_requests_in_flight_stay_within_the_announced_remaining(
    headers: dict[str, str], most: int
) -> None:
    gate = _Gate(headers)
    nf = adapter(gate)
    gate.release.set()
    await nf.query("personas", NoArguments())  # the first answer tells the numbers
    gate.release = anyio.Event()
    async with anyio.create_task_group() as tg:
        for _ in range(10):
            tg.start_soon(nf.query, "personas", NoArguments())
        await anyio.sleep(0.05)
        assert gate.most == most
        gate.release.set()


# --- the emulator on the wire ------------------------------------------------------------------------


async def test_emulator_answers_every_endpoint_in_the_envelope_with_rate_headers() -> None:
    emu = NeoFashionEmulator(time_scale=TIME_SCALE, sync_seconds=0, rate_per_minute=100)
    transport = httpx.ASGITransport(app=emu.app)
    async with httpx.AsyncClient(
        transport=transport, base_url=BASE, headers={"authorization": "Bearer ne_test_x"}
    ) as client:
        created = await client.post("/generate/image", json={"prompt": "dress"})
        generation_id = created.json()["data"]["id"]
        answers = [
            created,
            await client.post("/generate/video", json={"prompt": "turn", "duration": 5}),
            await client.post("/generate/bulk", json={"items": [{"prompt": "a"}]}),
            await client.post("/sketch-to-photo", json={"sketch_url": "https://x.example/s.png"}),
            await client.get("/generations", params={"limit": 2}),
            await client.get(f"/generations/{generation_id}"),
            await client.get("/credits/balance"),
            await client.get("/personas"),
            await client.get("/models"),
            await client.get("/generations/gen_missing"),
            await client.get("/nothing-here"),
            await client.post("/generate/image", json={"prompt": "x", "colour": "red"}),
            await client.post(
                "/generate/image", json={"prompt": "x", "image_url": "data:image/png;base64,AAAA"}
            ),
            await client.get("/personas", headers={"authorization": ""}),
        ]
    statuses = [a.status_code for a in answers]
    assert statuses == [200] * 9 + [404, 404, 400, 400, 401]
    for answer in answers:
        body = answer.json()
        assert set(body) == {"data", "meta", "error"} and body["meta"]["request_id"].startswith("req_")
        assert {"x-ratelimit-remaining", "x-ratelimit-reset"} <= set(answer.headers)
        if answer.status_code >= 400:
            assert body["data"] is None and body["error"]["code"] and body["error"]["message"]
    assert answers[0].json()["meta"]["credits_used"] == 50
    assert answers[1].json()["meta"]["credits_used"] == 200
    assert (
        answers[2].json()["meta"]["credits_used"] == 50 and len(answers[2].json()["data"]["generations"]) == 1
    )
    assert answers[3].json()["meta"]["credits_used"] == 60
    assert answers[6].json()["data"]["balance"] == 10_000 - 360
    assert answers[4].json()["meta"] | {"request_id": "x"} == {
        "page": 1,
        "limit": 2,
        "total": 4,
        "has_more": True,
        "credits_remaining": 10_000 - 360,
        "request_id": "x",
    }
    assert [a.json()["error"]["code"] for a in answers[9:]] == [
        "NOT_FOUND",
        "NOT_FOUND",
        "VALIDATION_ERROR",
        "VALIDATION_ERROR",
        "UNAUTHORIZED",
    ]
    remaining = [int(a.headers["x-ratelimit-remaining"]) for a in answers[:9]]
    assert remaining == list(range(99, 90, -1))


async def test_emulator_refuses_past_the_plan_rate_with_retry_after() -> None:
    emu = NeoFashionEmulator(time_scale=1.0, rate_per_minute=3)
    transport = httpx.ASGITransport(app=emu.app)
    async with httpx.AsyncClient(
        transport=transport, base_url=BASE, headers={"authorization": "Bearer k"}
    ) as client:
        answers = [await client.get("/personas") for _ in range(4)]
    assert [a.status_code for a in answers] == [200, 200, 200, 429]
    assert [a.headers["x-ratelimit-remaining"] for a in answers] == ["2", "1", "0", "0"]
    assert answers[3].json()["error"]["code"] == "RATE_LIMITED"
    assert 59 < float(answers[3].headers["retry-after"]) <= 60
    assert 59 < float(answers[2].headers["x-ratelimit-reset"]) <= 60
    assert emu.stats.sent_429 == 1


async def test_emulator_debits_before_and_refunds_provider_errors() -> None:
    clock = [0.0]
    emu = NeoFashionEmulator(
        time_scale=1.0,
        sync_seconds=0,
        faults=NeoFashionFaults(credits=120, provider_errors=1),
        clock=lambda: clock[0],
    )
    transport = httpx.ASGITransport(app=emu.app)
    async with httpx.AsyncClient(
        transport=transport, base_url=BASE, headers={"authorization": "Bearer k"}
    ) as client:
        first = (await client.post("/generate/image", json={"prompt": "a"})).json()
        second = (await client.post("/generate/image", json={"prompt": "b"})).json()
        assert first["meta"]["credits_remaining"] == 70 and second["meta"]["credits_remaining"] == 20
        broke = await client.post("/generate/image", json={"prompt": "c"})
        assert broke.status_code == 402
        assert broke.json()["error"]["details"] == {"required": 50, "available": 20}
        clock[0] = 1000.0
        failed = (await client.get(f"/generations/{first['data']['id']}")).json()
        done = (await client.get(f"/generations/{second['data']['id']}")).json()
    assert failed["data"]["status"] == "failed" and failed["data"]["credits_used"] == 0
    assert (
        failed["data"]["error"]["code"] == "PROVIDER_ERROR"
        and "refunded" in failed["data"]["error"]["message"]
    )
    assert done["data"]["status"] == "completed" and done["data"]["output_url"].startswith(
        "https://app.neofashion.ai/files/gen_"
    )
    assert failed["meta"]["credits_remaining"] == 70 and emu.balance() == 70
