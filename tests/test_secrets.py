"""API keys never leave the process: not in tool results, files, logs, `doctor` or the settings' repr."""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path
from urllib.parse import quote

import anyio
import httpx
import pytest
from mcp import Client

from server.app import create_app
from server.config import Settings
from server.policy import PollPolicy
from server.providers.fashn.emulator import FashnEmulator
from tests.conftest import FAST_RETRY
from tests.servers import serve_on_socket
from tests.test_live_fashn import (
    CALL_TIMEOUT,
    EMULATOR_SCALE,
    job_of,
    live_client,
    live_settings,
    text,
    tryon_args,
)

pytestmark = pytest.mark.anyio

EAGER = PollPolicy(looks=(), step=0.0, floor=0.01, ceiling=0.05)

SECRET = "fa-SECRET-9f8e7d"


def files_containing(root: Path, needle: bytes) -> list[Path]:
    return [p for p in sorted(root.rglob("*")) if p.is_file() and needle in p.read_bytes()]


async def doctor(settings: Settings, base_url: str) -> tuple[int, str]:
    env = {
        "CALLSHEET_HOME": str(settings.home),
        "CALLSHEET_INPUT_ROOTS": str(settings.input_roots[0]),
        "CALLSHEET_SANDBOX": "1",
        "FASHN_API_KEY": SECRET,
        "FASHN_BASE_URL": base_url,
        "CALLSHEET_LOG_LEVEL": "DEBUG",
    }
    for name in ("PATH", "HOME"):
        if name in os.environ:
            env[name] = os.environ[name]
    with anyio.fail_after(CALL_TIMEOUT):
        done = await anyio.run_process([sys.executable, "-m", "server", "doctor"], env=env, check=False)
    return done.returncode, done.stdout.decode() + done.stderr.decode()


async def test_api_key_never_leaks(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    emulator = FashnEmulator(time_scale=EMULATOR_SCALE, api_key=SECRET)
    dumps: list[str] = []
    async with serve_on_socket(emulator.app) as port:
        base_url = f"http://127.0.0.1:{port}/v1"
        settings = live_settings(tmp_path, base_url, key=SECRET)
        assert settings.providers["fashn"].mode.value == "live"
        assert SECRET not in repr(settings) and SECRET not in str(settings.describe())
        assert SECRET not in repr(settings.providers["fashn"])

        with anyio.fail_after(CALL_TIMEOUT):
            async with live_client(settings) as client:
                dumps.append((await client.list_tools()).model_dump_json())
                ok = await client.call_tool("fashn_tryon_max", tryon_args(settings))
                assert not ok.is_error, text(ok)
                job = job_of(ok)
                assert job.status == "succeeded"
                dumps.append(ok.model_dump_json())
                dumps.append((await client.read_resource(f"callsheet://jobs/{job.job_id}")).model_dump_json())
                for tool in ("credits", "providers", "jobs_list"):
                    result = await client.call_tool(tool, {})
                    assert not result.is_error, text(result)
                    dumps.append(result.model_dump_json())

                # The provider now refuses the configured key: the 401 must not echo it either.
                emulator.api_key = "fa-some-other-key"
                refused = await client.call_tool("fashn_model_create", {"prompt": "a model in linen"})
                failed = job_of(refused)
                assert failed.status == "failed" and failed.error is not None
                assert failed.error.code == "unauthorized" and "FASHN_API_KEY" in failed.error.message
                dumps.append(refused.model_dump_json())
                dumps.append(
                    (await client.call_tool("job_status", {"job_id": failed.job_id})).model_dump_json()
                )
                credits = await client.call_tool("credits", {})
                dumps.append(credits.model_dump_json())

        # `doctor` in a subprocess with the key in its environment: live, reachable, key not shown.
        emulator.api_key = SECRET
        code, doctor_ok = await doctor(settings, base_url)
        emulator.api_key = "fa-some-other-key"
        refused_code, doctor_refused = await doctor(settings, base_url)

    for dump in dumps:
        assert SECRET not in dump, dump
    assert code == 0, doctor_ok
    fashn_line = next(line for line in doctor_ok.splitlines() if line.strip().startswith("fashn"))
    assert "live" in fashn_line and "reachable" in fashn_line, doctor_ok
    assert SECRET not in doctor_ok
    assert refused_code != 0 and "FASHN_API_KEY" in doctor_refused, doctor_refused
    assert SECRET not in doctor_refused

    assert any(p.suffix in (".db", ".sqlite", ".sqlite3") for p in settings.home.rglob("*"))
    assert files_containing(settings.home, SECRET.encode()) == []
    assert caplog.records, "the run logged something at DEBUG"
    leaked = [r for r in caplog.records if SECRET in r.getMessage() or SECRET in str(r.args)]
    assert leaked == [], [r.getMessage() for r in leaked]
    assert SECRET not in caplog.text


KEYS = {
    "FASHN_API_KEY": "fa-SECRET-111aaa",
    "AUTOTOON_API_KEY": "toon_SECRET222bbb",
    "NEOFASHION_API_KEY": "ne_live_SECRET333ccc",
    "GENAPI_API_KEY": "gen-SECRET/444+ddd",  # '/' and '+' change under JSON and URL escaping
}
TOKEN = "tok-SECRET-555eee"


def echo(request: httpx.Request) -> httpx.Response:
    """Every provider at once, each echoing the key it was sent in every answer it can."""
    auth = request.headers.get("authorization") or request.headers.get("x-api-key") or ""
    key = auth.removeprefix("Bearer ")
    said = {"x-echo": key, "x-request-key": quote(key, safe="")}
    path = request.url.path
    if path == "/v1/run":
        prompt = json.loads(request.content)["inputs"].get("prompt", "")
        if "refused" in prompt:
            error = {"name": "BadRequest", "message": f"Invalid API key: Bearer {key}"}
            return httpx.Response(400, json={"error": error}, headers=said)
        if "broken" in prompt:
            return httpx.Response(500, text=f"upstream error for {quote(key)}", headers=said)
        return httpx.Response(200, json={"id": "p1", "error": None}, headers=said)
    if path == "/v1/status/p1":
        error = {"name": "PipelineError", "message": f"upstream refused {json.dumps(key)}"}
        return httpx.Response(200, json={"id": "p1", "status": "failed", "error": error}, headers=said)
    if path == "/v1/credits":
        return httpx.Response(200, json={"credits": {"total": 10, "note": f"key={key}"}}, headers=said)
    if request.url.host == "autotoon.test":
        return httpx.Response(400, json={"error": f"bad key {key}", "code": "INVALID_REQUEST"}, headers=said)
    if request.url.host == "neo.test":
        envelope = {
            "data": None,
            "meta": {},
            "error": {"code": "unauthorized", "message": f"{key} is invalid"},
        }
        return httpx.Response(401, json=envelope, headers=said)
    return httpx.Response(500, json={"detail": f"cannot use {key}"}, headers=said)


async def test_a_provider_echoing_its_key_in_every_answer_leaks_it_nowhere(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    (tmp_path / "in").mkdir()
    env = {
        "CALLSHEET_HOME": str(tmp_path / "home"),
        "CALLSHEET_INPUT_ROOTS": str(tmp_path / "in"),
        "CALLSHEET_ALLOW_PRIVATE_URLS": "1",
        "CALLSHEET_HTTP_TOKEN": TOKEN,
        "FASHN_BASE_URL": "https://fashn.test/v1",
        "AUTOTOON_BASE_URL": "https://autotoon.test",
        "NEOFASHION_BASE_URL": "https://neo.test/api/v1",
        "GENAPI_BASE_URL": "https://genapi.test",
        **KEYS,
    }
    settings = Settings.from_env(env)
    app = create_app(settings, live_transport=httpx.MockTransport(echo), retry=FAST_RETRY, poll=EAGER)
    calls = [
        ("fashn_model_create", {"prompt": "refused"}),
        ("fashn_model_create", {"prompt": "a model"}),
        ("fashn_model_create", {"prompt": "broken"}),
        ("autotoon_upscale", {"image_url": "http://127.0.0.1/x.png"}),
        ("autotoon_models", {}),
        ("neofashion_image", {"prompt": "a dress"}),
        ("neofashion_personas", {}),
        ("genapi_tools", {}),
        ("credits", {}),
        ("jobs_list", {}),
    ]
    dumps = []
    async with Client(app) as client:
        for tool, args in calls:
            dumps.append((await client.call_tool(tool, {**args})).model_dump_json())
        jobs = (await client.call_tool("jobs_list", {})).structured_content or {}
        for job in jobs["jobs"]:
            dumps.append((await client.read_resource(f"callsheet://jobs/{job['job_id']}")).model_dump_json())
    seen = "\n".join(dumps)
    for secret in [*KEYS.values(), TOKEN]:
        for form in (secret, json.dumps(secret)[1:-1], quote(secret, safe="")):
            assert form not in seen
            assert files_containing(settings.home, form.encode()) == []
            assert form not in caplog.text
    assert seen.count("[redacted]") >= 8  # the echoes arrived, with the keys taken out
    assert len(jobs["jobs"]) == 5 and all(j["status"] == "failed" for j in jobs["jobs"])
