"""`callsheet serve` as a real subprocess over stdio, as Claude Desktop launches it."""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp_types import CallToolResult, ImageContent, ResourceLink, TextContent

from server.models import Job
from tests.conftest import png_bytes

pytestmark = pytest.mark.anyio

CALL_TIMEOUT = 30


def server_env(home: Path, inputs: Path) -> dict[str, str]:
    """The sandbox environment; no *_API_KEY (the SDK passes only a safe set of variables on)."""
    env = {
        "CALLSHEET_HOME": str(home),
        "CALLSHEET_INPUT_ROOTS": str(inputs),
        "CALLSHEET_SANDBOX": "1",
        "CALLSHEET_SANDBOX_TIME_SCALE": "0.005",
    }
    for name in ("PATH", "HOME"):
        if name in os.environ:
            env[name] = os.environ[name]
    return env


def text(result: CallToolResult) -> str:
    return " ".join(c.text for c in result.content if isinstance(c, TextContent))


def callsheet_script() -> str:
    script = Path(sys.executable).with_name("callsheet")
    found = shutil.which("callsheet", path=str(script.parent))
    assert found, f"console script not installed next to {sys.executable}"
    return found


@pytest.mark.parametrize(
    ("mode", "launcher"),
    [("auto", "module"), ("legacy", "module"), ("auto", "script")],
)
async def test_tryon_over_stdio(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, mode: str, launcher: str
) -> None:
    home, inputs = tmp_path / "home", tmp_path / "inputs"
    inputs.mkdir()
    model_photo, garment = inputs / "model.png", inputs / "dress.png"
    model_photo.write_bytes(png_bytes(color=(220, 180, 160)))
    garment.write_bytes(png_bytes(color=(10, 120, 200)))
    if launcher == "script":
        params = StdioServerParameters(
            command=callsheet_script(), args=["serve"], env=server_env(home, inputs)
        )
    else:
        params = StdioServerParameters(
            command=sys.executable, args=["-m", "server", "serve"], env=server_env(home, inputs)
        )

    # A line on stdout that is not JSON-RPC reaches the message handler as an exception, and the
    # transport logs it (also when it only arrives at shutdown); stderr goes to a file we read after.
    stream_errors: list[Exception] = []

    async def on_message(message: Any) -> None:
        if isinstance(message, Exception):
            stream_errors.append(message)

    errlog_path = tmp_path / "stderr.log"
    with errlog_path.open("w") as errlog, anyio.fail_after(CALL_TIMEOUT):
        # stdio_client stops the subprocess on exit (stdin closed, then terminate, then kill).
        async with Client(
            stdio_client(params, errlog=errlog), mode=mode, message_handler=on_message
        ) as client:
            tools = {t.name for t in (await client.list_tools()).tools}
            assert {"fashn_tryon_max", "job_status", "job_wait"} <= tools

            result = await client.call_tool(
                "fashn_tryon_max",
                {"model_image": str(model_photo), "product_image": str(garment), "wait_seconds": 20},
            )
            assert not result.is_error, text(result)
            assert result.structured_content is not None
            job = Job.model_validate(result.structured_content)
            assert job.status == "succeeded" and job.sandbox and job.operation == "tryon_max"
            images = [c for c in result.content if isinstance(c, ImageContent)]
            links = [c for c in result.content if isinstance(c, ResourceLink)]
            assert len(images) == 1 and len(links) == 1
            assert str(links[0].uri) == job.outputs[0].uri

            output = Path(job.outputs[0].path)
            assert output.is_file() and output.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
            assert output.resolve().is_relative_to((home / "media").resolve())

            resource = await client.read_resource(f"callsheet://jobs/{job.job_id}")
            body = json.loads(resource.contents[0].text)  # type: ignore[union-attr]
            assert body["job_id"] == job.job_id and body["status"] == "succeeded"

    assert stream_errors == [], "the server wrote non-protocol output to stdout"
    unparsed = [r.getMessage() for r in caplog.records if r.name.startswith("mcp.client")]
    assert not any("Failed to parse" in m for m in unparsed), unparsed
    stderr = errlog_path.read_text()
    assert "Traceback" not in stderr, stderr
