"""Servers the tests run for real: `callsheet serve --http` subprocesses and ASGI apps on a socket."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Literal

import anyio
import httpx
import uvicorn
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client
from starlette.types import ASGIApp

from tests.redis_server import free_port

__all__ = ["free_port", "serve_on_socket", "server_env", "serving", "wait_healthy"]

STARTUP_TIMEOUT = 20.0


def server_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """The sandbox environment, with nothing else inherited (no *_API_KEY, no CALLSHEET_HTTP_TOKEN)."""
    inputs = tmp_path / "inputs"
    inputs.mkdir(exist_ok=True)
    env = {
        "CALLSHEET_HOME": str(tmp_path / "home"),
        "CALLSHEET_INPUT_ROOTS": str(inputs),
        "CALLSHEET_SANDBOX": "1",
        "CALLSHEET_SANDBOX_TIME_SCALE": "0.005",
        **extra,
    }
    for name in ("PATH", "HOME"):
        if name in os.environ:
            env[name] = os.environ[name]
    return env


@contextmanager
def serving(
    tmp_path: Path, *args: str, env: dict[str, str], log_name: str = "server.log"
) -> Iterator[subprocess.Popen[bytes]]:
    """`python -m server serve --http ...`, stopped (terminate, then kill) however the test ends."""
    log_path = tmp_path / log_name
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "server", "serve", "--http", *args],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            yield proc
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
    assert "Traceback" not in log_path.read_text(errors="replace")


async def wait_healthy(proc: subprocess.Popen[bytes], port: int) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT
    async with httpx.AsyncClient(timeout=2.0) as http:
        while True:
            assert proc.poll() is None, f"server exited with {proc.returncode} before answering /health"
            try:
                response = await http.get(f"http://127.0.0.1:{port}/health")
            except httpx.TransportError:
                response = None
            if response is not None:
                assert response.status_code == 200
                assert response.json() == {"status": "ok"}
                return
            assert time.monotonic() < deadline, f"no /health answer on port {port} within {STARTUP_TIMEOUT}s"
            await anyio.sleep(0.05)


@asynccontextmanager
async def serve_on_socket(
    app: ASGIApp, *, port: int = 0, lifespan: Literal["on", "off"] = "off"
) -> AsyncIterator[int]:
    """Serve `app` with uvicorn on 127.0.0.1 in a thread of its own; yield the port it bound. An app
    with a lifespan of its own (callsheet's `http_app`) is served with `lifespan="on"`."""
    server = uvicorn.Server(
        uvicorn.Config(
            app, host="127.0.0.1", port=port, lifespan=lifespan, log_config=None, log_level="warning"
        )
    )
    thread = threading.Thread(target=server.run, name="uvicorn-emulator", daemon=True)
    thread.start()
    try:
        with anyio.fail_after(10):
            while not server.started:
                assert thread.is_alive(), "uvicorn stopped before it started"
                await anyio.sleep(0.01)
        yield int(server.servers[0].sockets[0].getsockname()[1])
    finally:
        server.should_exit = True
        await anyio.to_thread.run_sync(thread.join, 10.0)
        assert not thread.is_alive(), "uvicorn did not stop"


class HeldClock:
    """The emulator's clock, which the test can hold still: while held, no prediction ends."""

    def __init__(self) -> None:
        self.behind = 0.0
        self.held_at: float | None = None

    def __call__(self) -> float:
        return self.held_at if self.held_at is not None else time.monotonic() - self.behind

    def hold(self) -> None:
        self.held_at = self()

    def release(self) -> None:
        assert self.held_at is not None
        self.behind = time.monotonic() - self.held_at
        self.held_at = None


@asynccontextmanager
async def mcp_client(url: str, token: str | None = None) -> AsyncIterator[Client]:
    """An MCP client of `serve --http` at `url` (the /mcp endpoint), with a bearer token if given."""
    headers = {"Authorization": f"Bearer {token}"} if token else None
    async with (
        create_mcp_http_client(headers=headers) as http,
        Client(streamable_http_client(url, http_client=http)) as client,
    ):
        yield client
