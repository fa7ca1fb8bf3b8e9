"""The command line: jobs list/show/cancel and doctor, against a real data folder."""

from __future__ import annotations

import json

import anyio
import pytest

from server.cli import main
from server.config import Settings
from server.models import JobRecord
from tests.conftest import sandbox_services


@pytest.fixture
def env(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Settings:
    for var in ("FASHN_API_KEY", "AUTOTOON_API_KEY", "NEOFASHION_API_KEY", "GENAPI_API_KEY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("CALLSHEET_HOME", str(settings.home))
    monkeypatch.setenv("CALLSHEET_INPUT_ROOTS", str(settings.input_roots[0]))
    monkeypatch.setenv("CALLSHEET_SANDBOX", "1")
    return settings


def test_jobs_list_show_cancel(env: Settings, emulator, capsys: pytest.CaptureFixture[str]) -> None:
    async def make_job() -> JobRecord:
        async with sandbox_services(env, emulator) as svc:
            job = await svc.engine.submit("fashn", "model_create", {"prompt": "cli"})
            await svc.engine.wait([job.job_id], wait_seconds=10)
            return job

    done = anyio.run(make_job)
    assert main(["jobs"]) == 0
    assert done.job_id in capsys.readouterr().out
    assert main(["jobs", "show", done.job_id]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["status"] == "succeeded" and shown["job_id"] == done.job_id
    assert main(["jobs", "cancel", done.job_id]) == 0
    assert "already" in capsys.readouterr().out
    assert main(["jobs", "show", "j-nope"]) == 2
    assert "j-nope" in capsys.readouterr().err


def test_doctor_in_sandbox(env: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["doctor"]) == 0
    out = capsys.readouterr().out
    assert str(env.home) in out
    assert "fashn" in out and "sandbox" in out and "reachable" in out
