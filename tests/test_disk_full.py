"""A full disk, for real: a small tmpfs holds the data folder while outputs and records are written.

Needs a mount (root, as in CI); skipped where the machine does not allow one.
"""

from __future__ import annotations

import io
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import anyio
import httpx
import pytest
from mcp import Client
from mcp_types import TextContent
from PIL import Image

from server.app import create_app
from server.config import Settings
from server.models import JobStatus
from server.policy import PollPolicy
from server.services import open_services
from tests.conftest import FAST_RETRY

pytestmark = pytest.mark.anyio

BASE = "https://api.fashn.test/v1"
EAGER = PollPolicy(looks=(), step=0.0, floor=0.01, ceiling=0.05)
"""The fake answers at once: look at once (live FASHN's first look would come after ~20 s)."""
OUTPUT = f"{BASE}/out/pred-1.png"


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    mount = tmp_path / "home"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mount)], capture_output=True, text=True
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small disk here: {done.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(disk: Path, leave: int) -> Path:
    """Fill the disk until only about `leave` bytes are free; returns the filler to delete later."""
    filler = disk / "filler"
    stats = os.statvfs(disk)
    free = stats.f_bavail * stats.f_frsize
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    try:
        os.write(fd, b"\0" * max(0, free - leave))
        while leave == 0:
            os.write(fd, b"\0" * 4096)
    except OSError:
        pass
    finally:
        os.close(fd)
    return filler


def noise_png() -> bytes:
    """A 3 MB PNG (random pixels do not compress)."""
    buffer = io.BytesIO()
    Image.frombytes("RGB", (1000, 1000), os.urandom(3_000_000)).save(buffer, "PNG")
    return buffer.getvalue()


class FakeFashn:
    """FASHN's documented /run and /status, with one 3 MB output."""

    def __init__(self) -> None:
        self.runs = 0
        self.status_calls = 0
        self.state = "completed"
        self.image = noise_png()

    def __call__(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path == "/v1/run":
            self.runs += 1
            return httpx.Response(200, json={"id": "pred-1", "error": None})
        if path == "/v1/status/pred-1":
            self.status_calls += 1
            if self.state != "completed":
                return httpx.Response(200, json={"id": "pred-1", "status": self.state})
            return httpx.Response(200, json={"id": "pred-1", "status": "completed", "output": [OUTPUT]})
        if path == "/v1/out/pred-1.png":
            return httpx.Response(200, content=self.image, headers={"content-type": "image/png"})
        return httpx.Response(404, json={"error": "not found"})


def live_settings(home: Path, tmp_path: Path) -> Settings:
    (tmp_path / "in").mkdir(exist_ok=True)
    return Settings.from_env(
        {
            "CALLSHEET_HOME": str(home),
            "CALLSHEET_INPUT_ROOTS": str(tmp_path / "in"),
            "FASHN_API_KEY": "fa-test-key",
            "FASHN_BASE_URL": BASE,
        }
    )


async def test_a_full_disk_fails_the_download_keeps_the_urls_and_a_repeat_pays_nothing(
    small_disk: Path, tmp_path: Path
) -> None:
    fashn = FakeFashn()
    settings = live_settings(small_disk, tmp_path)
    options = {"live_transport": httpx.MockTransport(fashn), "retry": FAST_RETRY, "poll": EAGER}
    async with open_services(settings, **options) as svc:  # type: ignore[arg-type]
        filler = fill(small_disk, leave=1024 * 1024)  # records fit; the 3 MB output does not
        job = await svc.engine.submit("fashn", "model_create", {"prompt": "a model in linen"})
        done = (await svc.engine.wait([job.job_id], wait_seconds=20)).jobs[0]
        assert done.status is JobStatus.FAILED and done.error is not None, done
        assert done.error.code == "disk_full"
        assert "Free space" in done.error.message and OUTPUT in done.error.message
        assert "paying nothing" in done.error.message
        assert not [p for p in (settings.media_dir / job.job_id).iterdir() if p.name.endswith(".part")]
        # The server goes on: listing works, and once there is room the same call fetches the outputs
        # of the provider's finished job again instead of paying for a new one.
        listed, _ = await svc.engine.list_jobs()
        assert [r.job_id for r in listed] == [job.job_id]
        filler.unlink()
        again = await svc.engine.submit("fashn", "model_create", {"prompt": "a model in linen"})
        assert again.job_id != job.job_id and again.provider_job_id == "pred-1"
        fetched = (await svc.engine.wait([again.job_id], wait_seconds=20)).jobs[0]
    assert fetched.status is JobStatus.SUCCEEDED, fetched.error
    assert Path(fetched.outputs[0].path).read_bytes() == fashn.image
    assert fashn.runs == 1


async def test_a_store_that_cannot_be_written_is_a_clear_tool_error_and_the_server_stays_up(
    small_disk: Path, tmp_path: Path
) -> None:
    fashn = FakeFashn()
    settings = live_settings(small_disk, tmp_path)
    app = create_app(settings, live_transport=httpx.MockTransport(fashn), retry=FAST_RETRY, poll=EAGER)
    call = {"prompt": "a model in wool", "wait_seconds": 0}
    async with Client(app) as client:
        filler = fill(small_disk, leave=0)
        refused = await client.call_tool("fashn_model_create", call)
        text = " ".join(c.text for c in refused.content if isinstance(c, TextContent))
        assert refused.is_error and "[disk_full]" in text and "Free space" in text, text
        assert "Traceback" not in text
        assert fashn.runs == 0  # nothing was sent: the job could not be stored first
        filler.unlink()
        made = await client.call_tool("fashn_model_create", call)
        assert not made.is_error
        listed = await client.call_tool("jobs_list", {})
    assert len((listed.structured_content or {})["jobs"]) == 1


async def test_a_job_whose_state_cannot_be_written_pauses_and_resumes_when_there_is_room(
    small_disk: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    fashn = FakeFashn()
    fashn.state = "in_queue"  # polls that change nothing write nothing
    settings = live_settings(small_disk, tmp_path)
    transport = httpx.MockTransport(fashn)
    async with open_services(
        settings, live_transport=transport, retry=FAST_RETRY, poll=EAGER, lease_ttl=0.4
    ) as svc:
        job = await svc.engine.submit("fashn", "model_create", {"prompt": "a model in silk"})
        with anyio.fail_after(20):
            while fashn.status_calls < 1:
                await anyio.sleep(0.01)
        filler = fill(small_disk, leave=0)
        fashn.state = "processing"
        with anyio.fail_after(20):  # its next state cannot be written: the job is paused, not the server
            while not any(
                "paused" in r.getMessage() and job.job_id in r.getMessage() for r in caplog.records
            ):
                await anyio.sleep(0.01)
        stored = await svc.engine.get(job.job_id)
        assert stored.status in (JobStatus.SUBMITTED, JobStatus.RUNNING)
        fashn.state = "completed"
        filler.unlink()
        done = (await svc.engine.wait([job.job_id], wait_seconds=20)).jobs[0]
    assert done.status is JobStatus.SUCCEEDED, done.error
    assert fashn.runs == 1
