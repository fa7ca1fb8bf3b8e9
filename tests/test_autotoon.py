"""Auto Toon: every tool through MCP in both eras, the error codes, idempotency, restarts, limits,
the URL-only rule, and a FASHN output chained into Auto Toon by its provider URL."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from mcp import Client
from mcp_types import CallToolResult, ImageContent, ResourceLink, TextContent
from PIL import Image

import server.providers.autotoon.emulator as emulation
from server.app import create_app
from server.config import Settings
from server.errors import InputError
from server.models import Job, JobRecord, JobStatus
from server.providers.autotoon.adapter import LIMITS as AUTOTOON_LIMITS
from server.providers.autotoon.adapter import SYNC_PREFIX
from server.providers.autotoon.emulator import AutoToonEmulator, AutoToonFaults
from server.providers.fashn.emulator import FashnEmulator
from server.services import Services, open_services
from server.store import DiskStore
from tests.conftest import FAST_POLL, FAST_RETRY, TIME_SCALE, make_settings, png_bytes, sandbox_services
from tools.surface import SHARED_ARGUMENTS

pytestmark = pytest.mark.anyio

AUTOTOON_TOOLS = {
    "autotoon_editorial",
    "autotoon_variations",
    "autotoon_relight",
    "autotoon_upscale",
    "autotoon_video",
    "autotoon_models",
}
PUBLIC = "https://93.184.216.34"  # a literal public address: checked without DNS, never fetched
DRESS, BLAZER, FACE = f"{PUBLIC}/dress.jpg", f"{PUBLIC}/blazer.jpg", f"{PUBLIC}/face.jpg"
SAVED_MODEL = "clx9abc123def456"
EDITORIAL = {"model_id": SAVED_MODEL, "clothing_image_urls": [DRESS]}
URL_ONLY = "Auto Toon takes image URLs only"


@pytest.fixture
def autotoon() -> AutoToonEmulator:
    return AutoToonEmulator(time_scale=TIME_SCALE)


@pytest.fixture(params=["auto", "legacy"])
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@asynccontextmanager
async def services(
    settings: Settings, autotoon: AutoToonEmulator, fashn: FashnEmulator | None = None, **options: Any
) -> AsyncIterator[Services]:
    fashn = fashn or FashnEmulator(time_scale=TIME_SCALE)
    apps = {"fashn": fashn.app, "autotoon": autotoon.app}
    async with sandbox_services(settings, fashn, sandbox_apps=apps, **options) as svc:
        yield svc


@asynccontextmanager
async def connect(
    settings: Settings, autotoon: AutoToonEmulator, fashn: FashnEmulator, mode: str
) -> AsyncIterator[Client]:
    apps = {"fashn": fashn.app, "autotoon": autotoon.app}
    app = create_app(settings, sandbox_apps=apps, retry=FAST_RETRY, poll=FAST_POLL)
    async with Client(app, mode=mode) as client:
        yield client


async def finish(svc: Services, job_id: str, seconds: float = 10.0) -> JobRecord:
    result = await svc.engine.wait([job_id], wait_seconds=seconds)
    assert not result.pending, f"job {job_id} did not finish: {result.jobs[0].status}"
    return result.jobs[0]


async def run(svc: Services, operation: str, args: dict[str, Any], **options: Any) -> JobRecord:
    job = await svc.engine.submit("autotoon", operation, args, **options)
    return await finish(svc, job.job_id)


def text(result: CallToolResult) -> str:
    return " ".join(c.text for c in result.content if isinstance(c, TextContent))


def job_of(result: CallToolResult) -> Job:
    assert result.structured_content is not None, text(result)
    return Job.model_validate(result.structured_content)


def sent(autotoon: AutoToonEmulator, endpoint: str) -> list[dict[str, Any]]:
    return [body for name, body in autotoon.stats.requests if name == endpoint]


# --- Through MCP, both protocol eras -------------------------------------------------------------


async def test_tools_are_listed_with_costs_schemas_and_annotations(
    settings, autotoon, emulator, mode
) -> None:
    async with connect(settings, autotoon, emulator, mode) as client:
        tools = {t.name: t for t in (await client.list_tools()).tools}
        providers = (await client.call_tool("providers", {})).structured_content
    assert {t for t in tools if t.startswith("autotoon_")} == AUTOTOON_TOOLS
    for name in AUTOTOON_TOOLS - {"autotoon_models"}:
        description = (tools[name].description or "").lower()
        assert "credit" in description and "estimate" in description, name
        assert "url" in description, name
    editorial = tools["autotoon_editorial"].input_schema
    props = editorial["properties"]
    assert {"model_id", "models", "clothing_image_urls", "ai_model", "makeup_analysis", "style"} <= set(props)
    assert {"background", "prompt_modifier", "brand_analysis", "hairstyle_analysis"} <= set(props)
    assert all(props[name].get("description") for name in set(props) - set(SHARED_ARGUMENTS)), props
    assert "editorial-vogue" in props["style"]["description"]
    assert "studio-white" in props["background"]["description"]
    relight = tools["autotoon_relight"].input_schema
    assert set(relight["required"]) == {"base_image_url"}
    assert "moonlight" in str(relight["properties"]["lighting"])
    models = tools["autotoon_models"]
    assert models.annotations is not None and models.annotations.read_only_hint
    assert providers is not None
    (entry,) = [p for p in providers["providers"] if p["name"] == "autotoon"]
    assert entry["mode"] == "sandbox"
    assert entry["prices"]["autotoon_editorial"].startswith("about 3 credits")
    assert "estimate" in entry["prices"]["autotoon_video"]


async def test_every_tool_end_to_end(settings, autotoon, emulator, mode) -> None:
    async with connect(settings, autotoon, emulator, mode) as client:
        before = (await client.call_tool("credits", {})).structured_content
        listed = await client.call_tool("autotoon_models", {})
        assert not listed.is_error, text(listed)
        assert listed.structured_content is not None
        models = listed.structured_content["models"]
        assert models[0]["id"] == SAVED_MODEL and models[0]["name"] and models[0]["image_url"]

        result = await client.call_tool(
            "autotoon_editorial",
            {
                "model_id": models[0]["id"],
                "clothing_image_urls": [DRESS, BLAZER],
                "style": "editorial-vogue",
                "background": "studio-white",
                "ai_model": "bytedance/seedream-4.5",
            },
        )
        assert not result.is_error, text(result)
        hero = job_of(result)
        assert hero.status == "succeeded" and hero.sandbox and hero.operation == "editorial"
        assert hero.credits_estimate == 3 and hero.credits_used == 3
        (out,) = hero.outputs
        assert out.mime_type == "image/png" and Path(out.path).is_file()
        assert out.source_url is not None and out.source_url.startswith("https://auto-toon.com/storage/")
        assert [c for c in result.content if isinstance(c, ImageContent)]
        assert [c for c in result.content if isinstance(c, ResourceLink)]

        # The hero, an Auto Toon output, goes on by its own provider URL.
        variations = job_of(
            await client.call_tool(
                "autotoon_variations",
                {"base_image_url": out.uri, "aspect_ratio": "9:16", "model_image_urls": [FACE]},
            )
        )
        assert variations.status == "succeeded" and len(variations.outputs) == 3
        assert all(Path(o.path).is_file() for o in variations.outputs)
        assert (variations.outputs[0].width, variations.outputs[0].height) == (576, 1024)
        assert sent(autotoon, "variations")[0]["baseImageUrl"] == out.source_url

        relit = job_of(
            await client.call_tool(
                "autotoon_relight",
                {"base_image_url": out.uri, "lighting": "golden-hour", "light_color": "warm amber"},
            )
        )
        assert relit.status == "succeeded" and relit.credits_used == 2

        upscaled = job_of(await client.call_tool("autotoon_upscale", {"image_url": relit.outputs[0].uri}))
        assert upscaled.status == "succeeded" and max(upscaled.outputs[0].width or 0, 0) >= 1024

        video = await client.call_tool("autotoon_video", {"image_url": out.uri})
        clip = job_of(video)
        if clip.status != "succeeded":
            waited = await client.call_tool("job_wait", {"job_ids": [clip.job_id], "wait_seconds": 20})
            assert waited.structured_content is not None
            clip = Job.model_validate(waited.structured_content["jobs"][0])
        assert clip.status == "succeeded", clip.error
        assert clip.outputs[0].mime_type in ("video/mp4", "image/gif")
        assert Path(clip.outputs[0].path).stat().st_size > 0
        after = (await client.call_tool("credits", {})).structured_content

    assert before is not None and after is not None
    (unknown,) = [b for b in before["balances"] if b["provider"] == "autotoon"]
    assert unknown["credits"] is None and "creditsRemaining" in unknown["detail"]["note"]
    (known,) = [b for b in after["balances"] if b["provider"] == "autotoon"]
    # Learned from the last answer that carried creditsRemaining (upscale); the video came later.
    assert known["credits"] == autotoon.credits + emulation.PRICES["video"]
    assert autotoon.stats.generation_calls() == 5
    assert autotoon.stats.sent_429 == 0


async def test_url_only_rule_through_mcp(settings, autotoon, emulator, garment, mode) -> None:
    data_uri = "data:image/png;base64," + base64.b64encode(png_bytes()).decode()
    async with connect(settings, autotoon, emulator, mode) as client:
        local = await client.call_tool("autotoon_upscale", {"image_url": str(garment)})
        inline = await client.call_tool("autotoon_relight", {"base_image_url": data_uri, "lighting": "neon"})
        nested = await client.call_tool(
            "autotoon_editorial",
            {
                "models": [
                    {"model_id": SAVED_MODEL, "clothing_image_urls": [DRESS], "image_url": str(garment)}
                ]
            },
        )
        listed = (await client.call_tool("jobs_list", {})).structured_content
    assert local.is_error and URL_ONLY in text(local) and "is a local file" in text(local)
    assert "image_url" in text(local) and "callsheet://jobs/{id}/outputs/{n}" in text(local)
    assert inline.is_error and URL_ONLY in text(inline) and "is a data URI" in text(inline)
    assert nested.is_error and "models[0].image_url" in text(nested) and URL_ONLY in text(nested)
    assert listed is not None and listed["jobs"] == []
    assert autotoon.stats.calls == {}


async def test_inline_models_through_mcp(settings, autotoon, emulator, mode) -> None:
    inline = {"model_id": SAVED_MODEL, "clothing_image_urls": [BLAZER], "image_url": FACE, "prompt": "tall"}
    async with connect(settings, autotoon, emulator, mode) as client:
        result = await client.call_tool(
            "autotoon_editorial", {"models": [inline], "hairstyle_analysis": "bun"}
        )
    job = job_of(result)
    assert job.status == "succeeded", job.error
    assert sent(autotoon, "editorial") == [
        {
            "models": [
                {"modelId": SAVED_MODEL, "clothingImageUrls": [BLAZER], "imageUrl": FACE, "prompt": "tall"}
            ],
            "hairstyleAnalysis": "bun",
        }
    ]


async def test_fashn_output_chains_into_relight_by_its_source_url(settings, autotoon, emulator, mode) -> None:
    async with connect(settings, autotoon, emulator, mode) as client:
        cast = job_of(await client.call_tool("fashn_model_create", {"prompt": "editorial model, 30s"}))
        assert cast.status == "succeeded", cast.error
        fashn_url = cast.outputs[0].source_url
        assert fashn_url is not None and fashn_url.startswith("https://")
        result = await client.call_tool(
            "autotoon_relight", {"base_image_url": cast.outputs[0].uri, "light_position": "above-left"}
        )
    relit = job_of(result)
    assert relit.status == "succeeded", relit.error
    assert sent(autotoon, "relight") == [{"baseImageUrl": fashn_url, "lightPosition": "above-left"}]
    with Image.open(relit.outputs[0].path) as image:
        assert image.size == (relit.outputs[0].width, relit.outputs[0].height)


async def test_bad_arguments_are_clear_tool_errors(settings, autotoon, emulator, mode) -> None:
    async with connect(settings, autotoon, emulator, mode) as client:
        no_light = await client.call_tool("autotoon_relight", {"base_image_url": DRESS})
        no_model = await client.call_tool("autotoon_editorial", {"clothing_image_urls": [DRESS]})
        bad_enum = await client.call_tool("autotoon_editorial", {**EDITORIAL, "ai_model": "dall-e"})
        camel = await client.call_tool("autotoon_upscale", {"imageUrl": DRESS})
    assert no_light.is_error and "lighting" in text(no_light) and "light_position" in text(no_light)
    assert no_model.is_error and "model_id" in text(no_model)
    assert bad_enum.is_error and "ai_model" in text(bad_enum)
    assert camel.is_error and "imageUrl" in text(camel)
    assert autotoon.stats.calls == {}


# --- The engine against the emulator -------------------------------------------------------------


async def test_request_fields_are_sent_in_camel_case(settings, autotoon) -> None:
    async with services(settings, autotoon) as svc:
        await run(
            svc,
            "editorial",
            {
                "models": [
                    {
                        "model_id": SAVED_MODEL,
                        "clothing_image_urls": [BLAZER],
                        "image_url": FACE,
                        "prompt": "tall, short hair",
                        "character_sheet_url": f"{PUBLIC}/sheet.png",
                    }
                ],
                "ai_model": "gemini-3.1-flash-image-preview",
                "makeup_analysis": "bold red lip",
                "hairstyle_analysis": "low bun",
                "style": "street-style",
                "background": "urban-city",
                "prompt_modifier": "cinematic",
                "brand_analysis": "luxury minimalist",
            },
        )
        await run(svc, "variations", {"base_image_url": DRESS, "mode": "scratch-model"})
        await run(
            svc,
            "variations",
            {"base_image_url": DRESS, "style": "surreal-product-hero", "clothing_image_urls": [DRESS]},
        )
        await run(
            svc,
            "relight",
            {"base_image_url": DRESS, "lighting": "neon", "light_position": "behind", "ai_model": "x-1"},
        )
        await run(svc, "upscale", {"image_url": DRESS, "scale": 4})
        await run(svc, "video", {"image_url": DRESS})
    assert sent(autotoon, "editorial") == [
        {
            "models": [
                {
                    "modelId": SAVED_MODEL,
                    "clothingImageUrls": [BLAZER],
                    "imageUrl": FACE,
                    "prompt": "tall, short hair",
                    "characterSheetUrl": f"{PUBLIC}/sheet.png",
                }
            ],
            "aiModel": "gemini-3.1-flash-image-preview",
            "makeupAnalysis": "bold red lip",
            "hairstyleAnalysis": "low bun",
            "styleData": {"style": "street-style"},
            "backgroundData": {"background": "urban-city"},
            "promptModifier": "cinematic",
            "brandAnalysis": "luxury minimalist",
        }
    ]
    assert sent(autotoon, "variations") == [
        {"baseImageUrl": DRESS, "styleData": {"style": "fashion-editorial", "mode": "scratch-model"}},
        {"baseImageUrl": DRESS, "styleData": {"style": "surreal-product-hero"}, "clothingImageUrls": [DRESS]},
    ]
    assert sent(autotoon, "relight") == [
        {"baseImageUrl": DRESS, "lighting": "neon", "lightPosition": "behind", "aiModel": "x-1"}
    ]
    assert sent(autotoon, "upscale") == [{"imageUrl": DRESS, "scale": 4}]
    assert sent(autotoon, "video") == [{"imageUrl": DRESS}]


async def test_credits_used_is_the_drop_in_credits_remaining(settings, autotoon, monkeypatch) -> None:
    monkeypatch.setitem(emulation.PRICES, "relight", 7)  # Auto Toon charges what it charges
    async with services(settings, autotoon) as svc:
        first = await run(svc, "relight", {"base_image_url": DRESS, "lighting": "neon"})
        second = await run(svc, "relight", {"base_image_url": BLAZER, "lighting": "neon"})
        balance = await svc.providers["autotoon"].balance()
    assert first.credits_used == 2  # nothing known before the first answer: the estimate
    assert second.credits_used == 7 and second.credits_estimate == 2
    assert balance.credits == autotoon.credits == 1000 - 14


@pytest.mark.parametrize(
    ("faults", "args", "code", "words"),
    [
        (
            AutoToonFaults(),
            {"model_id": "no-such-model", "clothing_image_urls": [DRESS]},
            "invalid_request",
            [],
        ),
        (AutoToonFaults(credits=0), EDITORIAL, "insufficient_credits", ["needs 3", "balance is 0", "top up"]),
        (AutoToonFaults(generate_errors=[500] * 10), EDITORIAL, "provider_unavailable", ["INTERNAL_ERROR"]),
    ],
)
async def test_refusals_fail_the_job_with_a_clear_code(
    settings, faults: AutoToonFaults, args: dict[str, Any], code: str, words: list[str]
) -> None:
    autotoon = AutoToonEmulator(time_scale=TIME_SCALE, faults=faults)
    async with services(settings, autotoon) as svc:
        done = await run(svc, "editorial", args)
    assert done.status is JobStatus.FAILED
    assert done.error is not None and done.error.code == code, done.error
    for word in words:
        assert word in done.error.message, done.error.message
    assert not autotoon.stats.requests  # nothing was accepted, nothing charged
    expected_calls = FAST_RETRY.attempts if code == "provider_unavailable" else 1
    assert autotoon.stats.calls["editorial"] == expected_calls
    assert done.error.retryable is (code == "provider_unavailable")


async def test_400_message_carries_auto_toons_code(settings) -> None:
    autotoon = AutoToonEmulator(time_scale=TIME_SCALE)
    async with services(settings, autotoon) as svc:
        done = await run(svc, "editorial", {"model_id": "nobody", "clothing_image_urls": [DRESS]})
    assert done.error is not None and "BAD_REQUEST" in done.error.message and "modelId" in done.error.message


async def test_failed_video_is_a_failed_job(settings) -> None:
    autotoon = AutoToonEmulator(time_scale=TIME_SCALE, faults=AutoToonFaults(video_failures=1))
    async with services(settings, autotoon) as svc:
        done = await run(svc, "video", {"image_url": DRESS})
        repeat = await svc.engine.submit("autotoon", "video", {"image_url": DRESS})
    assert done.status is JobStatus.FAILED
    assert done.error is not None and done.error.code == "video_failed" and done.error.retryable
    assert repeat.job_id != done.job_id  # a failed job does not hold the key


async def test_dropped_answer_to_an_image_call_is_submission_lost(settings) -> None:
    faults = AutoToonFaults(generate_drop_after_accept=1)
    autotoon = AutoToonEmulator(time_scale=TIME_SCALE, faults=faults)
    async with services(settings, autotoon) as svc:
        done = await run(svc, "upscale", {"image_url": DRESS})
    assert done.error is not None and done.error.code == "submission_lost"
    assert "charged" in done.error.message and "force" in done.error.message
    assert autotoon.stats.calls["upscale"] == 1  # never resent


async def test_url_only_rule_stores_nothing_and_calls_nothing(settings, autotoon, garment) -> None:
    data_uri = "data:image/png;base64," + base64.b64encode(png_bytes()).decode()
    fashn = FashnEmulator(time_scale=TIME_SCALE)
    async with services(settings, autotoon, fashn) as svc:
        with pytest.raises(InputError) as local:
            await svc.engine.submit(
                "autotoon",
                "editorial",
                {"model_id": SAVED_MODEL, "clothing_image_urls": [DRESS, str(garment)]},
            )
        with pytest.raises(InputError) as inline:
            await svc.engine.submit("autotoon", "video", {"image_url": data_uri})
        # A FASHN output returned as base64 has no provider URL to pass on.
        cast = await svc.engine.submit("fashn", "model_create", {"prompt": "x", "return_base64": True})
        cast = await finish(svc, cast.job_id)
        with pytest.raises(InputError) as no_url:
            await svc.engine.submit("autotoon", "upscale", {"image_url": cast.outputs[0].uri})
        records, _ = await svc.engine.list_jobs(provider="autotoon")
    assert local.value.field == "clothing_image_urls[1]"
    assert str(local.value).startswith(
        f"clothing_image_urls[1]: {URL_ONLY}; {garment} is a local file. Pass a public http(s) URL, or an "
        "earlier output (callsheet://jobs/{id}/outputs/{n}) of a provider that returns URLs, e.g. FASHN; "
        "or set CALLSHEET_PUBLIC_URL"
    )
    assert inline.value.field == "image_url" and f"{URL_ONLY}; data:image/png" in str(inline.value)
    assert "is a data URI." in str(inline.value)
    assert "is a local file (its provider returned it inline" in str(no_url.value)
    assert records == []
    assert autotoon.stats.calls == {}


async def test_burst_beyond_the_rate_queues_without_429(tmp_path: Path) -> None:
    # A longer time scale than elsewhere, so that one rate window outlasts the work of many jobs and
    # the rate (not the in-flight cap) is what paces the burst; image calls answer at once.
    scale = 0.02
    (tmp_path / "inputs").mkdir()
    settings = make_settings(tmp_path / "home", tmp_path / "inputs", CALLSHEET_SANDBOX_TIME_SCALE=str(scale))
    (window,) = AUTOTOON_LIMITS.windows["generate"]
    # The emulator enforces callsheet's own rate (less 5% of the window for the time a request takes
    # to arrive), so a burst that callsheet did not pace would be refused.
    rates = {"generate": (window.limit, window.period * 0.95)}
    autotoon = AutoToonEmulator(time_scale=scale, sync_seconds=(0, 0), rates=rates)
    count = window.limit + 5
    async with services(settings, autotoon) as svc:
        jobs = [
            await svc.engine.submit(
                "autotoon", "relight", {"base_image_url": f"{PUBLIC}/{i}.png", "lighting": "neon"}
            )
            for i in range(count)
        ]
        result = await svc.engine.wait([j.job_id for j in jobs], wait_seconds=30)
    assert not result.pending
    assert all(j.status is JobStatus.SUCCEEDED for j in result.jobs)
    assert autotoon.stats.calls["relight"] == count
    assert autotoon.stats.sent_429 == 0
    arrivals = autotoon.stats.arrivals["generate"]
    # The request after the first window's worth waited for that window to pass.
    assert arrivals[window.limit] - arrivals[0] >= 0.9 * window.period * scale


async def test_sandbox_video_survives_a_restart_of_server_and_emulator(tmp_path: Path) -> None:
    """No `sandbox_apps`: the registry builds the emulator, with its state under CALLSHEET_HOME."""
    (tmp_path / "inputs").mkdir()
    settings = make_settings(tmp_path / "home", tmp_path / "inputs", CALLSHEET_SANDBOX_TIME_SCALE="0.01")
    async with open_services(settings, retry=FAST_RETRY, poll=FAST_POLL) as svc:
        job = await svc.engine.submit("autotoon", "video", {"image_url": DRESS})
        with anyio.fail_after(5):
            while (await svc.engine.get(job.job_id)).provider_job_id is None:
                await anyio.sleep(0.005)
    assert (settings.home / "sandbox" / emulation.STATE_FILE).is_file()
    async with open_services(settings, retry=FAST_RETRY, poll=FAST_POLL) as svc:
        done = await finish(svc, job.job_id)
        upscaled = await run(svc, "upscale", {"image_url": DRESS})
    assert done.status is JobStatus.SUCCEEDED, done.error
    assert Path(done.outputs[0].path).is_file()
    # The balance carried over: 1000 - 5 (video) - 1 (upscale).
    assert upscaled.status is JobStatus.SUCCEEDED
    assert emulation.AutoToonEmulator(state_dir=settings.home / "sandbox").credits == 994


async def test_image_job_stopped_before_its_download_finishes_after_a_restart(settings, autotoon) -> None:
    async with services(settings, autotoon) as svc:
        done = await run(svc, "variations", {"base_image_url": DRESS})
    assert done.provider_job_id is not None and done.provider_job_id.startswith(SYNC_PREFIX)
    # Forge what a stop between "answer stored" and "outputs downloaded" leaves behind.
    store = DiskStore(settings.store_dir)
    try:
        stalled = done.model_copy(
            update={"job_id": "j0000000000stalled", "status": JobStatus.SUBMITTED, "outputs": [], "key": "k"}
        )
        await store.put(stalled)
    finally:
        store.close()
    calls = autotoon.stats.calls["variations"]
    async with services(settings, autotoon) as svc:
        resumed = await finish(svc, stalled.job_id)
    assert resumed.status is JobStatus.SUCCEEDED and len(resumed.outputs) == 3
    assert autotoon.stats.calls["variations"] == calls  # nothing sent again


# --- The emulator on its own ---------------------------------------------------------------------


@asynccontextmanager
async def raw(emulator: AutoToonEmulator, key: str | None = "toon_test") -> AsyncIterator[httpx.AsyncClient]:
    headers = {"x-api-key": key} if key else {}
    transport = httpx.ASGITransport(app=emulator.app)
    async with httpx.AsyncClient(transport=transport, base_url="https://auto-toon.com", headers=headers) as c:
        yield c


async def test_emulator_speaks_the_documented_error_shapes() -> None:
    emulator = AutoToonEmulator(time_scale=TIME_SCALE, faults=AutoToonFaults(credits=2))
    async with raw(emulator, key=None) as anonymous:
        r = await anonymous.post("/api/fashion-editorial/upscale", json={"imageUrl": DRESS})
        assert r.status_code == 401 and r.json()["code"] == "UNAUTHORIZED" and r.json()["error"]
    async with raw(emulator) as client:
        r = await client.post(
            "/api/fashion-editorial/upscale", json={"imageUrl": "data:image/png;base64,AAAA"}
        )
        assert r.status_code == 400 and r.json()["code"] == "BAD_REQUEST" and "imageUrl" in r.json()["error"]
        r = await client.post("/api/fashion-editorial/upscale", json={"image_url": DRESS})
        assert r.status_code == 400 and "image_url" in r.json()["error"]
        r = await client.post("/api/fashion-editorial/relight", json={"baseImageUrl": DRESS})
        assert r.status_code == 400 and "lightPosition" in r.json()["error"]
        r = await client.post(
            "/api/fashion-editorial/generate", json={"modelId": SAVED_MODEL, "clothingImageUrls": [DRESS]}
        )
        assert r.status_code == 402
        assert r.json() == {
            "error": "Insufficient credits",
            "code": "INSUFFICIENT_CREDITS",
            "balance": 2,
            "required": 3,
            "needsTopUp": True,
        }
        r = await client.post("/api/fashion-editorial/upscale", json={"imageUrl": DRESS})
        assert r.status_code == 200 and r.json()["creditsRemaining"] == 1
        image = await client.get(r.json()["imageUrl"])
        assert image.status_code == 200 and image.headers["content-type"] == "image/png"
        missing = await client.get("/api/fashion-editorial/video/status/vid_nope")
        assert missing.status_code == 404 and missing.json()["code"] == "NOT_FOUND"


async def test_emulator_refuses_requests_past_its_rate() -> None:
    emulator = AutoToonEmulator(time_scale=1.0, rates={"list": (3, 60.0)})
    async with raw(emulator) as client:
        answers = [await client.get("/api/fashion-model/list") for _ in range(4)]
    assert [a.status_code for a in answers] == [200, 200, 200, 429]
    assert answers[-1].json()["code"] == "RATE_LIMITED"
    assert 0 < float(answers[-1].headers["retry-after"]) <= 60
    assert emulator.stats.sent_429 == 1


async def test_emulator_video_lifecycle_list_and_saved_state(tmp_path: Path) -> None:
    now = [1_000.0]
    emulator = AutoToonEmulator(time_scale=1.0, clock=lambda: now[0], state_dir=tmp_path)
    async with raw(emulator) as client:
        started = (
            await client.post("/api/fashion-editorial/video/generate", json={"imageUrl": DRESS})
        ).json()
        assert started["status"] == "processing" and started["id"].startswith("vid_")
        status = (await client.get(f"/api/fashion-editorial/video/status/{started['id']}")).json()
        assert status["status"] == "processing" and status["videoUrl"] is None
        now[0] += 121
        status = (await client.get(f"/api/fashion-editorial/video/status/{started['id']}")).json()
        assert status["status"] == "completed" and status["videoUrl"].endswith(".mp4")
        listed = (await client.get("/api/fashion-editorial/videos")).json()
        assert [v["id"] for v in listed["videos"]] == [started["id"]]
    # A new emulator on the same folder (a restarted server) knows the video and the balance.
    again = AutoToonEmulator(time_scale=1.0, clock=lambda: now[0], state_dir=tmp_path)
    assert again.credits == 1000 - emulation.PRICES["video"]
    async with raw(again) as client:
        status = (await client.get(f"/api/fashion-editorial/video/status/{started['id']}")).json()
        assert status["status"] == "completed"
        clip = await client.get(status["videoUrl"])
    assert clip.status_code == 200 and clip.headers["content-type"] in ("video/mp4", "image/gif")


# --- The adapter's readers -----------------------------------------------------------------------


async def test_models_query_accepts_a_bare_list_and_402_text_names_the_numbers(settings) -> None:
    from server.errors import InsufficientCredits
    from server.providers.autotoon.adapter import AutoToon
    from server.providers.autotoon.operations import ModelsQuery
    from tests.conftest import connected

    def handler(request: httpx.Request) -> httpx.Response:
        assert request.headers["x-api-key"] == "toon_live_key"
        if request.url.path == "/api/fashion-model/list":
            return httpx.Response(
                200, json=[{"modelId": "m1", "name": "Ava", "image_url": f"{PUBLIC}/a.png"}]
            )
        body = {"error": "Insufficient credits", "code": "INSUFFICIENT_CREDITS", "balance": 1, "required": 5}
        return httpx.Response(402, json={**body, "needsTopUp": True})

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
        adapter = connected(AutoToon, client, "https://auto-toon.com", "toon_live_key")
        listed = await adapter.query("models", ModelsQuery())
        with pytest.raises(InsufficientCredits) as err:
            await adapter.submit("video", {"imageUrl": DRESS})
    assert listed == {"models": [{"id": "m1", "name": "Ava", "image_url": f"{PUBLIC}/a.png"}], "count": 1}
    message = err.value.message
    assert "INSUFFICIENT_CREDITS" in message and "needs 5 credits" in message and "balance is 1" in message
    assert "top up" in message.lower() and "toon_live_key" not in message
