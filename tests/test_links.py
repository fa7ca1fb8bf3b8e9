"""Signed links: what they open (outputs, shoot folders, inputs handed to URL-only providers), and
everything they refuse (tampered, expired, another file, anything outside)."""

from __future__ import annotations

import hashlib
import io
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import anyio
import httpx
import pytest
from mcp import Client
from PIL import Image

from server.links import Links
from server.providers.autotoon.emulator import AutoToonEmulator
from server.sandbox_server import sandbox_app
from tests.servers import free_port, mcp_client, serve_on_socket, server_env, serving, wait_healthy

pytestmark = pytest.mark.anyio

KEY = "a-long-random-signing-key-for-the-link-tests"
TOKEN = "link-test-token"


def test_a_link_opens_what_it_names_until_it_expires_and_nothing_else() -> None:
    now = [1_800_000_000.0]
    links = Links("https://cs.example/", KEY, clock=lambda: now[0])
    url = links.sign("jobs/j1/outputs/0", ttl=600)
    parts = urlsplit(url)
    assert url.startswith("https://cs.example/files/jobs/j1/outputs/0?")
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    path = parts.path.removeprefix("/files/")
    assert links.problem(path, query["exp"], query["sig"]) is None
    assert links.sign("jobs/j1/outputs/0", ttl=600) == url  # stable within its period
    assert "changed" in (links.problem("jobs/j2/outputs/0", query["exp"], query["sig"]) or "")
    assert "changed" in (links.problem(path, str(int(query["exp"]) + 300), query["sig"]) or "")
    assert "changed" in (links.problem(path, query["exp"], query["sig"][:-1] + "A") or "")
    other = Links("https://cs.example", "another key", clock=lambda: now[0])
    assert "changed" in (other.problem(path, query["exp"], query["sig"]) or "")
    now[0] += 1200
    assert "expired" in (links.problem(path, query["exp"], query["sig"]) or "")
    for outside in (
        "jobs/j1/outputs/0/../../../etc/passwd",
        "jobs/../shoots/s1/",
        "shoots/s1/../../etc",
        "shoots/s1/sub/file.png",
        "inputs/abc.png",
        "store/catalog.sqlite",
        "",
    ):
        assert links.problem(outside, query["exp"], query["sig"]) == "This is not a callsheet link.", outside
        with pytest.raises(AssertionError):
            links.sign(outside)


def png(color: tuple[int, int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (40, 56), color).save(buffer, "PNG")
    return buffer.getvalue()


@asynccontextmanager
async def hosted(tmp_path: Path) -> AsyncIterator[tuple[str, AutoToonEmulator, Client]]:
    """`serve --http` with signed links on, its sandbox served from here (so the test sees what the
    Auto Toon emulator was sent), and an MCP client with a token."""
    app, emulators = sandbox_app(0.002)
    autotoon = emulators["autotoon"]
    assert isinstance(autotoon, AutoToonEmulator)
    async with serve_on_socket(app) as sandbox_port:
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        env = server_env(
            tmp_path,
            CALLSHEET_PUBLIC_URL=url,
            CALLSHEET_SIGNING_KEY=KEY,
            CALLSHEET_HTTP_TOKEN=TOKEN,
            CALLSHEET_SANDBOX_TIME_SCALE="0.002",
            CALLSHEET_SANDBOX_URL=f"http://127.0.0.1:{sandbox_port}",
        )
        with serving(tmp_path, "--port", str(port), env=env) as proc:
            await wait_healthy(proc, port)
            async with mcp_client(f"{url}/mcp", TOKEN) as client:
                yield url, autotoon, client


async def test_outputs_shoot_folders_and_inputs_are_opened_by_their_links_alone(tmp_path: Path) -> None:
    look = png((200, 40, 90))
    (tmp_path / "inputs").mkdir()
    local = tmp_path / "inputs" / "look.png"
    local.write_bytes(look)
    async with hosted(tmp_path) as (url, autotoon, client), httpx.AsyncClient() as anyone:
        made = await client.call_tool("fashn_model_create", {"prompt": "editorial model", "wait_seconds": 30})
        job: dict[str, Any] = made.structured_content or {}
        output = job["outputs"][0]
        link = output["download_url"]
        assert link.startswith(f"{url}/files/jobs/{job['job_id']}/outputs/0?exp=")
        opened = await anyone.get(link)  # no token
        assert opened.status_code == 200 and opened.content == Path(output["path"]).read_bytes()
        assert opened.headers["content-type"] == output["mime_type"]

        tampered = await anyone.get(link.replace("outputs/0", "outputs/1"))
        assert tampered.status_code == 403 and "changed" in tampered.json()["error_description"]
        elsewhere = await anyone.get(link.replace("/files/jobs/", "/files/../store/"))
        assert elsewhere.status_code in (401, 403, 404)  # never the file: 401 once the path is normalized
        past = Links(url, KEY, clock=lambda: 1_000_000.0).sign(f"jobs/{job['job_id']}/outputs/0", ttl=60)
        expired = await anyone.get(past)
        assert expired.status_code == 410 and "expired" in expired.json()["error_description"]
        assert (await anyone.get(f"{url}/mcp")).status_code == 401  # the rest still needs a token

        # A URL-only provider takes a local file: it is handed a short-lived link to the file's bytes.
        upscaled = await client.call_tool(
            "autotoon_upscale", {"image_url": str(local), "scale": 2, "wait_seconds": 30}
        )
        assert not upscaled.is_error, upscaled.content
        sent = next(body for name, body in autotoon.stats.requests if name == "upscale")
        handed = sent["imageUrl"]
        assert handed.startswith(f"{url}/files/inputs/{hashlib.sha256(look).hexdigest()}.png?exp=")
        fetched = await anyone.get(handed)
        assert fetched.status_code == 200 and fetched.content == look

        # A shoot: its folder's listing and each file, by link; the caller mark is not among them.
        plan = {
            "name": "linked",
            "steps": [{"id": "cast", "tool": "fashn_model_create", "args": {"prompt": "m"}}],
        }
        started = await client.call_tool("shoot_start", {"plan": plan, "confirm": True})
        shoot_id = (started.structured_content or {})["shoot_id"]
        with anyio.fail_after(30):
            while True:
                shoot = (
                    await client.call_tool("shoot_status", {"shoot_id": shoot_id, "wait_seconds": 5})
                ).structured_content or {}
                if shoot["status"] != "running":
                    break
        listing = await anyone.get(shoot["folder_url"])
        assert (
            listing.status_code == 200
            and "contact-sheet.png" in listing.text
            and ".callsheet" not in listing.text
        )
        sheet = await anyone.get(shoot["contact_sheet"]["download_url"])
        assert sheet.status_code == 200 and sheet.headers["content-type"].startswith("text/html")
        assert "default-src 'none'" in sheet.headers["content-security-policy"]
        signer = Links(url, KEY)
        hidden = await anyone.get(signer.sign(f"shoots/{shoot_id}/.callsheet-caller"))
        assert hidden.status_code == 404
        unknown = await anyone.get(signer.sign("shoots/s-nope/"))
        assert unknown.status_code == 404
