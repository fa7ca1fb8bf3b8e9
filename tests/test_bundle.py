"""The MCP bundle (`python -m bundle`) installed and started as a host does it: unpacked by the official
MCPB tool, started with the command, arguments and environment that the MCPB library works out from
its manifest and a user's settings form, with no network at all, on a Python that has none of
callsheet's dependencies but those in the bundle."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest
from mcp import Client
from mcp.client.stdio import StdioServerParameters, stdio_client

from bundle.build import HERE, MCPB, build, mcpb
from server.models import Job
from tests.conftest import png_bytes
from tests.test_stdio import text

pytestmark = pytest.mark.anyio

needs_node = pytest.mark.skipif(shutil.which("node") is None, reason="the MCPB tool needs Node.js")


@pytest.fixture(scope="module")
def unpacked(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The bundle .ci/run built (CALLSHEET_BUNDLE), or one built now, unpacked by the MCPB tool."""
    folder = tmp_path_factory.mktemp("bundle")
    built = os.environ.get("CALLSHEET_BUNDLE")
    bundle = Path(built) if built else build(folder / "dist")
    mcpb("unpack", str(bundle), str(folder / "callsheet"))
    yield folder / "callsheet"


def host_config(unpacked: Path, settings: dict[str, object]) -> dict[str, object]:
    """What a host runs for these settings (bundle/host.mjs: the MCPB library's own code)."""
    assert MCPB.exists()
    answer = subprocess.run(
        ["node", str(HERE / "host.mjs"), str(unpacked), json.dumps(settings)],
        cwd=HERE,
        capture_output=True,
        text=True,
        check=True,
    )
    return dict(json.loads(answer.stdout))


def offline(command: str, args: list[str]) -> tuple[str, list[str]]:
    """The command in a network namespace of its own (loopback down, nothing else), where it can be."""
    unshare = shutil.which("unshare")
    if unshare and subprocess.run([unshare, "-rn", "true"], capture_output=True).returncode == 0:
        return unshare, ["-rn", command, *args]
    return command, args


@needs_node
def test_the_manifest_lists_every_tool_and_prompt_and_a_form_for_keys_and_folders(unpacked: Path) -> None:
    manifest = json.loads((unpacked / "manifest.json").read_text())
    tools = {tool["name"] for tool in manifest["tools"]}
    assert {
        "fashn_tryon_max",
        "autotoon_relight",
        "neofashion_image",
        "genapi_generate",
        "shoot_start",
    } <= tools
    assert {"job_wait", "jobs_list", "providers", "credits"} <= tools
    assert {prompt["name"] for prompt in manifest["prompts"]} >= {"lookbook", "ecommerce_pdp"}
    form = manifest["user_config"]
    keys = [name for name in form if name.endswith("_api_key")]
    assert len(keys) == 4 and all(form[name]["sensitive"] for name in keys)
    assert form["input_folders"]["type"] == "directory" and form["input_folders"]["multiple"]
    assert form["data_folder"]["type"] == "directory"
    assert (unpacked / manifest["icon"]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (unpacked / manifest["server"]["entry_point"]).is_file()


@needs_node
async def test_the_bundle_runs_offline_as_a_host_starts_it(unpacked: Path, tmp_path: Path) -> None:
    inputs, other, data = tmp_path / "inputs", tmp_path / "other", tmp_path / "data"
    for folder in (inputs, other):
        folder.mkdir()
    (inputs / "model.png").write_bytes(png_bytes(color=(220, 180, 160)))
    (other / "dress.png").write_bytes(png_bytes(color=(10, 120, 200)))
    config = host_config(
        unpacked,
        {"input_folders": [str(inputs), str(other)], "data_folder": str(data), "fashn_api_key": ""},
    )
    # The host's own Python 3.11, without the project's virtual environment: only the bundle's lib/.
    python = tmp_path / "bin" / "python3"
    python.parent.mkdir()
    python.symlink_to(getattr(sys, "_base_executable", sys.executable))
    env = {**dict(config["env"]), "PATH": f"{python.parent}{os.pathsep}/usr/bin:/bin", "HOME": str(tmp_path)}  # type: ignore[call-overload]
    command, args = offline(str(config["command"]), list(config["args"]))  # type: ignore[call-overload]

    errlog_path = tmp_path / "stderr.log"
    with errlog_path.open("w") as errlog, anyio.fail_after(60):
        params = StdioServerParameters(command=command, args=args, env=env)
        async with Client(stdio_client(params, errlog=errlog)) as client:
            listed = {tool.name for tool in (await client.list_tools()).tools}
            manifest = json.loads((unpacked / "manifest.json").read_text())
            assert listed == {tool["name"] for tool in manifest["tools"]}

            result = await client.call_tool(
                "fashn_tryon_max",
                {
                    "model_image": str(inputs / "model.png"),
                    "product_image": str(other / "dress.png"),  # from the second input folder
                    "wait_seconds": 30,
                },
            )
            assert not result.is_error, text(result) + errlog_path.read_text()
            job = Job.model_validate(result.structured_content)
            assert job.status == "succeeded" and job.sandbox
            assert Path(job.outputs[0].path).resolve().is_relative_to(data.resolve())
    log = errlog_path.read_text()
    assert "Traceback" not in log, log
