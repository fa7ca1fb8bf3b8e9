"""The command line: jobs and shoots list/show/cancel and doctor, against a real data folder."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys

import anyio
import httpx
import pytest
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from server.cli import main
from server.config import Settings
from server.models import JobRecord
from server.plans import validate_plan
from server.services import built_on_first_request
from tests.conftest import sandbox_services
from tests.redis_server import free_port


@pytest.fixture(params=["disk", "redis"])
def env(request: pytest.FixtureRequest, settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """The command line's environment, on the embedded store and on Redis."""
    for var in (
        "FASHN_API_KEY",
        "AUTOTOON_API_KEY",
        "NEOFASHION_API_KEY",
        "GENAPI_API_KEY",
        "CALLSHEET_STORE",
    ):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("CALLSHEET_HOME", str(settings.home))
    monkeypatch.setenv("CALLSHEET_INPUT_ROOTS", str(settings.input_roots[0]))
    monkeypatch.setenv("CALLSHEET_SANDBOX", "1")
    if request.param == "redis":
        url = request.getfixturevalue("redis_url")
        monkeypatch.setenv("CALLSHEET_STORE", url)
        return dataclasses.replace(settings, store_url=url)
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


def test_shoots_list_show_cancel(env: Settings, emulator, capsys: pytest.CaptureFixture[str]) -> None:
    cast = {"id": "cast", "tool": "fashn_model_create", "args": {"prompt": "cli casting"}}
    data = {"name": "CLI casting", "steps": [cast]}

    async def make_shoots() -> tuple[str, str, str]:
        # Two shoots: one run to the end, one still running when the server stops.
        async with sandbox_services(env, emulator) as svc:
            plan, validation = validate_plan(data, svc.shoots.tools)
            assert plan is not None and validation.ok, validation.problems
            done = await svc.shoots.start(plan, validation)
            finished = await svc.shoots.wait(done.shoot_id, 20)
            assert finished.status.value == "succeeded"
            left = await svc.shoots.start(plan.model_copy(update={"name": "left running"}), validation)
        return done.shoot_id, finished.folder, left.shoot_id

    shoot_id, folder, left_id = anyio.run(make_shoots)
    assert main(["shoots"]) == 0
    listed = capsys.readouterr().out
    assert shoot_id in listed and "succeeded" in listed and "CLI casting" in listed
    assert main(["shoots", "list", "--status", "succeeded"]) == 0
    assert left_id not in capsys.readouterr().out
    assert main(["shoots", "list", "--status", "over_budget"]) == 0
    assert capsys.readouterr().out.strip() == "no shoots"
    assert main(["shoots", "cancel", left_id]) == 0
    assert f"{left_id}: canceled" in capsys.readouterr().out
    assert main(["shoots", "show", left_id]) == 0
    assert json.loads(capsys.readouterr().out)["status"] == "canceled"
    assert main(["shoots", "show", shoot_id]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["shoot_id"] == shoot_id and shown["status"] == "succeeded"
    assert shown["steps"][0]["id"] == "cast" and shown["folder"] == folder
    assert main(["shoots", "cancel", shoot_id]) == 0
    assert "succeeded" in capsys.readouterr().out  # already ended: left as it was
    assert main(["shoots", "show", "s-nope"]) == 2
    assert "s-nope" in capsys.readouterr().err
    assert main(["shoots", "cancel"]) == 2
    assert "needs a shoot id" in capsys.readouterr().err


def test_doctor_in_sandbox(env: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["doctor"]) == 0
    out = capsys.readouterr().out
    assert str(env.home) in out
    assert "fashn" in out and "sandbox" in out and "reachable" in out
    if env.store_url:
        assert f"store: {env.store_url}" in out and "answers" in out


def test_doctor_names_a_redis_that_does_not_answer(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CALLSHEET_HOME", str(settings.home))
    monkeypatch.setenv("CALLSHEET_SANDBOX", "1")
    monkeypatch.setenv("CALLSHEET_STORE", f"redis://:s3cret-pass@127.0.0.1:{free_port()}/2")
    assert main(["doctor"]) == 1
    out = capsys.readouterr().out
    assert "NOT usable" in out and "cannot be reached" in out and "redis://:***@127.0.0.1" in out
    assert "s3cret-pass" not in out
    assert main(["jobs"]) == 2
    err = capsys.readouterr().err
    assert "cannot be reached" in err and "Traceback" not in err and "s3cret-pass" not in err


@pytest.mark.anyio
async def test_a_sandbox_emulator_is_built_by_its_first_request_and_only_once() -> None:
    """Start-up (and `callsheet jobs`) build no emulator; two first requests at once build one."""
    built: list[int] = []

    def build() -> Starlette:
        built.append(1)
        return Starlette(routes=[Route("/", lambda _: PlainTextResponse("ok"))])

    app = built_on_first_request(build)
    assert built == []
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://sandbox") as client:
        async with anyio.create_task_group() as tg:
            for _ in range(2):
                tg.start_soon(client.get, "/")
        assert (await client.get("/")).text == "ok"
    assert built == [1]


def test_a_command_runs_with_the_garbage_collector_back_on(env: Settings) -> None:
    """The collector is off while a command starts (server/__main__.py) and on once it runs, with what
    the start built frozen out of its reach."""
    probe = (
        "import gc, server.__main__ as m, server.cli as cli\n"
        "seen = []\n"
        "orig = cli.jobs_command\n"
        "async def spy(*a):\n"
        "    seen.append((gc.isenabled(), gc.get_freeze_count() > 0))\n"
        "    return await orig(*a)\n"
        "cli.jobs_command = spy\n"
        "m.run(['jobs', 'list'])\n"
        "print(seen)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.splitlines()[-1] == "[(True, True)]"


def test_a_start_imports_only_what_serving_needs() -> None:
    """What `import server.app` loads in a fresh interpreter: no sandbox emulator (loaded when sandbox
    mode first needs one), no OAuth library (loaded when serve --http builds its gate), no Pillow
    (loaded by the first image), and not httpx's command line with rich and pygments
    (server/__init__.py keeps it out)."""
    probe = (
        "import sys, server.app\n"
        "kept_out = ['rich', 'pygments', 'jwt', 'PIL', 'server.sandbox.kit'] + [\n"
        "    f'server.providers.{p}.emulator' for p in ('fashn', 'autotoon', 'neofashion', 'genapi')]\n"
        "print(sorted(m for m in kept_out if m in sys.modules))\n"
        "print(getattr(sys.modules['httpx._main'], '__file__', None))\n"
    )
    loaded, cli_file = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    ).stdout.splitlines()
    assert loaded == "[]" and cli_file == "None"
