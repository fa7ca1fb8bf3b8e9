"""Sandbox mode rehearses restarts too: a job running when the server stops finishes after it starts."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from server.models import JobStatus
from server.services import open_services
from server.store import DiskStore
from tests.conftest import FAST_POLL, FAST_RETRY, make_settings, png_bytes

pytestmark = pytest.mark.anyio


async def test_a_sandbox_job_survives_a_server_restart(tmp_path: Path) -> None:
    (tmp_path / "inputs").mkdir()
    settings = make_settings(tmp_path / "home", tmp_path / "inputs", CALLSHEET_SANDBOX_TIME_SCALE="0.01")
    model, garment = tmp_path / "inputs" / "model.png", tmp_path / "inputs" / "dress.png"
    model.write_bytes(png_bytes(color=(220, 180, 160)))
    garment.write_bytes(png_bytes(color=(10, 120, 200)))
    args = {"model_image": str(model), "product_image": str(garment)}
    # No `sandbox_apps`: the registry builds the emulator, with its state under CALLSHEET_HOME.
    async with open_services(settings, retry=FAST_RETRY, poll=FAST_POLL) as svc:
        job = await svc.engine.submit("fashn", "tryon_max", args)
        with anyio.fail_after(5):
            while (await svc.engine.get(job.job_id)).provider_job_id is None:
                await anyio.sleep(0.005)
    store = DiskStore(settings.store_dir)
    try:
        stopped = await store.get(job.job_id)
    finally:
        store.close()
    assert stopped is not None and stopped.status in (JobStatus.SUBMITTED, JobStatus.RUNNING)
    assert (settings.home / "sandbox" / "fashn.json").is_file()

    async with open_services(settings, retry=FAST_RETRY, poll=FAST_POLL) as svc:
        result = await svc.engine.wait([job.job_id], wait_seconds=10)
    [done] = result.jobs
    assert done.status is JobStatus.SUCCEEDED, done.error
    assert done.provider_job_id == stopped.provider_job_id and done.credits_used == 2
    [output] = done.outputs
    assert Path(output.path).is_file() and output.mime_type == "image/png"
