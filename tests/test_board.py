"""The shoot board and the job view in a real browser, through the official MCP Apps host bridge.

A real `callsheet serve --http` (sandbox) answers a host page in Debian's Chromium (driven by
Playwright): the page is tests/board/host.js, the MCP client of the TypeScript SDK and the host bridge
of @modelcontextprotocol/ext-apps, bundled by esbuild. The view runs in a sandboxed iframe under the
strictest CSP a host applies. The FASHN sandbox is served from this process, so the test can hold its
clock: while it is held no prediction ends, which is how a shoot is caught running, never by timing.

Screenshots of the board (wide and narrow, light and dark) are written to the test's folder and their
paths printed (pytest -s shows them).
"""

from __future__ import annotations

import io
import json
import shutil
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import pytest
from PIL import Image
from playwright.async_api import Browser, Frame, Page, async_playwright

from server.providers.fashn.emulator import FashnEmulator
from server.sandbox_server import sandbox_app
from tests.servers import HeldClock, free_port, serve_on_socket, server_env, serving, wait_healthy

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.skipif(shutil.which("chromium") is None, reason="Debian's chromium is not installed"),
    pytest.mark.skipif(shutil.which("node") is None, reason="the test host is built with Node.js"),
]

HOST = Path(__file__).with_name("board")
CHROMIUM = shutil.which("chromium") or "chromium"
STEP_TIMEOUT = 60_000
"""Milliseconds Playwright waits for the page to reach a state (the shoot itself decides when)."""
SIZES = {"wide": (1000, 760), "narrow": (360, 760)}


def host_page() -> str:
    """The host page: tests/board/host.js with its packages, bundled for the browser by esbuild."""
    if not (HOST / "node_modules").exists():
        subprocess.run(["npm", "ci", "--silent", "--no-audit", "--no-fund"], cwd=HOST, check=True)
    bundle = subprocess.run(
        [str(HOST / "node_modules/.bin/esbuild"), "host.js", "--bundle", "--format=esm", "--log-level=error"],
        cwd=HOST,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return (
        '<!doctype html><html><head><meta charset="utf-8"><title>host</title></head>'
        '<body style="margin: 0"><div id="views"></div>'
        f'<script type="module">{bundle}</script></body></html>'
    )


@dataclass
class Board:
    page: Page
    fashn: FashnEmulator
    clock: HeldClock
    inputs: Path
    shots: Path

    @property
    def view(self) -> Frame:
        frame = self.page.frames[-1]
        assert frame is not self.page.main_frame, "the view is not loaded"
        return frame

    async def open(self, tool: str, args: dict[str, Any], theme: str = "light") -> Any:
        return await self.page.evaluate("([t, a, th]) => window.host.open(t, a, th)", [tool, args, theme])

    async def call(self, tool: str, args: dict[str, Any]) -> Any:
        return await self.page.evaluate("([t, a]) => window.host.call(t, a)", [tool, args])

    async def host_state(self) -> dict[str, Any]:
        state: dict[str, Any] = await self.page.evaluate(
            "() => JSON.parse(JSON.stringify({calls: host.state.calls, messages: host.state.messages,"
            " errors: host.state.errors}))"
        )
        return state

    async def screenshot(self, name: str) -> Path:
        path = self.shots / f"board-{name}.png"
        await self.page.screenshot(path=str(path), full_page=True)
        print(f"screenshot: {path}")
        return path


@asynccontextmanager
async def board(tmp_path: Path) -> AsyncIterator[Board]:
    page_html = await anyio.to_thread.run_sync(host_page)
    app, emulators = sandbox_app(0.02)
    fashn = emulators["fashn"]
    assert isinstance(fashn, FashnEmulator)
    clock = HeldClock()
    fashn.clock = clock
    async with serve_on_socket(app) as sandbox_port:
        env = server_env(
            tmp_path,
            CALLSHEET_SANDBOX_TIME_SCALE="0.02",
            CALLSHEET_SANDBOX_URL=f"http://127.0.0.1:{sandbox_port}",
        )
        port = free_port()
        with serving(tmp_path, "--port", str(port), env=env) as proc:
            await wait_healthy(proc, port)
            async with async_playwright() as playwright:
                browser: Browser = await playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
                try:
                    page = await browser.new_page(viewport={"width": 1000, "height": 760})
                    origin = f"http://127.0.0.1:{port}"
                    await page.route(
                        f"{origin}/board-host",
                        lambda route: route.fulfill(status=200, content_type="text/html", body=page_html),
                    )
                    await page.goto(f"{origin}/board-host")
                    await page.wait_for_function("() => window.host !== undefined")
                    shots = tmp_path / "screenshots"
                    shots.mkdir()
                    yield Board(page, fashn, clock, tmp_path / "inputs", shots)
                finally:
                    await browser.close()


def garment(folder: Path, n: int) -> str:
    path = folder / f"garment-{n}.png"
    buffer = io.BytesIO()
    Image.new("RGB", (48, 64), (40 + n * 90, 120, 200)).save(buffer, "PNG")
    path.write_bytes(buffer.getvalue())
    return str(path)


def plan(inputs: Path, name: str, *, failing_step: bool) -> dict[str, Any]:
    steps: list[dict[str, Any]] = [
        {"id": "cast", "tool": "fashn_model_create", "args": {"prompt": "editorial model, studio"}},
        {
            "id": "tryon",
            "tool": "fashn_tryon_max",
            "for_each": [garment(inputs, 0), garment(inputs, 1)],
            "args": {"model_image": "@cast.outputs[0]", "product_image": "@item"},
        },
    ]
    if failing_step:  # the sandbox fails a prediction whose inputs carry this marker
        steps.append(
            {
                "id": "polish",
                "tool": "fashn_edit",
                "args": {"image": "@cast.outputs[0]", "prompt": "add sunglasses [sandbox:fail=PoseError]"},
            }
        )
    return {"name": name, "steps": steps}


async def test_a_shoot_is_watched_and_steered_in_the_board(tmp_path: Path) -> None:
    async with board(tmp_path) as b:
        b.clock.hold()  # nothing ends until the board has shown the shoot running
        started = await b.open("shoot_start", {"plan": plan(b.inputs, "Spring drop", failing_step=True)})
        shoot_id = started["shoot_id"]
        view = b.view
        await view.wait_for_selector("#steps li[data-step='cast']", timeout=STEP_TIMEOUT)
        assert await view.inner_text("#state") == "running"
        assert await view.inner_text("#steps li[data-step='cast'] .pill") in ("running", "waiting")
        assert await view.is_visible("#cancel")
        b.clock.release()

        # Rows update as the shoot runs, to the end: the edit step fails, the others succeed.
        await view.wait_for_selector("#state.s-partial", timeout=STEP_TIMEOUT)
        statuses = {
            step: await view.inner_text(f"#steps li[data-step='{step}'] .pill")
            for step in ("cast", "tryon", "polish")
        }
        assert statuses == {"cast": "succeeded", "tryon": "succeeded", "polish": "failed"}
        assert "body pose" in await view.inner_text("#steps li[data-step='polish'] .note")  # FASHN's words

        # Every output is a thumbnail, read through the host (data: URLs: nothing from the network).
        await view.wait_for_function(
            "() => document.querySelectorAll('.tile img').length === 3", timeout=STEP_TIMEOUT
        )
        sources = await view.eval_on_selector_all(
            ".tile img", "imgs => imgs.map(i => [i.src, i.naturalWidth])"
        )
        assert all(src.startswith("data:image/jpeg;base64,") and width > 0 for src, width in sources)

        # A click opens the full image; Escape closes it and gives the focus back.
        await view.click(".tile >> nth=0")
        await view.wait_for_selector("#viewer[open] #viewer-body img", timeout=STEP_TIMEOUT)
        full = await view.eval_on_selector("#viewer-body img", "i => [i.src.slice(0, 22), i.naturalWidth]")
        assert full[0] == "data:image/png;base64," and full[1] > 0
        await b.screenshot("wide-light-viewer")
        await view.press("#viewer", "Escape")
        await view.wait_for_function("() => !document.getElementById('viewer').open")
        assert await view.evaluate("document.activeElement.classList.contains('tile')")

        for size, (width, height) in SIZES.items():
            await b.page.set_viewport_size({"width": width, "height": height})
            await b.screenshot(f"{size}-light")
        await b.page.evaluate("() => window.host.setTheme('dark')")
        await view.wait_for_selector("html[data-theme='dark']")
        for size, (width, height) in SIZES.items():
            await b.page.set_viewport_size({"width": width, "height": height})
            await b.screenshot(f"{size}-dark")
        narrow_overflow = await view.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
        assert narrow_overflow, "the narrow board scrolls sideways"

        # Repeat the failed step: the call reaches the server, which runs the step again (a new job).
        before = await b.call("shoot_status", {"shoot_id": shoot_id})
        old_job = next(s for s in before["steps"] if s["id"] == "polish")["jobs"][0]["job_id"]
        await view.click("#steps li[data-step='polish'] button[data-action='Repeat']")
        with anyio.fail_after(STEP_TIMEOUT / 1000):
            while True:  # until the server has run the step again and ended the shoot
                after = await b.call("shoot_status", {"shoot_id": shoot_id})
                polish = next(s for s in after["steps"] if s["id"] == "polish")
                if after["status"] != "running" and polish["jobs"] and polish["jobs"][0]["job_id"] != old_job:
                    break
                await anyio.sleep(0.05)
        assert after["status"] == "partial" and polish["status"] == "failed"
        await view.wait_for_selector("#state.s-partial", timeout=STEP_TIMEOUT)
        state = await b.host_state()
        assert {
            "name": "shoot_repeat_step",
            "arguments": {"shoot_id": shoot_id, "step_id": "polish", "force": False},
        } in state["calls"]

        # Picked outputs go to the conversation, for the next step.
        await view.check(".pick >> nth=1")
        await view.click("#carry")
        await view.wait_for_function(
            "() => document.getElementById('status').textContent.startsWith('Sent 1')"
        )
        state = await b.host_state()
        assert len(state["messages"]) == 1 and "callsheet://jobs/" in json.dumps(state["messages"][0])
        assert state["errors"] == []


async def test_a_running_shoot_is_canceled_from_the_board(tmp_path: Path) -> None:
    async with board(tmp_path) as b:
        b.clock.hold()  # held for the whole test: the shoot is running when Cancel is pressed
        started = await b.open(
            "shoot_start", {"plan": plan(b.inputs, "Canceled", failing_step=False)}, "dark"
        )
        view = b.view
        await view.wait_for_selector("#cancel:visible", timeout=STEP_TIMEOUT)
        await view.click("#cancel")
        await view.wait_for_selector("#state.s-canceled", timeout=STEP_TIMEOUT)
        shoot = await b.call("shoot_status", {"shoot_id": started["shoot_id"]})
        assert shoot["status"] == "canceled"
        assert {"name": "shoot_cancel", "arguments": {"shoot_id": started["shoot_id"]}} in (
            await b.host_state()
        )["calls"]
        b.clock.release()


async def test_a_generation_tool_shows_its_job_and_the_full_image(tmp_path: Path) -> None:
    async with board(tmp_path) as b:
        job = await b.open("fashn_model_create", {"prompt": "editorial model", "wait_seconds": 0})
        view = b.view
        assert job["next_step"]["tool"] == "job_wait"
        await view.wait_for_selector("#state.s-succeeded", timeout=STEP_TIMEOUT)
        assert await view.inner_text("#title") == "fashn model_create"
        await view.wait_for_selector(".tile img", timeout=STEP_TIMEOUT)
        await view.click(".tile")
        await view.wait_for_selector("#viewer[open] #viewer-body img", timeout=STEP_TIMEOUT)
        calls = (await b.host_state())["calls"]
        assert calls and all(c["name"] == "job_status" for c in calls)
