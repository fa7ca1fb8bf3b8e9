"""A damaged data folder: damaged indexes are rebuilt, damaged records set aside, damaged databases
named in one clear line; never a traceback, and everything else keeps working."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from diskcache import Cache
from mcp import Client

from server.app import create_app
from server.config import Settings
from server.models import JobRecord, JobStatus, new_job_id, utcnow
from server.store import DiskShoots, DiskStore, damaged_records
from tests.conftest import sandbox_services

pytestmark = pytest.mark.anyio


def record(status: JobStatus = JobStatus.SUCCEEDED, key: str = "") -> JobRecord:
    now = utcnow()
    return JobRecord(
        job_id=new_job_id(),
        provider="fashn",
        operation="model_create",
        status=status,
        created_at=now,
        updated_at=now,
        key=key or new_job_id(),
        payload={"model_name": "model-create", "inputs": {"prompt": "a model"}}
        if status is JobStatus.QUEUED
        else None,
        typical_seconds=0.05,
    )


async def stored(settings: Settings, *records: JobRecord) -> None:
    store = DiskStore(settings.store_dir)
    for r in records:
        await store.add(r)
    store.close()


def damage_record(settings: Settings, job_id: str) -> None:
    cache = Cache(str(settings.store_dir / "jobs"))
    cache.set(job_id, '{"job_id": "' + job_id + '", "status": "runn')  # cut short mid-write
    cache.close()


def garble(path: Path) -> None:
    for suffix in ("-wal", "-shm"):
        path.with_name(path.name + suffix).unlink(missing_ok=True)
    path.write_bytes(b"this is not a database " * 200)


def cli(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        "CALLSHEET_HOME": str(settings.home),
        "CALLSHEET_INPUT_ROOTS": str(settings.input_roots[0]),
        "CALLSHEET_SANDBOX": "1",
        "PATH": os.environ.get("PATH", ""),
    }
    return subprocess.run(
        [sys.executable, "-m", "server", *args],
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


async def test_a_damaged_catalog_is_set_aside_and_rebuilt_from_the_records(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    jobs = [record() for _ in range(3)]
    await stored(settings, *jobs)
    garble(settings.store_dir / "catalog.sqlite3")
    store = DiskStore(settings.store_dir)
    page, _ = await store.list()
    store.close()
    assert {r.job_id for r in page} == {j.job_id for j in jobs}
    assert list(settings.store_dir.glob("catalog.sqlite3.damaged-*"))
    assert "catalog.sqlite3 was damaged" in caplog.text


async def test_damaged_keys_are_told_again_from_the_records(settings: Settings) -> None:
    """An identical call after the keys file was lost is still the same job: nothing paid twice."""
    job = record(key="the-key")
    await stored(settings, job)
    garble(settings.store_dir / "keys" / "cache.db")
    store = DiskStore(settings.store_dir)
    other = record(key="the-key")
    assert await store.add(other) == job
    store.close()


@pytest.mark.parametrize(("damaged", "names"), [("jobs", "job records"), ("shoots", "shoot records")])
async def test_a_damaged_database_is_one_clear_line_never_a_traceback(
    settings: Settings, damaged: str, names: str
) -> None:
    await stored(settings, record())
    DiskShoots(settings.store_dir / "shoots").close()
    path = settings.store_dir / damaged / "cache.db"
    garble(path)
    for args in (["serve"], ["jobs", "list"], ["shoots", "list"]):
        done = cli(settings, *args)
        assert done.returncode == 2, (args, done.stderr)
        assert done.stdout == ""
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
        assert str(path) in lines[0] and names in lines[0] and "Move it aside" in lines[0]
    doctor = cli(settings, "doctor")
    assert doctor.returncode == 1 and "Traceback" not in doctor.stderr
    assert "NOT usable" in doctor.stdout and str(path) in doctor.stdout


async def test_a_damaged_unfinished_record_is_set_aside_and_the_rest_resume(
    settings: Settings, emulator, caplog: pytest.LogCaptureFixture
) -> None:
    good, bad = record(JobStatus.QUEUED), record(JobStatus.RUNNING)
    await stored(settings, good, bad)
    damage_record(settings, bad.job_id)
    async with sandbox_services(settings, emulator) as svc:  # resumes every unfinished job at start
        done = (await svc.engine.wait([good.job_id], wait_seconds=10)).jobs[0]
        listed, _ = await svc.engine.list_jobs()
    assert done.status is JobStatus.SUCCEEDED
    assert [r.job_id for r in listed] == [good.job_id]
    (aside,) = damaged_records(settings.store_dir)
    assert bad.job_id in aside.name and '"status": "runn' in aside.read_text()
    assert bad.job_id in caplog.text and "set aside" in caplog.text
    doctor = cli(settings, "doctor")
    assert aside.name in doctor.stdout and "Traceback" not in doctor.stderr


async def test_a_damaged_finished_record_leaves_the_listings_working(settings: Settings) -> None:
    jobs = [record() for _ in range(3)]
    await stored(settings, *jobs)
    damage_record(settings, jobs[1].job_id)
    async with Client(create_app(settings)) as client:
        listed = await client.call_tool("jobs_list", {})
        status = await client.call_tool("job_status", {"job_id": jobs[1].job_id})
    assert not listed.is_error
    assert {j["job_id"] for j in (listed.structured_content or {})["jobs"]} == {
        jobs[0].job_id,
        jobs[2].job_id,
    }
    assert status.is_error  # an unknown job now, the record being aside
    done = cli(settings, "jobs", "list")
    assert done.returncode == 0 and "Traceback" not in done.stderr
    assert jobs[0].job_id in done.stdout and jobs[1].job_id not in done.stdout


async def test_a_damaged_shoot_record_is_set_aside_and_the_server_starts(settings: Settings) -> None:
    shoots = Cache(str(settings.store_dir / "shoots"))
    shoots.set("shoot:s123", '{"shoot_id": "s123", "status": "running", "pl')
    shoots.close()
    async with Client(create_app(settings)) as client:
        listed = await client.call_tool("shoots_list", {})
    assert not listed.is_error and (listed.structured_content or {})["shoots"] == []
    assert [p.name for p in damaged_records(settings.store_dir)] == ["shoot-s123.txt"]
