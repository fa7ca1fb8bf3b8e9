"""Live mode against a real socket: any server that speaks the documented FASHN API gets the same calls.

The FASHN emulator runs under uvicorn on 127.0.0.1, `FASHN_BASE_URL` points at it and
`FASHN_API_KEY` is set, so the adapter is live (the shared httpx client, real HTTP), not sandbox.
"""

from __future__ import annotations

from pathlib import Path

import anyio
import anyio.to_thread
import pytest
from mcp import Client
from mcp_types import CallToolResult, ImageContent, ResourceLink, TextContent
from starlette.applications import Starlette
from starlette.routing import Mount

from server.app import create_app
from server.config import Settings
from server.models import Job
from server.policy import PollPolicy
from server.providers.fashn.emulator import FashnEmulator
from tests.conftest import FAST_RETRY, make_settings, png_bytes
from tests.servers import serve_on_socket

pytestmark = pytest.mark.anyio

KEY = "live-key-123"
EMULATOR_SCALE = 0.002
CALL_TIMEOUT = 30.0
LIVE_POLL = PollPolicy(floor=0.01, ceiling=0.05)
"""Live jobs are timed by FASHN's real durations (first poll at ~70% of 30 s); poll often instead."""


@pytest.fixture(params=["auto", "legacy"])
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def live_settings(tmp_path: Path, base_url: str, key: str = KEY) -> Settings:
    inputs = tmp_path / "inputs"
    inputs.mkdir(exist_ok=True)
    (inputs / "model.png").write_bytes(png_bytes(color=(220, 180, 160)))
    (inputs / "dress.png").write_bytes(png_bytes(color=(10, 120, 200)))
    return make_settings(tmp_path / "home", inputs, FASHN_API_KEY=key, FASHN_BASE_URL=base_url)


def tryon_args(settings: Settings, **extra: object) -> dict[str, object]:
    root = settings.input_roots[0]
    return {"model_image": str(root / "model.png"), "product_image": str(root / "dress.png"), **extra}


def live_client(settings: Settings, mode: str = "auto") -> Client:
    return Client(create_app(settings, poll=LIVE_POLL, retry=FAST_RETRY), mode=mode)


def text(result: CallToolResult) -> str:
    return " ".join(c.text for c in result.content if isinstance(c, TextContent))


def job_of(result: CallToolResult) -> Job:
    assert result.structured_content is not None, text(result)
    return Job.model_validate(result.structured_content)


async def test_tryon_runs_live_against_a_fashn_speaking_server(tmp_path: Path, mode: str) -> None:
    emulator = FashnEmulator(time_scale=EMULATOR_SCALE, api_key=KEY)
    async with serve_on_socket(emulator.app) as port:
        settings = live_settings(tmp_path, f"http://127.0.0.1:{port}/v1")
        assert settings.providers["fashn"].mode.value == "live"
        with anyio.fail_after(CALL_TIMEOUT):
            async with live_client(settings, mode) as client:
                result = await client.call_tool("fashn_tryon_max", tryon_args(settings, resolution="2k"))
                assert not result.is_error, text(result)
                job = job_of(result)
                resource = await client.read_resource(job.outputs[0].uri)

    assert job.status == "succeeded" and job.operation == "tryon_max"
    assert job.sandbox is False
    assert job.credits_used == 3
    output = job.outputs[0]
    assert output.source_url is not None
    assert output.source_url.startswith(f"http://127.0.0.1:{port}/cdn/")
    path = Path(output.path)
    assert path.is_file() and path.resolve().is_relative_to(settings.media_dir.resolve())
    assert (output.width, output.height) == (1365, 2048)
    assert resource.contents[0].mime_type == "image/png"
    assert any(isinstance(c, ImageContent) for c in result.content)
    assert any(isinstance(c, ResourceLink) for c in result.content)

    # The emulator requires the bearer key: the prediction exists only because /run carried it.
    stats = emulator.stats
    assert stats.run_calls == 1 and stats.status_calls >= 1 and stats.cdn_calls >= 1
    (prediction,) = stats.predictions.values()
    assert prediction.model_name == "tryon-max" and prediction.status == "completed"
    assert prediction.inputs["model_image"].startswith("data:image/png;base64,")
    assert emulator.faults.credits == 1000 - 3


async def test_wrong_key_fails_the_job_naming_the_variable(tmp_path: Path) -> None:
    emulator = FashnEmulator(time_scale=EMULATOR_SCALE, api_key=KEY)
    async with serve_on_socket(emulator.app) as port:
        settings = live_settings(tmp_path, f"http://127.0.0.1:{port}/v1", key="not-the-key")
        with anyio.fail_after(CALL_TIMEOUT):
            async with live_client(settings) as client:
                result = await client.call_tool("fashn_tryon_max", tryon_args(settings))
                credits = await client.call_tool("credits", {})

    job = job_of(result)
    assert result.is_error
    assert job.status == "failed" and job.error is not None
    assert job.error.code == "unauthorized"
    assert "FASHN_API_KEY" in job.error.message
    assert job.error.retryable is False
    assert job.credits_used in (None, 0)
    assert emulator.stats.run_calls == 1, "an auth failure is not retried"
    assert emulator.stats.predictions == {}
    assert "FASHN_API_KEY" in credits.model_dump_json()


async def test_base_url_path_prefix_is_kept(tmp_path: Path) -> None:
    emulator = FashnEmulator(time_scale=EMULATOR_SCALE, api_key=KEY)
    proxy = Starlette(routes=[Mount("/proxy", app=emulator.app)])
    async with serve_on_socket(proxy) as port:
        settings = live_settings(tmp_path, f"http://127.0.0.1:{port}/proxy/v1")
        with anyio.fail_after(CALL_TIMEOUT):
            async with live_client(settings) as client:
                result = await client.call_tool("fashn_tryon_max", tryon_args(settings))
                credits = await client.call_tool("credits", {})

    assert not result.is_error, text(result)
    job = job_of(result)
    assert job.status == "succeeded" and job.sandbox is False
    # Only /proxy/... exists on this server: a dropped prefix would have been a 404.
    assert job.outputs[0].source_url is not None
    assert job.outputs[0].source_url.startswith(f"http://127.0.0.1:{port}/proxy/cdn/")
    assert Path(job.outputs[0].path).is_file()
    assert emulator.stats.run_calls == 1 and emulator.stats.credits_calls == 1
    assert not credits.is_error, text(credits)
    assert credits.structured_content is not None
    (fashn,) = [b for b in credits.structured_content["balances"] if b["provider"] == "fashn"]
    assert fashn["sandbox"] is False and fashn["credits"] == 1000 - 2
