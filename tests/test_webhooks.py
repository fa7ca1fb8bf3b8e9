"""FASHN webhooks: with a public URL, `/run` carries `webhook_url` to a per-job secret path; the
webhook wakes the job's driver, which confirms the end with one `/status` call (FASHN does not sign its
webhooks). The FASHN sandbox, served from this process, calls back the way FASHN documents."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from mcp import Client

from server.app import create_app, http_app
from server.links import Links
from server.providers.fashn.emulator import FashnEmulator
from server.sandbox_server import sandbox_app
from tests.conftest import FAST_POLL, FAST_RETRY, make_settings
from tests.servers import free_port, mcp_client, serve_on_socket

pytestmark = pytest.mark.anyio

KEY = "a-long-random-signing-key-for-the-webhook-tests"


@dataclass
class Hosted:
    url: str
    fashn: FashnEmulator
    client: Client

    async def run(self, prompt: str) -> dict[str, Any]:
        made = await self.client.call_tool("fashn_model_create", {"prompt": prompt, "wait_seconds": 50})
        job = made.structured_content or {}
        assert job.get("status") == "succeeded", made.content
        return job


@asynccontextmanager
async def hosted(tmp_path: Path, safety: float = 1000.0, **faults: bool) -> AsyncIterator[Hosted]:
    """callsheet's HTTP app served in process (so the test sets its poll policy), on a FASHN sandbox
    served here too. `safety`: the safety-net poll's start, in typical durations; the default keeps it
    out of the way, so a status call can only be the one a webhook asked for."""
    app, emulators = sandbox_app(0.01)
    fashn = emulators["fashn"]
    assert isinstance(fashn, FashnEmulator)
    for name, value in faults.items():
        setattr(fashn.faults, name, value)
    async with serve_on_socket(app) as sandbox_port:
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        settings = make_settings(
            tmp_path / "home",
            tmp_path,
            CALLSHEET_PUBLIC_URL=url,
            CALLSHEET_SIGNING_KEY=KEY,
            CALLSHEET_SANDBOX_TIME_SCALE="0.01",
            CALLSHEET_SANDBOX_URL=f"http://127.0.0.1:{sandbox_port}",
        )
        server = create_app(settings, retry=FAST_RETRY, poll=replace(FAST_POLL, webhook_safety=safety))
        asgi = http_app(server, settings, host="127.0.0.1")
        async with (
            serve_on_socket(asgi, port=port, lifespan="on"),
            mcp_client(f"{url}/mcp") as client,
        ):
            yield Hosted(url, fashn, client)


def status_calls(h: Hosted, prompt: str) -> int:
    pid = next(pid for pid, p in h.fashn.stats.predictions.items() if p.inputs.get("prompt") == prompt)
    return h.fashn.stats.status_calls_by_id.get(pid, 0)


async def test_a_webhook_ends_the_job_with_one_status_call(tmp_path: Path) -> None:
    async with hosted(tmp_path) as h:
        for n in range(3):
            await h.run(f"editorial model {n}")
            assert status_calls(h, f"editorial model {n}") == 1  # the confirming call, no polling
        assert [code for _, code in h.fashn.stats.webhooks] == [200, 200, 200]


async def test_a_webhook_delivered_twice_ends_the_job_once(tmp_path: Path) -> None:
    async with hosted(tmp_path, webhooks_twice=True) as h:
        await h.run("twice")
        with anyio.fail_after(10):
            while len(h.fashn.stats.webhooks) < 2:
                await anyio.sleep(0.01)
        assert [code for _, code in h.fashn.stats.webhooks] == [200, 200]
        assert status_calls(h, "twice") == 1


async def test_a_webhook_that_never_comes_leaves_polling_to_end_the_job(tmp_path: Path) -> None:
    async with hosted(tmp_path, safety=5.0, webhooks_lost=True) as h:
        await h.run("lost")
        assert h.fashn.stats.webhooks == [] and status_calls(h, "lost") >= 1


async def test_a_forged_webhook_is_refused_and_changes_nothing(tmp_path: Path) -> None:
    async with hosted(tmp_path) as h, httpx.AsyncClient() as anyone:
        started = await h.client.call_tool("fashn_model_create", {"prompt": "forged", "wait_seconds": 0})
        job_id = (started.structured_content or {})["job_id"]
        real = Links(h.url, KEY).hook(job_id)
        assert real.startswith(f"{h.url}/hooks/{job_id}/")
        forged = [
            real[:-1] + ("A" if real[-1] != "A" else "B"),  # one character changed
            Links(h.url, "another key").hook(job_id),  # made with another key
            Links(h.url, KEY).hook("j-not-a-job"),  # a real token for a job that does not exist
            f"{h.url}/hooks/{job_id}",
        ]
        for url in forged:
            response = await anyone.post(url, json={"id": "x", "status": "completed"})
            assert response.status_code in (404, 405), url
        waited = await h.client.call_tool("job_wait", {"job_ids": [job_id], "wait_seconds": 50})
        assert (waited.structured_content or {})["jobs"][0]["status"] == "succeeded"
        assert status_calls(h, "forged") == 1
        again = await anyone.post(real, json={})  # a late or repeated webhook: the job has ended
        assert again.status_code == 200 and again.json() == {"status": "ended already"}
        assert status_calls(h, "forged") == 1
