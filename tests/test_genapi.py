"""The Generation API: discovery, multipart generation, polling, outputs and tool-list changes.

Through an in-memory MCP client in both protocol eras where the MCP surface matters (tools, schema
enum, list_changed), through the engine where it does not (restarts, retries, idempotency).
"""

from __future__ import annotations

import base64
import io
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx
import mcp_types as types
import pytest
from mcp import Client
from mcp.shared.subscriptions import ToolsListChanged
from mcp_types import CallToolResult, ImageContent, ResourceLink, TextContent
from PIL import Image
from starlette.applications import Starlette
from starlette.routing import Mount

from server.app import create_app
from server.config import Settings
from server.errors import InputError, ProviderRejected
from server.models import Job, JobStatus
from server.providers.genapi.adapter import GenApi, genapi_error_message, parse_generation_types
from server.providers.genapi.emulator import DEFAULT_TOOLS, GenApiEmulator, GenApiFaults
from server.services import open_services
from tests.conftest import (
    FAST_POLL,
    FAST_RETRY,
    TIME_SCALE,
    connected,
    make_settings,
    png_bytes,
    sandbox_services,
)
from tests.redis_server import RedisServer

pytestmark = pytest.mark.anyio

DOCUMENTED = [t["tool"] for t in DEFAULT_TOOLS]


@pytest.fixture(params=["auto", "legacy"])
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def emu() -> GenApiEmulator:
    return GenApiEmulator(time_scale=TIME_SCALE)


@pytest.fixture
def clothes(settings: Settings) -> Path:
    path = settings.input_roots[0] / "dress.png"
    path.write_bytes(png_bytes(color=(10, 120, 200)))
    return path


@pytest.fixture
def person(settings: Settings) -> Path:
    path = settings.input_roots[0] / "model.png"
    path.write_bytes(png_bytes(color=(220, 180, 160)))
    return path


def swap(clothes: Path, person: Path, **extra: Any) -> dict[str, Any]:
    return {"tool": "fashion_swap", "images": {"clothes": str(clothes), "person": str(person)}, **extra}


@asynccontextmanager
async def connect(
    settings: Settings, emu: GenApiEmulator, mode: str, app: Any = None, **client: Any
) -> AsyncIterator[Client]:
    server = create_app(settings, sandbox_apps={"genapi": app or emu.app}, retry=FAST_RETRY, poll=FAST_POLL)
    async with Client(server, mode=mode, **client) as c:
        yield c


@asynccontextmanager
async def services(settings: Settings, emu: GenApiEmulator, app: Any = None) -> AsyncIterator[Any]:
    async with sandbox_services(settings, emu, sandbox_apps={"genapi": app or emu.app}) as svc:  # type: ignore[arg-type]
        yield svc


async def finish(svc: Any, job_id: str, seconds: float = 10.0) -> Any:
    result = await svc.engine.wait([job_id], wait_seconds=seconds)
    assert not result.pending, f"job {job_id} did not finish: {result.jobs[0].status}"
    return result.jobs[0]


def text(result: CallToolResult) -> str:
    return " ".join(c.text for c in result.content if isinstance(c, TextContent))


def job_of(result: CallToolResult) -> Job:
    assert result.structured_content is not None, text(result)
    return Job.model_validate(result.structured_content)


async def tool_enum(client: Client) -> list[str] | None:
    tools = {t.name: t for t in (await client.list_tools()).tools}
    prop = tools["genapi_generate"].input_schema["properties"]["tool"]
    return prop.get("enum")


# --- the two tools through MCP ------------------------------------------------------------------


async def test_genapi_tools_lists_discovered_tools_and_types(settings, emu, mode) -> None:
    async with connect(settings, emu, mode) as client:
        result = await client.call_tool("genapi_tools", {})
        names = {t.name for t in (await client.list_tools()).tools}
    assert not result.is_error, text(result)
    data = result.structured_content
    assert data is not None and data["count"] == len(DOCUMENTED)
    assert [t["tool"] for t in data["tools"]] == DOCUMENTED
    swap_tool = next(t for t in data["tools"] if t["tool"] == "fashion_swap")
    assert swap_tool == {
        "tool": "fashion_swap",
        "title": "Fashion Swap",
        "group_tool": "fashion",
        "generation_types": ["full_body", "upper_body", "lower_body"],
    }
    assert {"genapi_tools", "genapi_generate"} <= names


async def test_generate_uploads_multipart_polls_and_downloads_both_outputs(
    settings, emu, clothes, person, mode
) -> None:
    async with connect(settings, emu, mode) as client:
        result = await client.call_tool(
            "genapi_generate",
            swap(clothes, person, generation_type="upper_body", fields={"prompt": "studio", "seed": 7}),
        )
    assert not result.is_error, text(result)
    job = job_of(result)
    assert job.status == "succeeded" and job.sandbox and job.operation == "generate"
    assert job.credits_estimate is None

    [received] = emu.stats.received
    assert received.path == "/generation/generate_image_v2/"
    assert received.form == {
        "tool": "fashion_swap",
        "generation_type": "upper_body",
        "prompt": "studio",
        "seed": "7",
    }
    assert set(received.files) == {"clothes", "person"}
    assert received.files["clothes"].data == clothes.read_bytes()
    assert received.files["person"].data == person.read_bytes()
    assert received.files["clothes"].filename == "clothes.png"
    assert received.files["person"].content_type == "image/png"

    item = next(iter(emu.stats.items))
    stock, preview = job.outputs
    assert stock.source_url == f"http://localhost:8000/image/generation_result/{item}_stock.png"
    assert preview.source_url == f"http://localhost:8000/image/generation_result/{item}_preview.webp"
    assert (stock.mime_type, stock.width, stock.height) == ("image/png", 768, 1024)
    assert (preview.mime_type, preview.width, preview.height) == ("image/webp", 384, 512)
    assert Path(stock.path).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    thumbs = [c for c in result.content if isinstance(c, ImageContent)]
    links = [c for c in result.content if isinstance(c, ResourceLink)]
    assert len(thumbs) == 2 and len(links) == 2
    for thumb in thumbs:
        data = base64.b64decode(thumb.data)
        assert len(data) < 100_000 and max(Image.open(io.BytesIO(data)).size) <= 512
    assert emu.stats.status_calls <= 4


async def test_unknown_tool_is_refused_before_anything_is_sent(settings, emu, clothes, person, mode) -> None:
    async with connect(settings, emu, mode) as client:
        await client.call_tool("genapi_tools", {})
        fetched = emu.stats.tools_calls
        result = await client.call_tool("genapi_generate", swap(clothes, person, tool="pattern_maker"))
        listed = (await client.call_tool("jobs_list", {})).structured_content
    assert result.is_error
    message = text(result)
    assert "pattern_maker" in message and "fashion_swap" in message and "tool" in message
    assert emu.stats.tools_calls == fetched + 1  # looked again once, then refused
    assert emu.stats.generate_calls == 0
    assert listed is not None and listed["jobs"] == []


async def test_a_new_tool_changes_the_schema_and_clients_hear_of_it(settings, emu, clothes, mode) -> None:
    heard: list[object] = []

    async def on_message(message: object) -> None:
        if isinstance(message, types.ToolListChangedNotification):
            heard.append(message)

    async with connect(settings, emu, mode, message_handler=on_message) as client:
        assert client.server_capabilities.tools is not None
        assert client.server_capabilities.tools.list_changed is True
        await client.call_tool("genapi_tools", {})
        assert await tool_enum(client) == DOCUMENTED
        async with _listening(client, mode) as events:
            before = len(heard)
            emu.add_tool("pattern_maker", "Pattern Maker", "textile", generation_types=["flat", "tiled"])
            # Named before the next background refresh: the call itself makes the adapter look again.
            result = await client.call_tool(
                "genapi_generate",
                {"tool": "pattern_maker", "images": {"image": str(clothes)}, "generation_type": "tiled"},
            )
            assert not result.is_error, text(result)
            assert job_of(result).status == "succeeded"
            assert await tool_enum(client) == [*DOCUMENTED, "pattern_maker"]
            with anyio.fail_after(5):
                while len(heard) == before:
                    await anyio.sleep(0.005)
            if events is not None:
                with anyio.fail_after(5):
                    assert isinstance(await anext(events), ToolsListChanged)

            # A refresh that drops a tool narrows the enum again.
            emu.tools = [t for t in emu.tools if t["tool"] != "furniture"]
            heard_now = len(heard)
            refreshed = await client.call_tool("genapi_tools", {"refresh": True})
            assert refreshed.structured_content is not None
            assert "furniture" not in [t["tool"] for t in refreshed.structured_content["tools"]]
            assert "furniture" not in (await tool_enum(client) or [])
            with anyio.fail_after(5):
                while len(heard) == heard_now:
                    await anyio.sleep(0.005)
            gone = await client.call_tool("genapi_generate", {"tool": "furniture", "images": {"image": "x"}})
            assert gone.is_error and "furniture" in text(gone)


@asynccontextmanager
async def _listening(client: Client, mode: str) -> AsyncIterator[Any]:
    """At the 2026-07-28 era change notifications come only on a listen stream the client opens."""
    if mode == "legacy":
        yield None
        return
    async with client.listen(tools_list_changed=True) as subscription:
        yield subscription


async def test_failed_generation_is_a_failed_job(settings, emu, clothes, person, mode) -> None:
    async with connect(settings, emu, mode) as client:
        result = await client.call_tool(
            "genapi_generate", swap(clothes, person, fields={"prompt": "x [sandbox:error=Worker crashed]"})
        )
    assert result.is_error
    job = job_of(result)
    assert job.status == "failed" and job.error is not None
    assert job.error.code == "generation_error" and "Worker crashed" in job.error.message


# --- the engine: paths, errors, idempotency, restarts ------------------------------------------


async def test_outputs_resolve_against_the_origin_under_a_path_prefix(tmp_path: Path, emu) -> None:
    (tmp_path / "inputs").mkdir()
    settings = make_settings(
        tmp_path / "home", tmp_path / "inputs", GENAPI_BASE_URL="http://genapi.test:9000/api/v2"
    )
    image = tmp_path / "inputs" / "room.png"
    image.write_bytes(png_bytes())
    # The API lives under /api/v2; its images are served at the origin's root, outside the prefix.
    server = Starlette(routes=[Mount("/api/v2", app=emu.app), Mount("/", app=emu.app)])
    async with services(settings, emu, server) as svc:
        job = await svc.engine.submit(
            "genapi", "generate", {"tool": "furniture", "images": {"image": str(image)}}
        )
        done = await finish(svc, job.job_id)
    assert done.status is JobStatus.SUCCEEDED, done.error
    api = [p for p in emu.stats.paths if not p.startswith("/image/")]
    assert api and all(p.startswith("/api/v2/") for p in api), api
    item = next(iter(emu.stats.items))
    assert [o.source_url for o in done.outputs] == [
        f"http://genapi.test:9000/image/generation_result/{item}_stock.png",
        f"http://genapi.test:9000/image/generation_result/{item}_preview.webp",
    ]
    assert all(Path(o.path).is_file() for o in done.outputs)


@pytest.mark.parametrize("status", [307, 308, 301])
async def test_a_trailing_slash_redirect_is_followed_once(settings, clothes, person, status: int) -> None:
    emu = GenApiEmulator(
        time_scale=TIME_SCALE, faults=GenApiFaults(slashless_generate=True, redirect_status=status)
    )
    async with services(settings, emu) as svc:
        job = await svc.engine.submit("genapi", "generate", swap(clothes, person))
        done = await finish(svc, job.job_id)
    assert done.status is JobStatus.SUCCEEDED, done.error
    posts = [p for p in emu.stats.paths if p.startswith("/generation/generate_image_v2")]
    assert posts == ["/generation/generate_image_v2/", "/generation/generate_image_v2"]
    assert len(emu.stats.received) == 1


async def test_the_emulator_redirects_the_slashless_path_like_fastapi(emu) -> None:
    transport = httpx.ASGITransport(app=emu.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://localhost:8000") as client:
        response = await client.post("/generation/generate_image_v2", headers={"Authorization": "Bearer k"})
    assert response.status_code == 307
    assert response.headers["location"] == "http://localhost:8000/generation/generate_image_v2/"


async def test_a_redirect_elsewhere_is_not_followed() -> None:
    sent: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(str(request.url))
        return httpx.Response(
            307, headers={"location": "http://elsewhere.test/generation/generate_image_v2/"}
        )

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
        adapter = connected(GenApi, client, "http://localhost:8000")
        with pytest.raises(ProviderRejected, match="trailing-slash"):
            await adapter.submit("generate", {"tool": "default", "fields": {}, "images": []})
    assert sent == ["http://localhost:8000/generation/generate_image_v2/"]


async def test_unknown_tool_and_bad_arguments_are_refused_by_prepare(settings, emu, clothes, person) -> None:
    async with services(settings, emu) as svc:
        with pytest.raises(InputError, match=r"Use one of: lego_clothes, mamasfit") as unknown:
            await svc.engine.submit("genapi", "generate", swap(clothes, person, tool="pattern_maker"))
        assert unknown.value.field == "tool"
        with pytest.raises(InputError, match="full_body, upper_body, lower_body"):
            await svc.engine.submit("genapi", "generate", swap(clothes, person, generation_type="sideways"))
        with pytest.raises(InputError, match=r"images\.person.*uploaded files"):
            await svc.engine.submit(
                "genapi",
                "generate",
                {
                    "tool": "fashion_swap",
                    "images": {"clothes": str(clothes), "person": "https://93.184.216.34/a.png"},
                },
            )
        with pytest.raises(InputError, match="images"):
            await svc.engine.submit(
                "genapi", "generate", {"tool": "default", "images": {"bad name": str(clothes)}}
            )
        with pytest.raises(InputError, match="images"):
            await svc.engine.submit("genapi", "generate", {"tool": "default", "images": {}})
        # The published form, a list of pairs: each pair whole, each field once.
        twice = [{"field": "clothes", "image": str(clothes)}, {"field": "clothes", "image": str(person)}]
        with pytest.raises(InputError, match=r"images.*'clothes' is given twice"):
            await svc.engine.submit("genapi", "generate", {"tool": "fashion_swap", "images": twice})
        with pytest.raises(InputError, match=r"images.*item 0 must be"):
            await svc.engine.submit("genapi", "generate", {"tool": "default", "images": [{"image": "x"}]})
        with pytest.raises(InputError, match=r"fields.*item 0 must be"):
            await svc.engine.submit(
                "genapi", "generate", swap(clothes, person, fields=[{"name": "prompt", "text": "x"}])
            )
        jobs, _ = await svc.engine.list_jobs()
    assert jobs == []
    assert emu.stats.generate_calls == 0


async def test_the_list_of_pairs_and_the_map_are_one_call(settings, emu, clothes, person) -> None:
    """`images` and `fields` as published (lists of pairs) or as maps: the same job, sent once."""
    pairs = {
        "tool": "fashion_swap",
        "images": [{"field": "clothes", "image": str(clothes)}, {"field": "person", "image": str(person)}],
        "fields": [{"name": "prompt", "value": "studio light"}],
    }
    async with services(settings, emu) as svc:
        listed = await svc.engine.submit("genapi", "generate", pairs)
        mapped = await svc.engine.submit(
            "genapi", "generate", swap(clothes, person, fields={"prompt": "studio light"})
        )
        assert mapped.job_id == listed.job_id
        await finish(svc, listed.job_id)
    assert emu.stats.generate_calls == 1
    sent = emu.stats.received[-1]
    assert set(sent.files) == {"clothes", "person"} and sent.form.get("prompt") == "studio light"


async def test_an_identical_call_is_one_generation(settings, emu, clothes, person) -> None:
    copy = clothes.with_name("copy.png")
    copy.write_bytes(clothes.read_bytes())
    async with services(settings, emu) as svc:
        first = await svc.engine.submit("genapi", "generate", swap(clothes, person))
        again = await svc.engine.submit("genapi", "generate", swap(copy, person))
        assert again.job_id == first.job_id
        await finish(svc, first.job_id)
        after = await svc.engine.submit("genapi", "generate", swap(clothes, person))
        assert after.job_id == first.job_id and after.status is JobStatus.SUCCEEDED
        other = await svc.engine.submit(
            "genapi", "generate", swap(clothes, person, generation_type="full_body")
        )
        assert other.job_id != first.job_id
        await finish(svc, other.job_id)
    assert emu.stats.generate_calls == 2


async def test_a_wrong_key_is_a_clear_tool_error(settings, clothes, person, mode) -> None:
    emu = GenApiEmulator(time_scale=TIME_SCALE, api_key="the-right-key")
    async with connect(settings, emu, mode) as client:
        listed = await client.call_tool("genapi_tools", {})
        generated = await client.call_tool("genapi_generate", swap(clothes, person))
    for result in (listed, generated):
        assert result.is_error
        assert "401" in text(result) and "GENAPI_API_KEY" in text(result)
    assert emu.stats.generate_calls == 0


async def test_the_background_refresh_follows_the_api(tmp_path: Path, emu) -> None:
    (tmp_path / "inputs").mkdir()
    settings = make_settings(tmp_path / "home", tmp_path / "inputs", GENAPI_TOOLS_REFRESH_SECONDS="0.01")
    changes: list[list[str]] = []
    async with services(settings, emu) as svc:
        adapter = svc.providers["genapi"]

        async def on_change() -> None:
            schema = adapter.operations()[0].inputs.model_json_schema()
            changes.append(schema["properties"]["tool"].get("enum", []))

        adapter.on_operations_changed(on_change)
        with anyio.fail_after(5):
            while emu.stats.tools_calls < 2:
                await anyio.sleep(0.005)
        emu.add_tool("pattern_maker", "Pattern Maker")
        with anyio.fail_after(5):
            while not changes or "pattern_maker" not in changes[-1]:
                await anyio.sleep(0.005)
        assert emu.stats.generate_calls == 0


async def test_sandbox_items_survive_a_server_restart(tmp_path: Path) -> None:
    (tmp_path / "inputs").mkdir()
    settings = make_settings(tmp_path / "home", tmp_path / "inputs", CALLSHEET_SANDBOX_TIME_SCALE="0.02")
    image = tmp_path / "inputs" / "fabric.png"
    image.write_bytes(png_bytes())
    args = {"tool": "fabric", "images": {"image": str(image)}}
    # No `sandbox_apps`: the registry builds the emulator, with its state under CALLSHEET_HOME.
    async with open_services(settings, retry=FAST_RETRY, poll=FAST_POLL) as svc:
        job = await svc.engine.submit("genapi", "generate", args)
        with anyio.fail_after(5):
            while (await svc.engine.get(job.job_id)).provider_job_id is None:
                await anyio.sleep(0.005)
    assert (settings.home / "sandbox" / "genapi.json").is_file()
    async with open_services(settings, retry=FAST_RETRY, poll=FAST_POLL) as svc:
        result = await svc.engine.wait([job.job_id], wait_seconds=10)
    [done] = result.jobs
    assert done.status is JobStatus.SUCCEEDED, done.error
    assert len(done.outputs) == 2


# --- the emulator and the parsers on their own -------------------------------------------------


async def test_the_emulator_refuses_unknown_tools_and_missing_images(emu) -> None:
    transport = httpx.ASGITransport(app=emu.app)
    auth = {"Authorization": "Bearer k"}
    png = ("a.png", png_bytes(), "image/png")
    async with httpx.AsyncClient(transport=transport, base_url="http://localhost:8000") as client:
        unauthorized = await client.get("/generation/tools")
        unknown = await client.post(
            "/generation/generate_image_v2/", headers=auth, data={"tool": "nope"}, files={"image": png}
        )
        missing = await client.post(
            "/generation/generate_image_v2/",
            headers=auth,
            data={"tool": "fashion_swap"},
            files={"clothes": png},
        )
        ok = await client.post(
            "/generation/generate_image_v2/", headers=auth, data={"tool": "default"}, files={"image": png}
        )
        history = await client.get(f"/user/generation-history/{ok.json()['history_item_id']}", headers=auth)
    assert unauthorized.status_code == 401 and unauthorized.json() == {"detail": "Not authenticated"}
    assert unknown.status_code == 400 and "nope" in unknown.json()["detail"]
    assert missing.status_code == 400 and "person" in missing.json()["detail"]
    assert set(ok.json()) == {"preview_image", "stock_image", "history_item_id"}
    assert ok.json()["stock_image"].startswith("image/generation_result/")
    assert history.json()["status"] == "pending"


def test_generation_types_in_every_shape() -> None:
    assert parse_generation_types(["a", "b", "a"]) == ("a", "b")
    assert parse_generation_types([{"name": "a", "title": "A"}, {"id": 7}, {"type": "c"}]) == ("a", "7", "c")
    assert parse_generation_types({"generation_types": [{"generation_type": "x", "name": "X"}]}) == ("x",)
    assert parse_generation_types([]) == ()
    with pytest.raises(Exception, match="not a JSON list"):
        parse_generation_types({"unexpected": 1})


async def test_output_paths_resolve_against_the_origin() -> None:
    async with httpx.AsyncClient() as client:
        adapter = connected(GenApi, client, "https://gen.example.com:8443/api/v1")
    assert adapter.output_url("/image/a.png") == "https://gen.example.com:8443/image/a.png"
    assert adapter.output_url("image/a.webp") == "https://gen.example.com:8443/image/a.webp"
    assert adapter.output_url("https://cdn.example.com/x.png") == "https://cdn.example.com/x.png"


def test_error_messages_read_fastapi_details() -> None:
    def message(body: object, status: int = 422) -> str:
        return genapi_error_message(httpx.Response(status, json=body))

    assert message({"detail": "Unknown tool 'x'"}, 400) == "Unknown tool 'x'"
    detail = [{"loc": ["body", "person"], "msg": "Field required", "type": "missing"}]
    assert message({"detail": detail}) == "person: Field required"
    assert genapi_error_message(httpx.Response(502, text="Bad Gateway")) == "Bad Gateway"


async def test_the_background_refresh_outlives_a_store_that_went_away(
    tmp_path: Path, emu, caplog: pytest.LogCaptureFixture
) -> None:
    """With Redis away, the refresh cannot take its turn in the shared limits: it says so in the log
    and fetches again at the next period, instead of ending the server."""
    redis = RedisServer(tmp_path / "redis").start()
    try:
        (tmp_path / "inputs").mkdir()
        settings = make_settings(
            tmp_path / "home",
            tmp_path / "inputs",
            GENAPI_TOOLS_REFRESH_SECONDS="0.01",
            CALLSHEET_STORE=redis.url,
        )
        async with services(settings, emu):
            with anyio.fail_after(10):
                while emu.stats.tools_calls < 1:
                    await anyio.sleep(0.005)
            redis.stop()
            with anyio.fail_after(10):
                while "could not fetch the Generation API tool list" not in caplog.text:
                    await anyio.sleep(0.005)
            redis.start()
            seen = emu.stats.tools_calls
            with anyio.fail_after(10):
                while emu.stats.tools_calls == seen:
                    await anyio.sleep(0.005)
    finally:
        redis.stop()
