"""Every tool and resource through an in-memory MCP client, in both protocol eras."""

from __future__ import annotations

import base64
import io
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from mcp import Client
from mcp_types import CallToolResult, ImageContent, ResourceLink, TextContent
from PIL import Image

from server.app import create_app
from server.config import Settings
from server.models import Job
from server.providers.fashn.emulator import FashnEmulator
from tests.conftest import FAST_POLL, FAST_RETRY, FIXED_RESOURCES

pytestmark = pytest.mark.anyio

FASHN_TOOLS = {
    "fashn_tryon_max",
    "fashn_tryon_v1_6",
    "fashn_product_to_model",
    "fashn_face_to_model",
    "fashn_model_create",
    "fashn_model_swap",
    "fashn_edit",
    "fashn_reframe",
    "fashn_background_change",
    "fashn_background_remove",
    "fashn_image_to_video",
    "fashn_packshot",
}
OTHER_TOOLS = {"job_status", "job_wait", "job_cancel", "jobs_list", "providers", "credits"}


@pytest.fixture(params=["auto", "legacy"])
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@asynccontextmanager
async def connect(settings: Settings, emulator: FashnEmulator, mode: str) -> AsyncIterator[Client]:
    app = create_app(settings, sandbox_apps={"fashn": emulator.app}, retry=FAST_RETRY, poll=FAST_POLL)
    async with Client(app, mode=mode) as client:
        yield client


def text(result: CallToolResult) -> str:
    return " ".join(c.text for c in result.content if isinstance(c, TextContent))


def job_of(result: CallToolResult) -> Job:
    assert result.structured_content is not None, text(result)
    return Job.model_validate(result.structured_content)


async def test_tools_are_listed_with_schemas_annotations_and_costs(settings, emulator, mode) -> None:
    async with connect(settings, emulator, mode) as client:
        tools = {t.name: t for t in (await client.list_tools()).tools}
    assert set(tools) >= FASHN_TOOLS | OTHER_TOOLS
    assert {t for t in tools if t.startswith("fashn_")} == FASHN_TOOLS
    tryon = tools["fashn_tryon_max"]
    props = tryon.input_schema["properties"]
    assert {"model_image", "product_image", "resolution", "num_images", "wait_seconds", "force"} <= set(props)
    assert set(tryon.input_schema["required"]) == {"model_image", "product_image"}
    assert props["model_image"]["description"]
    assert props["wait_seconds"]["maximum"] == 50
    assert tryon.output_schema is not None and "job_id" in tryon.output_schema["properties"]
    for name in FASHN_TOOLS:
        assert "credit" in (tools[name].description or "").lower(), name
        assert tools[name].annotations is not None and tools[name].annotations.open_world_hint
    assert tools["job_status"].annotations is not None and tools["job_status"].annotations.read_only_hint
    assert tools["job_cancel"].annotations is not None and tools["job_cancel"].annotations.destructive_hint


async def test_tryon_with_local_file_returns_thumbnail_link_and_job(
    settings, emulator, model_photo, garment, mode
) -> None:
    progress: list[float] = []

    async def on_progress(value: float, total: float | None, message: str | None) -> None:
        progress.append(value)

    async with connect(settings, emulator, mode) as client:
        result = await client.call_tool(
            "fashn_tryon_max",
            {"model_image": str(model_photo), "product_image": str(garment), "resolution": "2k"},
            progress_callback=on_progress,
        )
        assert not result.is_error, text(result)
        job = job_of(result)
        assert job.status == "succeeded" and job.sandbox and job.operation == "tryon_max"
        assert job.credits_used == 3
        images = [c for c in result.content if isinstance(c, ImageContent)]
        links = [c for c in result.content if isinstance(c, ResourceLink)]
        assert len(images) == 1 and len(links) == 1
        thumb = base64.b64decode(images[0].data)
        assert len(thumb) < 100_000
        assert max(Image.open(io.BytesIO(thumb)).size) <= 512
        assert str(links[0].uri) == job.outputs[0].uri
        assert "succeeded" in text(result)
        assert progress, "progress notifications were sent while waiting"

        # The resources: the job as JSON, the full file as a blob with its own MIME type.
        res = await client.read_resource(f"callsheet://jobs/{job.job_id}")
        assert json.loads(res.contents[0].text)["status"] == "succeeded"  # type: ignore[union-attr]
        res = await client.read_resource(job.outputs[0].uri)
        blob = res.contents[0]
        assert blob.mime_type == "image/png"
        data = base64.b64decode(blob.blob)  # type: ignore[union-attr]
        assert Image.open(io.BytesIO(data)).size == (job.outputs[0].width, job.outputs[0].height)
        assert Path(job.outputs[0].path).read_bytes() == data


async def test_result_for_a_2048_output_stays_small(settings, emulator, model_photo, garment, mode) -> None:
    async with connect(settings, emulator, mode) as client:
        result = await client.call_tool(
            "fashn_product_to_model",
            {"product_image": str(garment), "resolution": "2k", "aspect_ratio": "1:1"},
        )
    job = job_of(result)
    assert (job.outputs[0].width, job.outputs[0].height) == (2048, 2048)
    size = len(result.model_dump_json(by_alias=True, exclude_none=True))
    assert size < 100_000, size


async def test_wait_zero_returns_at_once_and_job_tools_follow_it(
    settings, emulator, model_photo, garment, mode
) -> None:
    async with connect(settings, emulator, mode) as client:
        started = await client.call_tool(
            "fashn_tryon_max",
            {"model_image": str(model_photo), "product_image": str(garment), "wait_seconds": 0},
        )
        job = job_of(started)
        assert job.status in ("queued", "submitted", "running")
        assert "job_wait" in text(started)
        repeat = job_of(
            await client.call_tool(
                "fashn_tryon_max",
                {"model_image": str(model_photo), "product_image": str(garment), "wait_seconds": 0},
            )
        )
        assert repeat.job_id == job.job_id

        status = job_of(await client.call_tool("job_status", {"job_id": job.job_id}))
        assert status.job_id == job.job_id

        waited = await client.call_tool("job_wait", {"job_ids": [job.job_id], "wait_seconds": 20})
        assert waited.structured_content is not None
        assert waited.structured_content["pending"] == []
        assert waited.structured_content["jobs"][0]["status"] == "succeeded"

        listed = await client.call_tool("jobs_list", {"provider": "fashn", "limit": 5})
        assert listed.structured_content is not None
        assert [j["job_id"] for j in listed.structured_content["jobs"]] == [job.job_id]
        assert emulator.stats.run_calls == 1


async def test_job_wait_any_and_paging(settings, emulator, model_photo, mode) -> None:
    async with connect(settings, emulator, mode) as client:
        ids = []
        for i in range(3):
            r = await client.call_tool("fashn_model_create", {"prompt": f"model {i}", "wait_seconds": 0})
            ids.append(job_of(r).job_id)
        waited = await client.call_tool("job_wait", {"job_ids": ids, "until": "any", "wait_seconds": 20})
        assert waited.structured_content is not None
        assert any(j["status"] == "succeeded" for j in waited.structured_content["jobs"])
        page1 = (await client.call_tool("jobs_list", {"limit": 2})).structured_content
        assert page1 is not None and len(page1["jobs"]) == 2 and page1["next_cursor"]
        page2 = (
            await client.call_tool("jobs_list", {"limit": 2, "cursor": page1["next_cursor"]})
        ).structured_content
        assert page2 is not None and len(page2["jobs"]) == 1 and page2["next_cursor"] is None
        seen = [j["job_id"] for j in page1["jobs"] + page2["jobs"]]
        assert seen == list(reversed(ids))  # newest first
        await client.call_tool("job_wait", {"job_ids": ids, "wait_seconds": 20})


async def test_job_cancel(settings, model_photo, garment, mode) -> None:
    emulator = FashnEmulator(time_scale=0.05)
    async with connect(settings, emulator, mode) as client:
        started = job_of(
            await client.call_tool(
                "fashn_tryon_max",
                {"model_image": str(model_photo), "product_image": str(garment), "wait_seconds": 0},
            )
        )
        canceled = await client.call_tool("job_cancel", {"job_id": started.job_id})
        assert job_of(canceled).status == "canceled"
        again = await client.call_tool("job_cancel", {"job_id": started.job_id})
        assert "already" in text(again)


async def test_providers_and_credits(settings, emulator, mode) -> None:
    async with connect(settings, emulator, mode) as client:
        providers = (await client.call_tool("providers", {})).structured_content
        credits = (await client.call_tool("credits", {})).structured_content
    assert providers is not None and credits is not None
    by_name = {p["name"]: p for p in providers["providers"]}
    assert by_name["fashn"]["mode"] == "sandbox"
    assert "in_flight" in by_name["fashn"]["limits"]
    assert "fashn_tryon_max" in by_name["fashn"]["prices"]
    (fashn,) = [b for b in credits["balances"] if b["provider"] == "fashn"]
    assert fashn["sandbox"] is True and fashn["credits"] == 1000


@pytest.mark.parametrize(
    ("tool", "args", "words"),
    [
        ("fashn_tryon_max", {"model_image": "x.png"}, ["product_image", "required"]),
        (
            "fashn_tryon_max",
            {"model_image": "a", "product_image": "b", "colour": "red"},
            ["colour", "unknown"],
        ),
        (
            "fashn_tryon_max",
            {"model_image": "a", "product_image": "b", "resolution": "8k"},
            ["resolution", "8k"],
        ),
        (
            "fashn_tryon_max",
            {"model_image": "/etc/passwd", "product_image": "/etc/hosts"},
            ["outside", "CALLSHEET_INPUT_ROOTS"],
        ),
        (
            "fashn_tryon_max",
            {"model_image": "ftp://example.com/a.png", "product_image": "b"},
            ["model_image", "http"],
        ),
        ("fashn_tryon_max", {"model_image": "http://127.0.0.1/a.png", "product_image": "b"}, ["model_image"]),
        ("fashn_edit", {"image": "callsheet://jobs/nope/outputs/0", "prompt": "x"}, ["nope"]),
        ("job_status", {"job_id": "j-unknown"}, ["j-unknown"]),
        ("job_cancel", {"job_id": "j-unknown"}, ["j-unknown"]),
        ("job_wait", {"job_ids": ["j-unknown"]}, ["j-unknown"]),
    ],
)
async def test_bad_input_is_a_clear_tool_error(
    settings, emulator, mode, tool: str, args: dict[str, Any], words: list[str]
) -> None:
    async with connect(settings, emulator, mode) as client:
        result = await client.call_tool(tool, args)
        listed = (await client.call_tool("jobs_list", {})).structured_content
    assert result.is_error
    message = text(result)
    for word in words:
        assert word in message, message
    assert "Traceback" not in message
    assert listed is not None and listed["jobs"] == []
    assert emulator.stats.run_calls == 0


async def test_not_an_image_and_missing_file(settings, emulator, mode) -> None:
    notes = settings.input_roots[0] / "notes.txt"
    notes.write_text("not an image")
    async with connect(settings, emulator, mode) as client:
        bad = await client.call_tool("fashn_background_remove", {"image": str(notes)})
        missing = await client.call_tool(
            "fashn_background_remove", {"image": str(notes.with_name("gone.png"))}
        )
    assert bad.is_error and "not an image" in text(bad)
    assert missing.is_error and "not found" in text(missing).lower()


async def test_failed_job_is_a_tool_error_carrying_the_job(settings, emulator, mode) -> None:
    async with connect(settings, emulator, mode) as client:
        result = await client.call_tool(
            "fashn_model_create", {"prompt": "x [sandbox:fail=ContentModerationError]"}
        )
    assert result.is_error
    job = job_of(result)
    assert job.status == "failed" and job.error is not None
    assert job.error.code == "content_moderation_error"
    assert "moderation" in text(result).lower()


async def test_unknown_resource_is_an_error(settings, emulator, mode) -> None:
    async with connect(settings, emulator, mode) as client:
        with pytest.raises(Exception, match="j-missing"):
            await client.read_resource("callsheet://jobs/j-missing")


async def test_every_tool_prompt_and_the_server_have_a_title(settings, emulator, mode) -> None:
    """Clients show titles in their tool and prompt pickers; a bare name is what they fall back to."""
    async with connect(settings, emulator, mode) as client:
        tools = (await client.list_tools()).tools
        prompts = (await client.list_prompts()).prompts
        server = client.server_info
    assert [t.name for t in tools if not t.title] == []
    assert [p.name for p in prompts if not p.title] == []
    assert len({t.title for t in tools}) == len(tools)  # no two alike
    if mode == "legacy":  # the 2026 era may leave the server's stamp out
        assert server is not None and server.title


async def test_resources_list_offers_the_newest_jobs_to_resource_pickers(
    settings, emulator, model_photo, garment, mode
) -> None:
    async with connect(settings, emulator, mode) as client:
        assert {str(r.uri) for r in (await client.list_resources()).resources} == FIXED_RESOURCES
        made = await client.call_tool(
            "fashn_tryon_max", {"model_image": str(model_photo), "product_image": str(garment)}
        )
        job = job_of(made)
        listed = [r for r in (await client.list_resources()).resources if str(r.uri) not in FIXED_RESOURCES]
        assert [str(r.uri) for r in listed] == [f"callsheet://jobs/{job.job_id}"]
        assert listed[0].mime_type == "application/json" and listed[0].title
        assert "fashn tryon_max" in listed[0].title
        read = await client.read_resource(str(listed[0].uri))
        assert job.job_id in read.contents[0].text  # type: ignore[union-attr]
