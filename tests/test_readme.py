"""The README's "Several replicas" example, run exactly as written: Redis, the shared sandbox, three
replicas and nginx, then MCP clients of both protocol eras through nginx, then the README's stop line."""

from __future__ import annotations

import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import anyio
import anyio.to_thread
import httpx
import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp_types import CallToolResult, TextContent

from server.models import Job

pytestmark = pytest.mark.anyio

README = Path(__file__).resolve().parent.parent / "README.md"
STARTUP_SECONDS = 60.0


def example() -> str:
    text = README.read_text()
    found = re.search(r"<!-- replicas-example -->\n```bash\n(.*?)\n```", text, re.S)
    assert found, "the README lost its replicas example"
    return found.group(1)


def free_ports(count: int) -> int:
    """A base port with `count` free ports from it on."""
    for _ in range(200):
        base = random.randrange(20000, 60000 - count)
        try:
            for port in range(base, base + count):
                with socket.socket() as sock:
                    sock.bind(("127.0.0.1", port))
        except OSError:
            continue
        return base
    raise RuntimeError("no run of free ports")


def text(result: CallToolResult) -> str:
    return " ".join(c.text for c in result.content if isinstance(c, TextContent))


def stop(folder: Path) -> None:
    """The README's stop line: kill $(cat DIR/*.pid)."""
    subprocess.run(["bash", "-c", f'kill $(cat "{folder}"/*.pid) 2>/dev/null'], check=False)


@pytest.mark.skipif(
    not (shutil.which("nginx") and shutil.which("redis-server")), reason="needs nginx and redis"
)
async def test_the_readme_runs_three_replicas_behind_nginx(tmp_path: Path) -> None:
    folder, port = tmp_path / "replicas", free_ports(10)
    env = {
        **os.environ,
        "DIR": str(folder),
        "PORT": str(port),
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    for name in [v for v in env if v.endswith("_API_KEY") or v.startswith("CALLSHEET_")]:
        del env[name]
    with (tmp_path / "example.log").open("wb") as log:
        script = ["bash", "-euo", "pipefail", "-c", example()]
        done = await anyio.to_thread.run_sync(
            lambda: subprocess.run(script, env=env, stdout=log, stderr=log, check=False)
        )
    pids: list[int] = []
    try:
        assert done.returncode == 0, (tmp_path / "example.log").read_text()
        base = f"http://127.0.0.1:{port}"
        async with httpx.AsyncClient(timeout=2.0) as http:
            deadline = time.monotonic() + STARTUP_SECONDS
            healthy: set[int] = set()
            while len(healthy) < 3:  # every replica, through the balancer's round robin
                assert time.monotonic() < deadline, "the replicas did not all answer /health"
                for n in (1, 2, 3):
                    try:
                        if (await http.get(f"http://127.0.0.1:{port + n}/health")).status_code == 200:
                            healthy.add(n)
                    except httpx.TransportError:
                        pass
                await anyio.sleep(0.1)
            assert (await http.get(f"{base}/health")).json() == {"status": "ok"}
        headers = {"Authorization": "Bearer change-me"}
        with anyio.fail_after(120):
            for mode in ("auto", "legacy"):
                async with (
                    httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(30.0, read=300.0)) as http2,
                    Client(streamable_http_client(f"{base}/mcp", http_client=http2), mode=mode) as client,
                ):
                    made = await client.call_tool(
                        "fashn_model_create", {"prompt": "a model", "wait_seconds": 30}
                    )
                    job = Job.model_validate(made.structured_content)
                    assert job.status == "succeeded" and job.sandbox, text(made)
                    for _ in range(3):  # three requests: three replicas, one job
                        seen = await client.call_tool("job_status", {"job_id": job.job_id})
                        assert Job.model_validate(seen.structured_content).status == "succeeded", text(seen)
        pids = [int(p.read_text()) for p in folder.glob("*.pid")]
        assert len(pids) == 6, [p.name for p in folder.glob("*.pid")]  # redis, sandbox, 3 replicas, nginx
    finally:
        stop(folder)
    deadline = time.monotonic() + 30
    for pid in pids:
        while _alive(pid):
            if time.monotonic() > deadline:
                os.kill(pid, signal.SIGKILL)
                raise AssertionError(f"process {pid} outlived the README's stop line")
            await anyio.sleep(0.05)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a child of this test that exited but was not reaped yet is not alive
        waited, _ = os.waitpid(pid, os.WNOHANG)
        return waited == 0
    except ChildProcessError:
        return True
