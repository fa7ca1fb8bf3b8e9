"""neo-fashion end to end: every tool through MCP (both eras), the error codes, batches, limits, restarts.

The real adapter runs against the emulator (`server/sandbox/neofashion.py`). Image arguments are
URLs (neo-fashion takes nothing else), so these settings allow any host name without a DNS lookup.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client
from mcp_types import CallToolResult, ImageContent, ResourceLink, TextContent

from server.app import create_app
from server.config import Settings
from server.models import Job, JobRecord, JobStatus
from server.providers.neofashion.emulator import NeoFashionEmulator, NeoFashionFaults
from server.services import Services, open_services
from tests.conftest import FAST_POLL, FAST_RETRY, TIME_SCALE, make_settings, png_bytes
from tools.surface import SHARED_ARGUMENTS

pytestmark = pytest.mark.anyio

PRODUCT = "https://shop.example/products/linen-dress.jpg"
SKETCH = "https://studio.example/sketches/trench.png"
NEOFASHION_TOOLS = {
    "neofashion_image",
    "neofashion_video",
    "neofashion_bulk",
    "neofashion_sketch_to_photo",
    "neofashion_generations",
    "neofashion_personas",
    "neofashion_models",
}


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    (tmp_path / "inputs").mkdir()
    return make_settings(tmp_path / "home", tmp_path / "inputs", CALLSHEET_ALLOW_PRIVATE_URLS="1")


@pytest.fixture
def emu() -> NeoFashionEmulator:
    """Every generation asynchronous (the path most calls take; tests of the sync path say so), with
    small placeholders to keep the tests fast."""
    return NeoFashionEmulator(time_scale=TIME_SCALE, sync_seconds=0, image_long_side=256)


@pytest.fixture(params=["auto", "legacy"])
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@asynccontextmanager
async def services(settings: Settings, emu: NeoFashionEmulator, **options: Any) -> AsyncIterator[Services]:
    options.setdefault("retry", FAST_RETRY)
    options.setdefault("poll", FAST_POLL)
    options.setdefault("sandbox_apps", {"neofashion": emu.app})
    async with open_services(settings, **options) as svc:
        yield svc


@asynccontextmanager
async def connect(settings: Settings, emu: NeoFashionEmulator, mode: str) -> AsyncIterator[Client]:
    app = create_app(settings, sandbox_apps={"neofashion": emu.app}, retry=FAST_RETRY, poll=FAST_POLL)
    async with Client(app, mode=mode) as client:
        yield client


async def finish(svc: Services, job_id: str, seconds: float = 15.0) -> JobRecord:
    result = await svc.engine.wait([job_id], wait_seconds=seconds)
    assert not result.pending, f"job {job_id} did not finish: {result.jobs[0].status}"
    return result.jobs[0]


async def provider_id(svc: Services, job_id: str) -> str:
    with anyio.fail_after(5):
        while (record := await svc.engine.get(job_id)).provider_job_id is None:
            await anyio.sleep(0.005)
    assert record.provider_job_id is not None
    return record.provider_job_id


def text(result: CallToolResult) -> str:
    return " ".join(c.text for c in result.content if isinstance(c, TextContent))


def job_of(result: CallToolResult) -> Job:
    assert result.structured_content is not None, text(result)
    return Job.model_validate(result.structured_content)


# --- every tool through MCP, in both protocol eras --------------------------------------------------


async def test_tools_are_listed_with_costs_schemas_and_annotations(settings, emu, mode) -> None:
    async with connect(settings, emu, mode) as client:
        tools = {t.name: t for t in (await client.list_tools()).tools}
    assert {t for t in tools if t.startswith("neofashion_")} == NEOFASHION_TOOLS
    for name in ("neofashion_image", "neofashion_video", "neofashion_bulk", "neofashion_sketch_to_photo"):
        tool = tools[name]
        assert "credits" in (tool.description or ""), name
        assert tool.output_schema is not None and "job_id" in tool.output_schema["properties"]
        assert tool.annotations is not None and not tool.annotations.read_only_hint
        for prop, schema in tool.input_schema["properties"].items():
            # The arguments every generation tool shares are described once, in the conventions.
            assert schema.get("description") or prop in SHARED_ARGUMENTS, f"{name}.{prop} has no description"
    for name in ("neofashion_generations", "neofashion_personas", "neofashion_models"):
        annotations = tools[name].annotations
        assert annotations is not None and annotations.read_only_hint and annotations.open_world_hint
    image = tools["neofashion_image"].input_schema
    assert {"prompt", "image_url", "persona_id", "model_id", "aspect_ratio"} <= set(image["properties"])
    assert image["required"] == ["prompt"]
    assert "50 credits" in (tools["neofashion_image"].description or "")
    assert set(tools["neofashion_sketch_to_photo"].input_schema["required"]) == {"sketch_url"}
    assert "duration" in tools["neofashion_video"].input_schema["properties"]
    assert set(tools["neofashion_bulk"].input_schema["properties"]) >= {"items", "wait_seconds", "force"}
    assert {"status", "page", "limit"} == set(tools["neofashion_generations"].input_schema["properties"])


async def test_image_polled_to_a_downloaded_output(settings, emu, mode) -> None:
    async with connect(settings, emu, mode) as client:
        result = await client.call_tool(
            "neofashion_image",
            {"prompt": "linen dress, sunlit courtyard", "image_url": PRODUCT, "persona_id": "per_ava"},
        )
        assert not result.is_error, text(result)
        job = job_of(result)
        assert job.status == "succeeded" and job.sandbox and job.operation == "image"
        assert job.credits_estimate == 50 and job.credits_used == 50
        (output,) = job.outputs
        assert output.mime_type == "image/png" and (output.width, output.height) == (205, 256)
        assert Path(output.path).is_file() and output.source_url and "/files/gen_" in output.source_url
        assert [c for c in result.content if isinstance(c, ImageContent)]
        assert [c for c in result.content if isinstance(c, ResourceLink)]
    assert emu.stats.requests["POST /generate/image"] == 1
    assert emu.stats.requests["GET /generations/{id}"] >= 1  # the asynchronous path: polled
    (generation,) = emu.generations.values()
    assert generation.inputs == {
        "prompt": "linen dress, sunlit courtyard",
        "image_url": PRODUCT,
        "persona_id": "per_ava",
    }


async def test_short_image_answered_synchronously_is_done_without_polling(settings, mode) -> None:
    emu = NeoFashionEmulator(time_scale=TIME_SCALE, sync_seconds=1e6)
    async with connect(settings, emu, mode) as client:
        job = job_of(await client.call_tool("neofashion_image", {"prompt": "white sneaker packshot"}))
    assert job.status == "succeeded" and job.credits_used == 50 and len(job.outputs) == 1
    assert emu.stats.requests["GET /generations/{id}"] == 0


async def test_video_downloads_an_mp4(settings, emu, mode) -> None:
    async with connect(settings, emu, mode) as client:
        job = job_of(
            await client.call_tool(
                "neofashion_video",
                {
                    "prompt": "slow turn to show the coat",
                    "image_url": PRODUCT,
                    "duration": 10,
                    "aspect_ratio": "9:16",
                },
            )
        )
    assert job.status == "succeeded", job.error
    assert job.credits_estimate == 400 and job.credits_used == 400
    (output,) = job.outputs
    assert output.mime_type == "video/mp4" and Path(output.path).read_bytes()[4:8] == b"ftyp"


async def test_sketch_to_photo(settings, emu, mode) -> None:
    async with connect(settings, emu, mode) as client:
        job = job_of(
            await client.call_tool(
                "neofashion_sketch_to_photo",
                {"sketch_url": SKETCH, "prompt": "washed indigo", "aspect_ratio": "1:1"},
            )
        )
    assert job.status == "succeeded", job.error
    assert job.credits_used == 60 and (job.outputs[0].width, job.outputs[0].height) == (256, 256)
    (generation,) = emu.generations.values()
    assert generation.kind == "sketch_to_photo" and generation.inputs["sketch_url"] == SKETCH


async def test_bulk_items_become_jobs_whose_outputs_are_the_batch(settings, emu, mode) -> None:
    items = [{"prompt": f"look {n}", "aspect_ratio": "4:5"} for n in range(3)]
    async with connect(settings, emu, mode) as client:
        result = await client.call_tool("neofashion_bulk", {"items": items})
        job = job_of(result)
        assert job.status == "succeeded", job.error
        assert job.credits_estimate == 150 and job.credits_used == 150
        assert [o.uri for o in job.outputs] == [
            f"callsheet://jobs/{job.job_id}/outputs/{n}" for n in range(3)
        ]
        assert all(Path(o.path).is_file() for o in job.outputs)
        blob = (await client.read_resource(job.outputs[2].uri)).contents[0]
        assert blob.mime_type == "image/png"
        listed = (await client.call_tool("jobs_list", {"provider": "neofashion"})).structured_content
    assert listed is not None
    ops = sorted(j["operation"] for j in listed["jobs"])
    assert ops == ["bulk", "image", "image", "image"]  # the batch and its three items
    assert emu.stats.requests["POST /generate/bulk"] == 1 and emu.stats.generate_calls == 1


async def test_queries_list_generations_personas_and_models(settings, emu, mode) -> None:
    async with connect(settings, emu, mode) as client:
        for n in range(3):
            await client.call_tool("neofashion_image", {"prompt": f"shot {n}"})
        await client.call_tool("neofashion_image", {"prompt": "broken [sandbox:fail]"})
        page1 = (await client.call_tool("neofashion_generations", {"limit": 2})).structured_content
        page2 = (await client.call_tool("neofashion_generations", {"limit": 2, "page": 2})).structured_content
        failed = (await client.call_tool("neofashion_generations", {"status": "failed"})).structured_content
        personas = (await client.call_tool("neofashion_personas", {})).structured_content
        models = (await client.call_tool("neofashion_models", {})).structured_content
        bad = await client.call_tool("neofashion_generations", {"status": "done"})
    assert page1 is not None and page2 is not None and failed is not None
    assert [g["prompt"] for g in page1["generations"]] == ["broken [sandbox:fail]", "shot 2"]
    assert page1["total"] == 4 and page1["next_page"] == 2
    assert [g["prompt"] for g in page2["generations"]] == ["shot 1", "shot 0"] and page2["next_page"] is None
    assert [g["status"] for g in failed["generations"]] == ["failed"]
    assert failed["generations"][0]["error"]["code"] == "PROVIDER_ERROR"
    assert personas is not None and "per_ava" in [p["id"] for p in personas["personas"]]
    assert models is not None and {m["status"] for m in models["models"]} == {"ready", "training"}
    assert bad.is_error and "status" in text(bad)


async def test_providers_and_credits_show_neofashion(settings, emu, mode) -> None:
    async with connect(settings, emu, mode) as client:
        await client.call_tool("neofashion_image", {"prompt": "x"})
        providers = (await client.call_tool("providers", {})).structured_content
        credits = (await client.call_tool("credits", {})).structured_content
    assert providers is not None and credits is not None
    (info,) = [p for p in providers["providers"] if p["name"] == "neofashion"]
    assert info["mode"] == "sandbox" and info["base_url"] == "https://app.neofashion.ai/api/v1"
    assert info["limits"] == {"api": f"60 per {60 * TIME_SCALE:g} s"}
    assert set(info["prices"]) == {f"neofashion_{op}" for op in ("image", "video", "bulk", "sketch_to_photo")}
    assert (
        "50 credits" in info["prices"]["neofashion_image"]
        and "estimate" in info["prices"]["neofashion_video"]
    )
    (balance,) = [b for b in credits["balances"] if b["provider"] == "neofashion"]
    assert balance["sandbox"] is True and balance["credits"] == 10_000 - 50
    assert balance["detail"] == {"balance": 10_000 - 50, "plan": "starter"}


async def test_local_file_is_refused_with_the_way_out(settings, emu, mode) -> None:
    photo = settings.input_roots[0] / "dress.png"
    photo.write_bytes(png_bytes())
    async with connect(settings, emu, mode) as client:
        result = await client.call_tool("neofashion_image", {"prompt": "x", "image_url": str(photo)})
        item = await client.call_tool(
            "neofashion_bulk", {"items": [{"prompt": "a"}, {"prompt": "b", "image_url": str(photo)}]}
        )
        listed = (await client.call_tool("jobs_list", {})).structured_content
    assert result.is_error
    message = text(result)
    assert "image_url" in message and "URL" in message and "public" in message
    assert item.is_error and "items[1].image_url" in text(item)
    assert listed is not None and listed["jobs"] == []
    assert emu.stats.generate_calls == 0


# --- the documented error codes ----------------------------------------------------------------------


async def test_insufficient_credits_says_what_is_needed_and_to_top_up(settings) -> None:
    emu = NeoFashionEmulator(time_scale=TIME_SCALE, faults=NeoFashionFaults(credits=20))
    async with services(settings, emu) as svc:
        done = await finish(svc, (await svc.engine.submit("neofashion", "image", {"prompt": "x"})).job_id)
        balance = await svc.providers["neofashion"].balance()
    assert done.status is JobStatus.FAILED and done.error is not None
    assert done.error.code == "insufficient_credits"
    assert "needs 50 credits" in done.error.message and "has 20" in done.error.message
    assert "top up" in done.error.message.lower()
    assert emu.stats.generate_calls == 1 and balance.credits == 20


async def test_feature_not_on_the_plan_is_forbidden(settings) -> None:
    emu = NeoFashionEmulator(time_scale=TIME_SCALE, faults=NeoFashionFaults(forbidden={"video"}))
    async with services(settings, emu) as svc:
        done = await finish(svc, (await svc.engine.submit("neofashion", "video", {"prompt": "x"})).job_id)
    assert done.error is not None and done.error.code == "forbidden" and not done.error.retryable
    assert "plan" in done.error.message
    assert emu.stats.generate_calls == 1


@pytest.mark.parametrize(
    ("args", "faults"),
    [
        ({"prompt": "x", "persona_id": "per_nobody"}, NeoFashionFaults()),  # at submission
        ({"prompt": "x"}, NeoFashionFaults(read_errors=[404])),  # while polling
    ],
)
async def test_not_found_fails_the_job(settings, args: dict[str, Any], faults: NeoFashionFaults) -> None:
    emu = NeoFashionEmulator(time_scale=TIME_SCALE, sync_seconds=0, faults=faults)
    async with services(settings, emu) as svc:
        done = await finish(svc, (await svc.engine.submit("neofashion", "image", args)).job_id)
    assert done.status is JobStatus.FAILED and done.error is not None
    assert done.error.code == "not_found" and "NOT_FOUND" in done.error.message
    assert emu.stats.generate_calls == 1


async def test_persistent_5xx_fails_as_unavailable(settings) -> None:
    emu = NeoFashionEmulator(time_scale=TIME_SCALE, faults=NeoFashionFaults(submit_errors=[500] * 10))
    async with services(settings, emu) as svc:
        done = await finish(svc, (await svc.engine.submit("neofashion", "image", {"prompt": "x"})).job_id)
    assert done.error is not None and done.error.code == "provider_unavailable" and done.error.retryable
    assert emu.stats.generate_calls == FAST_RETRY.attempts and not emu.generations


async def test_provider_error_on_a_running_generation_is_refunded(settings) -> None:
    emu = NeoFashionEmulator(
        time_scale=TIME_SCALE, sync_seconds=0, faults=NeoFashionFaults(provider_errors=1)
    )
    async with services(settings, emu) as svc:
        done = await finish(svc, (await svc.engine.submit("neofashion", "image", {"prompt": "x"})).job_id)
        repeat = await svc.engine.submit("neofashion", "image", {"prompt": "x"})
        again = await finish(svc, repeat.job_id)
    assert done.status is JobStatus.FAILED and done.error is not None
    assert done.error.code == "provider_error" and done.error.retryable
    assert done.credits_used == 0 and "refunded" in done.error.message
    assert repeat.job_id != done.job_id and again.status is JobStatus.SUCCEEDED  # a failure holds no key
    assert emu.balance() == 10_000 - 50


async def test_provider_error_answered_to_the_submission_is_retried(settings) -> None:
    """A synchronous generation that fails answers 502 PROVIDER_ERROR: refunded, so safe to resend."""
    emu = NeoFashionEmulator(
        time_scale=TIME_SCALE, sync_seconds=1e6, faults=NeoFashionFaults(provider_errors=1)
    )
    async with services(settings, emu) as svc:
        done = await finish(svc, (await svc.engine.submit("neofashion", "image", {"prompt": "x"})).job_id)
    assert done.status is JobStatus.SUCCEEDED and done.credits_used == 50
    assert emu.stats.generate_calls == 2 and emu.balance() == 10_000 - 50


async def test_provider_error_on_every_submission_ends_as_provider_error(settings) -> None:
    faults = NeoFashionFaults(provider_errors=FAST_RETRY.attempts)
    emu = NeoFashionEmulator(time_scale=TIME_SCALE, sync_seconds=1e6, faults=faults)
    async with services(settings, emu) as svc:
        done = await finish(svc, (await svc.engine.submit("neofashion", "image", {"prompt": "x"})).job_id)
    assert done.error is not None and done.error.code == "provider_error" and "refunded" in done.error.message
    assert emu.balance() == 10_000


async def test_unreadable_answer_after_acceptance_is_submission_lost(settings) -> None:
    emu = NeoFashionEmulator(time_scale=TIME_SCALE, faults=NeoFashionFaults(submit_malformed=1))
    async with services(settings, emu) as svc:
        done = await finish(svc, (await svc.engine.submit("neofashion", "image", {"prompt": "x"})).job_id)
    assert done.error is not None and done.error.code == "submission_lost"
    assert emu.stats.generate_calls == 1  # never resent


# --- idempotency and restarts --------------------------------------------------------------------------


async def test_sandbox_state_survives_a_restart_of_the_emulator(tmp_path: Path) -> None:
    """No `sandbox_apps`: the registry builds the emulator, keeping its state under CALLSHEET_HOME."""
    (tmp_path / "inputs").mkdir()
    settings = make_settings(tmp_path / "home", tmp_path / "inputs", CALLSHEET_SANDBOX_TIME_SCALE="0.02")
    args = {"items": [{"prompt": "a"}, {"prompt": "b"}]}
    async with open_services(settings, retry=FAST_RETRY, poll=FAST_POLL) as svc:
        job = await svc.engine.submit("neofashion", "bulk", args)
        with anyio.fail_after(5):
            while not (await svc.engine.get(job.job_id)).children:
                await anyio.sleep(0.005)
    assert (settings.home / "sandbox" / "neofashion.json").is_file()
    async with open_services(settings, retry=FAST_RETRY, poll=FAST_POLL) as svc:
        done = await finish(svc, job.job_id, seconds=20)
        balance = await svc.providers["neofashion"].balance()
    assert done.status is JobStatus.SUCCEEDED, done.error
    assert len(done.outputs) == 2 and done.credits_used == 100
    assert balance.credits == 10_000 - 100


# --- batches ---------------------------------------------------------------------------------------


async def test_bulk_children_are_stored_polled_and_summed(settings, emu) -> None:
    async with services(settings, emu) as svc:
        job = await svc.engine.submit(
            "neofashion", "bulk", {"items": [{"prompt": f"p{n}"} for n in range(4)]}
        )
        done = await finish(svc, job.job_id)
        children = [await svc.engine.get(child) for child in done.children]
    assert done.status is JobStatus.SUCCEEDED and done.provider_job_id in emu.stats.bulks
    assert [c.provider_job_id for c in children] == emu.stats.bulks[done.provider_job_id]
    assert all(c.status is JobStatus.SUCCEEDED and c.operation == "image" for c in children)
    assert all(c.parent_job_id == job.job_id and c.credits_used == 50 for c in children)
    assert [o.sha256 for o in done.outputs] == [c.outputs[0].sha256 for c in children]
    assert done.credits_used == 200 and emu.balance() == 10_000 - 200


async def test_bulk_with_a_failed_item_is_incomplete_but_keeps_the_others(settings, emu) -> None:
    items = [{"prompt": "a"}, {"prompt": "b [sandbox:fail]"}, {"prompt": "c"}]
    async with services(settings, emu) as svc:
        done = await finish(svc, (await svc.engine.submit("neofashion", "bulk", {"items": items})).job_id)
        children = [await svc.engine.get(child) for child in done.children]
    assert done.status is JobStatus.FAILED and done.error is not None
    assert done.error.code == "batch_incomplete" and children[1].job_id in done.error.message
    assert [c.status for c in children] == [JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.SUCCEEDED]
    assert children[1].error is not None and children[1].error.code == "provider_error"
    assert len(done.outputs) == 2 and all(Path(o.path).is_file() for o in done.outputs)
    assert done.credits_used == 100 and emu.balance() == 10_000 - 100


async def test_cancel_the_batch_cancels_its_items(settings) -> None:
    emu = NeoFashionEmulator(time_scale=0.05, sync_seconds=0)
    async with services(settings, emu) as svc:
        job = await svc.engine.submit("neofashion", "bulk", {"items": [{"prompt": "a"}, {"prompt": "b"}]})
        with anyio.fail_after(5):
            while not (await svc.engine.get(job.job_id)).children:
                await anyio.sleep(0.005)
        canceled, note = await svc.engine.cancel(job.job_id)
        children = [await svc.engine.get(child) for child in canceled.children]
        await anyio.sleep(0.1)
        later = await svc.engine.get(job.job_id)
    assert canceled.status is JobStatus.CANCELED and "no way to cancel" in note
    assert [c.status for c in children] == [JobStatus.CANCELED, JobStatus.CANCELED]
    assert later.status is JobStatus.CANCELED


# --- limits ------------------------------------------------------------------------------------------


def with_latency(app: Any, seconds: float) -> Any:
    """The emulator behind a network: each request and each answer takes `seconds` to travel, so
    requests sent concurrently reach it before the answers (and their rate headers) come back."""

    async def wrapped(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            await anyio.sleep(seconds)

        async def delayed(message: Any) -> None:
            if message["type"] == "http.response.start":
                await anyio.sleep(seconds)
            await send(message)

        await app(scope, receive, delayed)

    return wrapped


async def test_burst_beyond_the_plan_rate_provokes_no_429(tmp_path: Path) -> None:
    (tmp_path / "inputs").mkdir()
    settings = make_settings(
        tmp_path / "home",
        tmp_path / "inputs",
        CALLSHEET_ALLOW_PRIVATE_URLS="1",
        NEOFASHION_RATE_PER_MINUTE="10",
    )
    emu = NeoFashionEmulator(time_scale=TIME_SCALE, rate_per_minute=10, sync_seconds=0, image_long_side=64)
    app = with_latency(emu.app, 0.01)
    async with services(settings, emu, sandbox_apps={"neofashion": app}) as svc:
        jobs = [await svc.engine.submit("neofashion", "image", {"prompt": f"look {n}"}) for n in range(25)]
        result = await svc.engine.wait([j.job_id for j in jobs], wait_seconds=30)
    assert not result.pending and all(j.status is JobStatus.SUCCEEDED for j in result.jobs)
    assert sum(emu.stats.requests.values()) >= 5 * 10  # five windows' worth at least
    assert emu.stats.sent_429 == 0 and emu.stats.max_window == 10


async def test_rate_headers_hold_requests_when_the_plan_is_lower_than_configured(settings) -> None:
    """callsheet believes 60/min (Starter); the workspace allows 8: the headers keep it out of 429s."""
    emu = NeoFashionEmulator(time_scale=TIME_SCALE, rate_per_minute=8, sync_seconds=0, image_long_side=64)
    app = with_latency(emu.app, 0.01)
    async with services(settings, emu, sandbox_apps={"neofashion": app}) as svc:
        jobs = [await svc.engine.submit("neofashion", "image", {"prompt": f"look {n}"}) for n in range(20)]
        result = await svc.engine.wait([j.job_id for j in jobs], wait_seconds=30)
        limits = svc.providers["neofashion"].limiter.limits.windows["api"]
    assert [w.limit for w in limits] == [60]
    assert not result.pending and all(j.status is JobStatus.SUCCEEDED for j in result.jobs)
    assert emu.stats.sent_429 == 0 and emu.stats.max_window == 8
