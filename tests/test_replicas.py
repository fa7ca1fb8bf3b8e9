"""Several replicas on one Redis: real `callsheet serve --http` processes, a real redis-server, one
FASHN sandbox served once on a socket (one emulated account), and MCP clients whose every HTTP request
goes to the next replica, as a round-robin balancer that does not stick would send them.

What is checked is what the code decides and the emulator counts (429s sent, predictions in flight,
/run calls), never how long anything took.
"""

from __future__ import annotations

import io
import re
from collections.abc import AsyncIterator, Iterator
from contextlib import ExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp_types import CallToolResult, TextContent
from PIL import Image

from server.engine import Engine
from server.limiter import Limiter
from server.media import Media
from server.models import Job, JobStatus
from server.providers.fashn.emulator import FashnEmulator
from server.sandbox_server import sandbox_app
from server.store import open_backend
from tests.conftest import FAST_RETRY
from tests.redis_server import RedisServer
from tests.servers import HeldClock, free_port, serve_on_socket, server_env, serving, wait_healthy
from tests.test_engine_core import ACCEPTED, DONE, EAGER, Scripted

pytestmark = pytest.mark.anyio

CALL_TIMEOUT = 120.0


class RoundRobin(httpx2.AsyncBaseTransport):
    """A balancer that does not stick: each request goes to the next replica."""

    def __init__(self, ports: list[int]) -> None:
        self.ports = ports
        self.sent = 0
        self.inner = httpx2.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        port = self.ports[self.sent % len(self.ports)]
        self.sent += 1
        request.url = request.url.copy_with(port=port)
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


@dataclass
class Deployment:
    fashn: FashnEmulator
    replicas: list[Any]
    ports: list[int]
    inputs: Path
    home: Path

    @asynccontextmanager
    async def client(self, mode: str = "auto", ports: list[int] | None = None) -> AsyncIterator[Client]:
        """An MCP client behind a round-robin balancer over `ports` (every replica by default)."""
        http_client = httpx2.AsyncClient(
            transport=RoundRobin(ports or self.ports), timeout=httpx2.Timeout(30.0, read=300.0)
        )
        async with (
            http_client,
            Client(
                streamable_http_client(f"http://127.0.0.1:{self.ports[0]}/mcp", http_client=http_client),
                mode=mode,
            ) as client,
        ):
            yield client


@asynccontextmanager
async def deployment(
    tmp_path: Path, store_url: str, *, replicas: int = 3, scale: str = "0.01", lease: str = "30"
) -> AsyncIterator[Deployment]:
    """`replicas` servers on one store and one shared data folder, against one FASHN sandbox."""
    app, emulators = sandbox_app(float(scale))
    async with serve_on_socket(app) as sandbox_port:
        env = server_env(
            tmp_path,
            CALLSHEET_SANDBOX_TIME_SCALE=scale,
            CALLSHEET_SANDBOX_URL=f"http://127.0.0.1:{sandbox_port}",
            CALLSHEET_STORE=store_url,
            CALLSHEET_LEASE_SECONDS=lease,
        )
        ports = [free_port() for _ in range(replicas)]
        with ExitStack() as stack:
            procs = [
                stack.enter_context(
                    serving(tmp_path, "--port", str(port), env=env, log_name=f"replica-{n}.log")
                )
                for n, port in enumerate(ports)
            ]
            for proc, port in zip(procs, ports, strict=True):
                await wait_healthy(proc, port)
            fashn = emulators["fashn"]
            assert isinstance(fashn, FashnEmulator)
            yield Deployment(fashn, procs, ports, tmp_path / "inputs", tmp_path / "home")


def garments(folder: Path, n: int) -> Iterator[Path]:
    for i in range(n):
        path = folder / f"garment-{i}.png"
        buffer = io.BytesIO()
        Image.new("RGB", (48, 64), (i * 7 % 256, 120, 200 - i)).save(buffer, "PNG")
        path.write_bytes(buffer.getvalue())
        yield path


def model_photo(folder: Path) -> Path:
    path = folder / "model.png"
    buffer = io.BytesIO()
    Image.new("RGB", (48, 64), (220, 180, 160)).save(buffer, "PNG")
    path.write_bytes(buffer.getvalue())
    return path


def text(result: CallToolResult) -> str:
    return " ".join(c.text for c in result.content if isinstance(c, TextContent))


def job_of(result: CallToolResult) -> Job:
    assert not result.is_error and result.structured_content is not None, text(result)
    return Job.model_validate(result.structured_content)


async def submit_all(client: Client, calls: list[dict[str, Any]]) -> list[Job]:
    """Every call at once, `wait_seconds: 0`: the jobs as they were accepted."""
    jobs: dict[int, Job] = {}

    async def one(n: int) -> None:
        jobs[n] = job_of(await client.call_tool("fashn_tryon_max", {**calls[n], "wait_seconds": 0}))

    async with anyio.create_task_group() as tg:
        for n in range(len(calls)):
            tg.start_soon(one, n)
    return [jobs[n] for n in range(len(calls))]


async def wait_all(client: Client, job_ids: list[str]) -> list[Job]:
    """job_wait until every job has ended (each call waits up to 50 s)."""
    while True:
        result = await client.call_tool("job_wait", {"job_ids": job_ids, "wait_seconds": 50})
        assert not result.is_error, text(result)
        jobs = [Job.model_validate(j) for j in (result.structured_content or {})["jobs"]]
        if all(
            j.status in {s.value for s in (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELED)}
            for j in jobs
        ):
            return jobs


@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_three_replicas_keep_one_accounts_limits_and_share_every_job(
    tmp_path: Path, redis_url: str, mode: str
) -> None:
    async with deployment(tmp_path, redis_url) as dep:
        model = model_photo(dep.inputs)
        calls = [{"model_image": str(model), "product_image": str(g)} for g in garments(dep.inputs, 30)]
        with anyio.fail_after(CALL_TIMEOUT):
            async with dep.client(mode) as client:
                jobs = await submit_all(client, calls)
                # The same call again, now landing on other replicas: the same job, nothing sent again.
                again = await submit_all(client, calls[:3] * 2)
                assert [j.job_id for j in again] == [j.job_id for j in jobs[:3]] * 2
                assert len({j.job_id for j in jobs}) == 30
            # Waiting on replicas that did not necessarily submit: each job seen ending.
            async with dep.client(mode, ports=dep.ports[1:]) as other:
                done = await wait_all(other, [j.job_id for j in jobs])
        assert [j.status for j in done] == ["succeeded"] * 30, [j.error for j in done]
        assert all(Path(j.outputs[0].path).is_file() for j in done)
        stats = dep.fashn.stats
        assert stats.sent_429 == 0, "the replicas together provoked 429s"
        assert stats.max_in_flight <= 6, f"{stats.max_in_flight} predictions in flight at once"
        assert stats.run_calls == 30, "a job was sent twice"


async def test_a_replica_killed_mid_job_loses_nothing_and_pays_nothing_twice(
    tmp_path: Path, redis_url: str
) -> None:
    async with deployment(tmp_path, redis_url, scale="0.05", lease="2") as dep:
        model = model_photo(dep.inputs)
        calls = [{"model_image": str(model), "product_image": str(g)} for g in garments(dep.inputs, 6)]
        with anyio.fail_after(CALL_TIMEOUT):
            async with dep.client(ports=dep.ports[:1]) as first:  # every job driven by replica 0
                jobs = await submit_all(first, calls)
                while True:  # until every job is at the provider (none is being sent)
                    result = await first.call_tool(
                        "job_wait", {"job_ids": [j.job_id for j in jobs], "wait_seconds": 0}
                    )
                    states = [j["status"] for j in (result.structured_content or {})["jobs"]]
                    if all(s in ("submitted", "running", "succeeded") for s in states):
                        break
                    await anyio.sleep(0.02)
            running = [s for s in states if s != "succeeded"]
            dep.replicas[0].kill()  # kill -9, leases and slots held
            dep.replicas[0].wait()
            async with dep.client(ports=dep.ports[1:]) as others:
                done = await wait_all(others, [j.job_id for j in jobs])
        assert running, "the jobs ended before the replica was killed: nothing was adopted"
        assert [j.status for j in done] == ["succeeded"] * 6, [j.error for j in done]
        assert all(Path(j.outputs[0].path).is_file() for j in done)
        assert dep.fashn.stats.run_calls == 6, "a job was resubmitted"


async def test_redis_stopped_mid_batch_fails_calls_clearly_and_loses_nothing(tmp_path: Path) -> None:
    redis = RedisServer(tmp_path / "redis", durable=True).start()
    try:
        async with deployment(tmp_path, redis.url, scale="0.05", lease="2") as dep:
            model = model_photo(dep.inputs)
            calls = [{"model_image": str(model), "product_image": str(g)} for g in garments(dep.inputs, 12)]
            with anyio.fail_after(CALL_TIMEOUT):
                async with dep.client() as client:
                    jobs = await submit_all(client, calls)
                    redis.stop()
                    down = await client.call_tool("job_status", {"job_id": jobs[0].job_id})
                    assert down.is_error and "cannot be reached" in text(down) and "Redis" in text(down), (
                        text(down)
                    )
                    assert "Traceback" not in text(down)
                    while not met_the_outage(tmp_path):  # until running jobs have met it too
                        await anyio.sleep(0.05)
                    redis.start()
                    done = await wait_all(client, [j.job_id for j in jobs])
        assert [j.status for j in done] == ["succeeded"] * 12, [j.error for j in done]
        assert all(Path(j.outputs[0].path).is_file() for j in done)
        assert dep.fashn.stats.run_calls == 12, "a job was sent twice"
    finally:
        redis.stop()


def met_the_outage(folder: Path) -> bool:
    """A replica logged that a job it drives could not reach the store."""
    logs = [p.read_text(errors="replace") for p in folder.glob("replica-*.log")]
    return any(re.search(r"job \S+ (waits for the store|paused)", log) for log in logs)


async def test_a_wait_on_one_replica_is_woken_by_a_job_ending_on_another(
    settings: Any, redis_url: str
) -> None:
    """In process, two engines on one Redis: the waiting one re-reads only once an hour, so only the
    other's wake-up can end its wait."""
    provider = Scripted([ACCEPTED], [DONE])
    async with (
        open_backend(redis_url, settings.store_dir) as a,
        open_backend(redis_url, settings.store_dir) as b,
    ):
        provider._limiter = Limiter(provider.limits(), a.book("scripted"), a.signals, "limits:scripted")
        common: dict[str, Any] = {"providers": {"scripted": provider}, "retry": FAST_RETRY, "poll": EAGER}
        driving = Engine(store=a.jobs, media=Media(settings, a.jobs), signals=a.signals, **common)
        waiting = Engine(store=b.jobs, media=Media(settings, b.jobs), signals=b.signals, **common)
        waiting.reread_seconds = 3600.0
        async with driving.running(), waiting.running():
            job = await driving.submit("scripted", "make", {"what": "a thing"})
            with anyio.fail_after(60):
                result = await waiting.wait([job.job_id], wait_seconds=3600)
    assert result.jobs[0].status is JobStatus.SUCCEEDED and not result.pending


def shoot_plan(inputs: Path, n: int = 2) -> dict[str, Any]:
    return {
        "name": "replicated",
        "steps": [
            {"id": "cast", "tool": "fashn_model_create", "args": {"prompt": "editorial model"}},
            {
                "id": "tryon",
                "tool": "fashn_tryon_max",
                "for_each": [str(g) for g in garments(inputs, n)],
                "args": {"model_image": "@cast.outputs[0]", "product_image": "@item"},
            },
        ],
    }


async def accepted(client: Client, shoot_id: str, step_id: str) -> bool:
    """Whether the step's job was accepted by the provider and its id stored."""
    result = await client.call_tool("shoot_status", {"shoot_id": shoot_id})
    assert not result.is_error, text(result)
    step = next(s for s in (result.structured_content or {})["steps"] if s["id"] == step_id)
    return any(j["status"] in ("submitted", "running") for j in step["jobs"])


async def shoot_until_ended(client: Client, shoot_id: str) -> dict[str, Any]:
    while True:
        result = await client.call_tool("shoot_status", {"shoot_id": shoot_id, "wait_seconds": 30})
        assert not result.is_error, text(result)
        shoot = result.structured_content or {}
        if shoot["status"] != "running":
            return shoot


async def test_a_shoot_whose_replica_died_is_taken_over_and_paid_once(tmp_path: Path, redis_url: str) -> None:
    """Replica 0 dies with the cast job accepted and its id stored, and no other request in flight
    (the emulator's clock is held, so the cast cannot end and the try-ons cannot be sent): the others
    take the shoot over and pay for nothing twice. (A replica that dies between sending and storing
    the id fails that job as `submission_lost` instead: test_engine_core covers it.)"""
    async with deployment(tmp_path, redis_url, scale="0.05", lease="2") as dep:
        clock = HeldClock()
        dep.fashn.clock = clock
        with anyio.fail_after(CALL_TIMEOUT):
            async with dep.client(ports=dep.ports[:1]) as first:
                clock.hold()
                started = await first.call_tool("shoot_start", {"plan": shoot_plan(dep.inputs)})
                shoot_id = (started.structured_content or {})["shoot_id"]
                while not await accepted(first, shoot_id, "cast"):
                    await anyio.sleep(0.02)
            dep.replicas[0].kill()
            dep.replicas[0].wait()
            clock.release()
            async with dep.client(ports=dep.ports[1:]) as others:
                shoot = await shoot_until_ended(others, shoot_id)
        assert shoot["status"] == "succeeded", shoot.get("note")
        assert {s["id"]: len(s["jobs"]) for s in shoot["steps"]} == {"cast": 1, "tryon": 2}
        assert dep.fashn.stats.run_calls == 3, "a step's job was paid twice"
        assert Path(shoot["contact_sheet"]["path"]).is_file()


async def test_a_shoot_is_followed_and_canceled_from_any_replica(tmp_path: Path, redis_url: str) -> None:
    async with deployment(tmp_path, redis_url, scale="0.05") as dep:
        with anyio.fail_after(CALL_TIMEOUT):
            async with dep.client(ports=dep.ports[:1]) as first:
                started = await first.call_tool("shoot_start", {"plan": shoot_plan(dep.inputs, 8)})
                shoot_id = (started.structured_content or {})["shoot_id"]
                async with dep.client(ports=dep.ports[1:]) as others:
                    seen = await others.call_tool("shoot_status", {"shoot_id": shoot_id})
                    assert (seen.structured_content or {})["status"] == "running", text(seen)
                    canceled = await others.call_tool("shoot_cancel", {"shoot_id": shoot_id})
                    assert (canceled.structured_content or {})["status"] == "canceled", text(canceled)
                shoot = await shoot_until_ended(first, shoot_id)
                sent = dep.fashn.stats.run_calls
                await anyio.sleep(0.5)  # long enough for a runner that missed the cancel to send more
        assert shoot["status"] == "canceled"
        jobs = [j for s in shoot["steps"] for j in s["jobs"]]
        assert all(j["status"] in ("succeeded", "canceled") for j in jobs), jobs
        assert dep.fashn.stats.run_calls == sent < 9, "the runner went on after the cancel"
