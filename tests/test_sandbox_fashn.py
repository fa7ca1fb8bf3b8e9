"""The FASHN emulator answers as FASHN's documents say: lifecycle, limits, errors, faults, media."""

from __future__ import annotations

import base64
import io
import json
import os
import socket
import sys
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
import uvicorn
from PIL import Image

from server import paths
from server.providers.fashn import emulator as fashn
from server.providers.fashn.emulator import KEEP_FINISHED, FashnEmulator, FashnFaults
from server.sandbox.images import placeholder_png, placeholder_video

pytestmark = pytest.mark.anyio  # at collection time, so parametrized async tests keep their arguments

BASE = "http://sandbox.fashn.local"
AUTH = {"Authorization": "Bearer sandbox-token"}
MODEL = "https://example.com/model.jpg"
PRODUCT = "https://example.com/dress.png"
TINY_PNG = "data:image/png;base64," + base64.b64encode(placeholder_png(8, 8, [])).decode()


class Clock:
    """A clock the test steps by hand, so limits and lifecycles are exact."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@asynccontextmanager
async def client(
    emu: FashnEmulator, headers: dict[str, str] | None = None
) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=emu.app)
    async with httpx.AsyncClient(
        transport=transport, base_url=BASE, headers=AUTH if headers is None else headers
    ) as c:
        yield c


def tryon(**extra: Any) -> dict[str, Any]:
    return {"model_name": "tryon-max", "inputs": {"model_image": MODEL, "product_image": PRODUCT, **extra}}


async def run_ok(c: httpx.AsyncClient, body: dict[str, Any]) -> str:
    r = await c.post("/v1/run", json=body)
    assert r.status_code == 200, r.text
    assert r.json()["error"] is None
    prediction_id: str = r.json()["id"]
    return prediction_id


async def wait_terminal(
    c: httpx.AsyncClient, prediction_id: str, seen: list[str] | None = None
) -> dict[str, Any]:
    with anyio.fail_after(4):
        while True:
            r = await c.get(f"/v1/status/{prediction_id}")
            assert r.status_code == 200, r.text
            body: dict[str, Any] = r.json()
            if seen is not None and (not seen or seen[-1] != body["status"]):
                seen.append(body["status"])
            if body["status"] in ("completed", "failed", "canceled"):
                return body
            await anyio.sleep(0.005)


def png_size(data: bytes) -> tuple[int, int]:
    with Image.open(io.BytesIO(data)) as image:
        assert image.format == "PNG"
        return image.size


# --- The happy path -----------------------------------------------------------------------------


async def test_run_poll_complete_and_download_from_the_cdn() -> None:
    emu = FashnEmulator(time_scale=0.002)
    async with client(emu) as c:
        r = await c.post("/v1/run", json=tryon(resolution="2k", aspect_ratio="4:5", num_images=2))
        assert r.status_code == 200
        assert r.headers["x-fashn-credits-used"] == "6"
        prediction_id = r.json()["id"]
        assert prediction_id.endswith("-u1")
        seen: list[str] = []
        body = await wait_terminal(c, prediction_id, seen)
        final = await c.get(f"/v1/status/{prediction_id}")
        assert final.headers["x-fashn-credits-used"] == "6"
        assert body == {"id": prediction_id, "status": "completed", "output": body["output"], "error": None}
        assert seen[-1] == "completed" and set(seen) <= {"starting", "in_queue", "processing", "completed"}
        assert body["output"] == [f"{BASE}/cdn/{prediction_id}/output_{n}.png" for n in range(2)]
        media = await c.get(body["output"][1])
        assert media.status_code == 200
        assert media.headers["content-type"] == "image/png"
        assert png_size(media.content) == (1638, 2048)
        assert (await c.get(f"/cdn/{prediction_id}/output_2.png")).status_code == 404
        credits = (await c.get("/v1/credits")).json()
    assert credits == {"credits": {"total": 994, "subscription": 994, "on_demand": 0}}
    record = emu.stats.predictions[prediction_id]
    assert (record.model_name, record.credits, record.status) == ("tryon-max", 6, "completed")
    assert emu.stats.status_calls_by_id[prediction_id] == emu.stats.status_calls
    assert emu.stats.run_calls == 1 and emu.stats.credits_calls == 1 and emu.stats.sent_429 == 0


async def test_states_follow_the_clock() -> None:
    clock = Clock()
    emu = FashnEmulator(time_scale=1.0, clock=clock)
    async with client(emu) as c:
        prediction_id = await run_ok(c, tryon())
        duration = emu.stats.predictions[prediction_id].duration
        assert 20 <= duration <= 120
        states = []
        for share in (0.0, 0.1, 0.5, 1.0):
            clock.now = emu.stats.predictions[prediction_id].created + share * duration
            states.append((await c.get(f"/v1/status/{prediction_id}")).json()["status"])
    assert states == ["starting", "in_queue", "processing", "completed"]


async def test_durations_are_deterministic_per_seed_and_differ_between_predictions() -> None:
    async def durations(seed: int) -> list[float]:
        emu = FashnEmulator(time_scale=1.0, seed=seed, clock=Clock())
        async with client(emu) as c:
            for _ in range(3):
                await run_ok(c, tryon())
        return [p.duration for p in emu.stats.predictions.values()]

    first = await durations(7)
    assert first == await durations(7) != await durations(8)
    assert len(set(first)) == 3


async def test_base64_outputs_and_jpeg() -> None:
    emu = FashnEmulator(time_scale=0.002)
    async with client(emu) as c:
        png_id = await run_ok(c, tryon(return_base64=True))
        jpeg_id = await run_ok(c, tryon(output_format="jpeg"))
        png_body = await wait_terminal(c, png_id)
        jpeg_body = await wait_terminal(c, jpeg_id)
        [data_uri] = png_body["output"]
        assert data_uri.startswith("data:image/png;base64,")
        assert png_size(base64.b64decode(data_uri.split(",", 1)[1])) == (683, 1024)
        [jpeg_url] = jpeg_body["output"]
        assert jpeg_url.endswith("/output_0.jpg")
        jpeg = await c.get(jpeg_url)
    assert jpeg.headers["content-type"] == "image/jpeg"
    assert jpeg.content[:3] == b"\xff\xd8\xff"


async def test_legacy_top_level_form_is_tryon_v1_6() -> None:
    emu = FashnEmulator(time_scale=0.002)
    async with client(emu) as c:
        legacy = {"model_image": MODEL, "garment_image": TINY_PNG, "category": "tops", "num_samples": 2}
        r = await c.post("/v1/run", json=legacy)
        assert r.status_code == 200 and r.headers["x-fashn-credits-used"] == "2"
        body = await wait_terminal(c, r.json()["id"])
        assert len(body["output"]) == 2
        assert png_size((await c.get(body["output"][0])).content) == (864, 1296)
        no_category = await c.post("/v1/run", json={"model_image": MODEL, "garment_image": PRODUCT})
    assert emu.stats.predictions[r.json()["id"]].model_name == "tryon-v1.6"
    assert no_category.status_code == 400
    assert no_category.json()["error"]["name"] == "InputValidationError"


async def test_image_to_video_serves_an_mp4() -> None:
    emu = FashnEmulator(time_scale=0.0005)
    async with client(emu) as c:
        r = await c.post(
            "/v1/run",
            json={
                "model_name": "image-to-video",
                "inputs": {"image": MODEL, "resolution": "720p", "duration": 10},
            },
        )
        assert r.headers["x-fashn-credits-used"] == "6"
        body = await wait_terminal(c, r.json()["id"])
        [url] = body["output"]
        assert url.endswith("/output_0.mp4")
        video = await c.get(url)
    assert video.headers["content-type"] == "video/mp4"
    assert video.content[4:8] == b"ftyp"


# --- Rejections ---------------------------------------------------------------------------------


async def test_missing_or_wrong_key_is_401() -> None:
    emu = FashnEmulator(api_key="right")
    async with client(emu, headers={}) as c:
        missing = await c.post("/v1/run", json=tryon())
        wrong = await c.get("/v1/status/x", headers={"Authorization": "Bearer wrong"})
        credits = await c.get("/v1/credits", headers={"Authorization": "Bearer right"})
    assert missing.status_code == 401
    assert missing.json() == {
        "id": None,
        "error": {"name": "UnauthorizedAccess", "message": missing.json()["error"]["message"]},
    }
    assert wrong.status_code == 401 and wrong.json()["error"]["name"] == "UnauthorizedAccess"
    assert credits.status_code == 200
    assert emu.stats.predictions == {}


async def test_any_token_passes_without_a_configured_key() -> None:
    async with client(FashnEmulator(), headers={"Authorization": "Bearer "}) as c:
        assert (await c.get("/v1/credits")).status_code == 401
        assert (await c.get("/v1/credits", headers={"Authorization": "Bearer anything"})).status_code == 200


@pytest.mark.parametrize(
    ("body", "name", "text"),
    [
        (b"{not json", "RequestError", "not valid JSON"),
        ({"model_name": "tryon-mega", "inputs": {}}, "InputValidationError", "tryon-mega"),
        (
            {"model_name": "tryon-max", "inputs": {"model_image": MODEL}},
            "InputValidationError",
            "product_image",
        ),
        ({"model_name": "edit", "inputs": {"image": MODEL}}, "InputValidationError", "prompt"),
        ({"model_name": "edit"}, "InputValidationError", "inputs"),
        (tryon(model_image="/home/me/model.jpg"), "InputValidationError", "model_image"),
        (tryon(product_image="ftp://example.com/a.png"), "InputValidationError", "product_image"),
        (tryon(product_image="data:text/plain;base64,aGk="), "InputValidationError", "product_image"),
        (tryon(resolution="8k"), "InputValidationError", "resolution"),
        (tryon(num_images=5), "InputValidationError", "num_images"),
        (tryon(generation_mode="fast"), "InputValidationError", "generation_mode"),
        (
            {"model_name": "reframe", "inputs": {"image": MODEL, "aspect_ratio": "wide"}},
            "InputValidationError",
            "aspect_ratio",
        ),
    ],
)
@pytest.mark.parametrize("shape", ["object", "string"])
async def test_bad_requests_are_400(body: dict[str, Any] | bytes, name: str, text: str, shape: str) -> None:
    emu = FashnEmulator(faults=FashnFaults(error_shape=shape))
    async with client(emu) as c:
        if isinstance(body, bytes):
            r = await c.post("/v1/run", content=body, headers={"content-type": "application/json"})
        else:
            r = await c.post("/v1/run", json=body)
    assert r.status_code == 400
    assert r.json()["id"] is None
    error = r.json()["error"]
    if shape == "object":
        assert error["name"] == name
        assert text in error["message"]
    else:
        assert isinstance(error, str) and text in error
    assert emu.stats.predictions == {} and emu.faults.credits == 1000


async def test_data_uri_inputs_are_accepted() -> None:
    async with client(FashnEmulator()) as c:
        await run_ok(c, tryon(model_image=TINY_PNG, product_image="data:image/jpg;base64, /9j/4AAQ"))


async def test_unknown_prediction_is_404() -> None:
    async with client(FashnEmulator()) as c:
        status = await c.get("/v1/status/00000000-0000-0000-0000-000000000000-u1")
        cancel = await c.get("/v1/cancel/nope")
    assert status.status_code == 404 and status.json()["error"]["name"] == "NotFound"
    assert cancel.status_code == 404


# --- Limits -------------------------------------------------------------------------------------


async def test_run_rate_limit_is_50_per_scaled_minute() -> None:
    clock = Clock()
    emu = FashnEmulator(time_scale=0.5, clock=clock)
    async with client(emu) as c:
        for _ in range(50):
            prediction_id = await run_ok(c, tryon())
            assert (await c.get(f"/v1/cancel/{prediction_id}")).json()["status"] == "canceled"
            clock.advance(0.1)
        limited = await c.post("/v1/run", json=tryon())
        assert limited.status_code == 429
        assert limited.json()["error"]["name"] == "RateLimitExceeded"
        retry_after = float(limited.headers["retry-after"])
        assert retry_after == pytest.approx(30 - 5.0, abs=0.01)
        clock.advance(retry_after)
        await run_ok(c, tryon())
    assert emu.stats.sent_429 == 1 and emu.stats.run_calls == 52
    assert emu.faults.credits == 1000 - 2


async def test_more_than_six_in_flight_is_429() -> None:
    clock = Clock()
    emu = FashnEmulator(time_scale=1.0, clock=clock)
    async with client(emu) as c:
        ids = [await run_ok(c, tryon()) for _ in range(6)]
        limited = await c.post("/v1/run", json=tryon())
        assert limited.status_code == 429
        assert limited.json()["error"]["name"] == "ConcurrencyLimitExceeded"
        soonest = min(p.ends_at() for p in emu.stats.predictions.values()) - clock.now
        assert float(limited.headers["retry-after"]) == pytest.approx(soonest, abs=0.01)
        await c.get(f"/v1/cancel/{ids[0]}")
        await run_ok(c, tryon())
        clock.advance(121)
        for _ in range(6):
            await run_ok(c, tryon())
    assert emu.stats.max_in_flight == 6 and emu.stats.sent_429 == 1


async def test_status_and_credits_rate_limits() -> None:
    clock = Clock()
    emu = FashnEmulator(time_scale=0.1, clock=clock)
    async with client(emu) as c:
        prediction_id = await run_ok(c, tryon())
        for _ in range(50):
            assert (await c.get(f"/v1/status/{prediction_id}")).status_code == 200
        status = await c.get(f"/v1/status/{prediction_id}")
        for _ in range(30):
            assert (await c.get("/v1/credits")).status_code == 200
        credits = await c.get("/v1/credits")
        clock.advance(1.0)
        assert (await c.get(f"/v1/status/{prediction_id}")).status_code == 200
        assert (await c.get("/v1/credits")).status_code == 200
    assert status.status_code == 429 and float(status.headers["retry-after"]) == pytest.approx(1.0)
    assert credits.status_code == 429 and "retry-after" in credits.headers
    assert emu.stats.sent_429 == 2 and emu.stats.status_calls_by_id[prediction_id] == 52


@pytest.mark.parametrize(
    ("as_429", "status", "name"), [(False, 402, "InsufficientCredits"), (True, 429, "OutOfCredits")]
)
async def test_out_of_credits(as_429: bool, status: int, name: str) -> None:
    emu = FashnEmulator(faults=FashnFaults(credits=5, out_of_credits_as_429=as_429))
    async with client(emu) as c:
        await run_ok(c, tryon(resolution="2k"))
        refused = await c.post("/v1/run", json=tryon(resolution="2k"))
        balance = (await c.get("/v1/credits")).json()["credits"]["total"]
    assert refused.status_code == status
    assert refused.json()["error"]["name"] == name and "credits" in refused.json()["error"]["message"]
    assert "retry-after" not in refused.headers
    assert balance == 2 and len(emu.stats.predictions) == 1
    assert emu.stats.sent_429 == (1 if as_429 else 0)


@pytest.mark.parametrize(
    ("model_name", "inputs", "credits"),
    [
        (
            "tryon-max",
            {"model_image": MODEL, "product_image": PRODUCT, "resolution": "4k", "num_images": 4},
            20,
        ),
        ("tryon-v1.6", {"model_image": MODEL, "garment_image": PRODUCT, "num_samples": 3}, 3),
        # 2k with generation_mode omitted bills as quality (+1), and the face reference adds 3.
        ("model-create", {"prompt": "editorial model", "resolution": "2k", "face_reference": MODEL}, 6),
        ("product-to-model", {"product_image": PRODUCT, "num_images": 2}, 2),
        ("image-to-video", {"image": MODEL}, 6),  # 1080p, 5 s: FASHN's default resolution
        ("image-to-video", {"image": MODEL, "resolution": "480p"}, 1),
        ("image-to-video", {"image": MODEL, "resolution": "1080p", "duration": 10}, 12),
        ("background-remove", {"image": MODEL}, 1),
    ],
)
async def test_prices(model_name: str, inputs: dict[str, Any], credits: int) -> None:
    async with client(FashnEmulator()) as c:
        r = await c.post("/v1/run", json={"model_name": model_name, "inputs": inputs})
    assert r.status_code == 200 and r.headers["x-fashn-credits-used"] == str(credits)


# --- Job failures and cancellation --------------------------------------------------------------


@pytest.mark.parametrize("shape", ["object", "string"])
async def test_failure_marker_fails_the_prediction_and_refunds(shape: str) -> None:
    emu = FashnEmulator(time_scale=0.002, faults=FashnFaults(error_shape=shape))
    async with client(emu) as c:
        prediction_id = await run_ok(c, tryon(prompt="tuck in shirt [sandbox:fail=PoseError]"))
        assert emu.faults.credits == 998
        body = await wait_terminal(c, prediction_id)
        final = await c.get(f"/v1/status/{prediction_id}")
        assert final.headers["x-fashn-credits-used"] == "0"
        assert (await c.get("/v1/credits")).json()["credits"]["total"] == 1000
    assert body["status"] == "failed" and body["output"] is None
    if shape == "object":
        assert body["error"]["name"] == "PoseError" and "pose" in body["error"]["message"]
    else:
        assert isinstance(body["error"], str) and "pose" in body["error"]


async def test_cancel_stays_canceled_and_refunds() -> None:
    clock = Clock()
    emu = FashnEmulator(time_scale=1.0, clock=clock)
    async with client(emu) as c:
        prediction_id = await run_ok(c, tryon(num_images=2))
        canceled = await c.get(f"/v1/cancel/{prediction_id}")
        clock.advance(500)
        status = await c.get(f"/v1/status/{prediction_id}")
        again = await c.get(f"/v1/cancel/{prediction_id}")
        cdn = await c.get(f"/cdn/{prediction_id}/output_0.png")
    assert canceled.json() == {"id": prediction_id, "status": "canceled", "error": None}
    assert status.json() == {"id": prediction_id, "status": "canceled", "output": None, "error": None}
    assert again.json()["status"] == "canceled"
    assert cdn.status_code == 404
    assert emu.faults.credits == 1000 and emu.stats.cancel_calls == 2


# --- Faults -------------------------------------------------------------------------------------


async def test_injected_status_codes() -> None:
    emu = FashnEmulator(time_scale=0.002, faults=FashnFaults(run_errors=[500, 503, 429], status_errors=[502]))
    async with client(emu) as c:
        answers = [await c.post("/v1/run", json=tryon()) for _ in range(4)]
        prediction_id = answers[-1].json()["id"]
        bad_gateway = await c.get(f"/v1/status/{prediction_id}")
        fine = await c.get(f"/v1/status/{prediction_id}")
    assert [a.status_code for a in answers] == [500, 503, 429, 200]
    assert answers[0].json() == {"id": None, "error": answers[0].json()["error"]}
    assert answers[1].json()["error"]["name"] == "ServiceUnavailable"
    assert float(answers[2].headers["retry-after"]) > 0
    assert bad_gateway.status_code == 502 and fine.status_code == 200
    assert len(emu.stats.predictions) == 1 and emu.stats.sent_429 == 1


async def test_malformed_success_still_creates_and_charges() -> None:
    emu = FashnEmulator(faults=FashnFaults(run_malformed=1))
    async with client(emu) as c:
        r = await c.post("/v1/run", json=tryon())
        with pytest.raises(ValueError):
            r.json()
        await run_ok(c, tryon())
    assert r.status_code == 200
    assert len(emu.stats.predictions) == 2 and emu.faults.credits == 996


async def test_dropped_connection_after_accept_surfaces_as_remote_protocol_error() -> None:
    emu = FashnEmulator(faults=FashnFaults(run_drop_after_accept=1))
    async with client(emu) as c:
        with pytest.raises(httpx.RemoteProtocolError):
            await c.post("/v1/run", json=tryon())
        await run_ok(c, tryon())
    assert len(emu.stats.predictions) == 2 and emu.faults.credits == 996


# --- State kept across restarts ----------------------------------------------------------------


async def test_a_new_emulator_on_the_state_folder_answers_for_the_old_ones_predictions(
    tmp_path: Path,
) -> None:
    first = FashnEmulator(time_scale=0.002, state_dir=tmp_path)
    async with client(first) as c:
        prediction_id = await run_ok(c, tryon(model_image=TINY_PNG, resolution="2k"))
    saved = (tmp_path / "fashn.json").read_text()
    assert TINY_PNG not in saved and "data:image/png;base64,<" in saved
    second = FashnEmulator(time_scale=0.002, state_dir=tmp_path)  # the restarted server
    assert second.faults.credits == 997
    assert abs(second.stats.predictions[prediction_id].created - time.time()) < 30  # wall-clock
    async with client(second) as c:
        body = await wait_terminal(c, prediction_id)
        assert body["status"] == "completed"
        [url] = body["output"]
        image = await c.get(url)
        balance = (await c.get("/v1/credits")).json()["credits"]["total"]
        next_id = await run_ok(c, tryon())
    assert image.status_code == 200 and png_size(image.content) == (1365, 2048)
    assert balance == 997 and second.faults.credits == 995
    assert second.stats.predictions[next_id].number == 1  # a new seed, not the first one's again


@pytest.mark.parametrize("content", [None, b"{not json", b'{"credits": "lots"}', b"[]", b"\xff\xfe"])
async def test_a_missing_or_corrupt_state_file_starts_empty(
    tmp_path: Path, content: bytes | None, caplog: pytest.LogCaptureFixture
) -> None:
    state_dir = tmp_path / "sandbox"
    if content is not None:
        state_dir.mkdir()
        (state_dir / "fashn.json").write_bytes(content)
    emu = FashnEmulator(time_scale=0.002, state_dir=state_dir)
    assert emu.stats.predictions == {} and emu.faults.credits == 1000
    assert ("ignoring the FASHN sandbox state" in caplog.text) is (content is not None)
    async with client(emu) as c:
        prediction_id = await run_ok(c, tryon())
        assert (await c.get("/v1/status/00000000-0000-0000-0000-000000000000-u1")).status_code == 404
    again = FashnEmulator(time_scale=0.002, state_dir=state_dir)
    assert list(again.stats.predictions) == [prediction_id] and again.faults.credits == 998


async def test_an_unusable_state_folder_only_costs_the_persistence(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    not_a_folder = tmp_path / "file"
    not_a_folder.write_text("")
    emu = FashnEmulator(time_scale=0.002, state_dir=not_a_folder)
    async with client(emu) as c:
        body = await wait_terminal(c, await run_ok(c, tryon()))
    assert body["status"] == "completed" and emu.faults.credits == 998
    assert "could not save the FASHN sandbox state" in caplog.text


async def test_two_emulators_on_one_folder_merge_cancels_refunds_and_charges(tmp_path: Path) -> None:
    clock = Clock()
    server = FashnEmulator(time_scale=1.0, clock=clock, state_dir=tmp_path)
    other = FashnEmulator(time_scale=1.0, clock=clock, state_dir=tmp_path)  # like `callsheet jobs cancel`
    async with client(server) as c:
        first = await run_ok(c, tryon())
    async with client(other) as c:  # reads in the prediction it has not seen
        assert (await c.get(f"/v1/cancel/{first}")).json()["status"] == "canceled"
    assert other.faults.credits == 1000
    async with client(server) as c:
        second = await run_ok(c, tryon(resolution="2k"))
        status = (await c.get(f"/v1/status/{first}")).json()["status"]
    assert status == "canceled" and server.faults.credits == 997
    later = FashnEmulator(time_scale=1.0, clock=clock, state_dir=tmp_path)
    assert set(later.stats.predictions) == {first, second} and later.faults.credits == 997
    assert later.stats.predictions[first].refunded and later.stats.predictions[second].number == 1


async def test_finished_predictions_are_forgotten_after_an_hour(tmp_path: Path) -> None:
    clock = Clock()
    emu = FashnEmulator(time_scale=1.0, clock=clock, state_dir=tmp_path)
    async with client(emu) as c:
        old = await run_ok(c, tryon())
        clock.advance(200)
        assert (await c.get(f"/v1/status/{old}")).json()["status"] == "completed"
        clock.advance(KEEP_FINISHED)
        new = await run_ok(c, tryon())
        gone = await c.get(f"/v1/status/{old}")
    assert gone.status_code == 404
    assert list(emu.stats.predictions) == [new] and emu.faults.credits == 996
    saved = json.loads((tmp_path / "fashn.json").read_text())
    assert [p["id"] for p in saved["predictions"]] == [new] and saved["credits"] == 996


async def test_at_most_max_kept_predictions_are_kept(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fashn, "MAX_KEPT", 2)
    clock = Clock()
    emu = FashnEmulator(time_scale=1.0, clock=clock, state_dir=tmp_path)
    async with client(emu) as c:
        ids = []
        for _ in range(3):
            ids.append(await run_ok(c, tryon()))
            await c.get(f"/v1/cancel/{ids[-1]}")
    assert list(emu.stats.predictions) == ids[1:] and emu.faults.credits == 1000
    assert list(FashnEmulator(clock=clock, state_dir=tmp_path).stats.predictions) == ids[1:]


# --- Served over a real socket ------------------------------------------------------------------


@asynccontextmanager
async def serving(emu: FashnEmulator) -> AsyncIterator[str]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(
        emu.app, log_config=None, log_level="critical", lifespan="off", ws="none", http="h11"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        with anyio.fail_after(5):
            while not server.started:
                await anyio.sleep(0.01)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(5)
        sock.close()
    assert not thread.is_alive()


async def test_served_by_uvicorn() -> None:
    emu = FashnEmulator(time_scale=0.002, faults=FashnFaults(run_drop_after_accept=1))
    async with (
        serving(emu) as origin,
        httpx.AsyncClient(base_url=origin, headers=AUTH, timeout=5) as c,
    ):
        with pytest.raises(httpx.RemoteProtocolError):
            await c.post("/v1/run", json=tryon())
        prediction_id = await run_ok(c, tryon())
        body = await wait_terminal(c, prediction_id)
        [url] = body["output"]
        assert url == f"{origin}/cdn/{prediction_id}/output_0.png"
        image = await c.get(url)
    assert image.headers["content-type"] == "image/png" and png_size(image.content) == (683, 1024)
    assert len(emu.stats.predictions) == 2


# --- Placeholder media --------------------------------------------------------------------------


def test_placeholder_png_is_sized_and_seeded() -> None:
    big = placeholder_png(2048, 2048, ["fashn · tryon-max", "output 0", "2048x2048"], seed=1)
    assert png_size(big) == (2048, 2048)
    assert placeholder_png(64, 32, ["a"], seed=1) == placeholder_png(64, 32, ["a"], seed=1)
    assert placeholder_png(64, 32, ["a"], seed=1) != placeholder_png(64, 32, ["a"], seed=2)
    assert png_size(placeholder_png(1, 1, ["tiny"])) == (1, 1)


def test_placeholder_video_mp4_or_gif_fallback(monkeypatch: pytest.MonkeyPatch) -> None:
    data, mime = placeholder_video(171, 256, ["fashn · image-to-video"])
    assert mime == "video/mp4" and data[4:8] == b"ftyp"
    monkeypatch.setitem(sys.modules, "av", None)  # as if PyAV were not installed
    data, mime = placeholder_video(171, 256, ["fashn · image-to-video"])
    assert mime == "image/gif"
    with Image.open(io.BytesIO(data)) as gif:
        assert gif.size == (170, 256) and getattr(gif, "n_frames", 1) == 12


# --- The state file: read when another process wrote it, written off the event loop ----------


class SlowDisk:
    """Holds every state file write until the test lets it go (it runs in a worker thread)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.entered = threading.Event()
        self.released = threading.Event()
        real = paths.write_atomic

        def held(*args: Any) -> os.stat_result:
            self.entered.set()
            self.released.wait(10)
            return real(*args)

        monkeypatch.setattr(paths, "write_atomic", held)

    async def writing(self) -> None:
        """Return once a write is held and every other task waits."""
        await anyio.to_thread.run_sync(self.entered.wait, 10)
        await anyio.wait_all_tasks_blocked()


async def test_runs_made_while_the_state_is_written_share_the_next_write_and_wait_for_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    emu = FashnEmulator(time_scale=1.0, clock=Clock(), state_dir=tmp_path)
    disk = SlowDisk(monkeypatch)
    answered: list[str] = []
    async with client(emu) as c, anyio.create_task_group() as tg:

        async def run() -> None:
            answered.append(await run_ok(c, tryon()))

        for _ in range(6):
            tg.start_soon(run)
        await disk.writing()
        assert answered == [] and emu.writes == 0  # accepted, and not answered before it is on disk
        assert len(emu.stats.predictions) == 6
        disk.released.set()
    assert len(answered) == 6 and emu.writes == 2  # the first one's, then one for the five behind it
    assert set(FashnEmulator(state_dir=tmp_path).stats.predictions) == set(answered)


async def test_the_state_file_is_read_again_only_after_another_process_wrote_it(tmp_path: Path) -> None:
    cost = fashn.fashn_credits("tryon-max", tryon()["inputs"])
    clock = Clock()
    server = FashnEmulator(time_scale=1.0, clock=clock, state_dir=tmp_path)
    async with client(server) as c:
        ids = [await run_ok(c, tryon()) for _ in range(3)]
        for prediction_id in ids:
            assert (await c.get(f"/v1/status/{prediction_id}")).status_code == 200
        assert (await c.get("/v1/credits")).json()["credits"]["total"] == 1000 - 3 * cost
    assert (server.reads, server.writes) == (0, 3)  # nothing to read at the start, nobody else wrote
    other = FashnEmulator(time_scale=1.0, clock=clock, state_dir=tmp_path)  # `callsheet jobs cancel`
    async with client(other) as c:
        assert (await c.get(f"/v1/cancel/{ids[0]}")).json()["status"] == "canceled"
    assert (other.reads, other.writes) == (1, 1)
    async with client(server) as c:
        balances = [(await c.get("/v1/credits")).json()["credits"]["total"] for _ in range(3)]
        fourth = await run_ok(c, tryon())
    assert balances == [1000 - 2 * cost] * 3 and server.reads == 1  # the refund, read once
    assert server.stats.predictions[ids[0]].refunded and server.stats.predictions[fourth].number == 3
