"""Per-caller budgets and the audit trail: two callers (two tokens) on a real `serve --http`, and the
rules of what a job cost, on the real store."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp_types import CallToolResult, TextContent

from server.ledger import Ledger, charged
from server.models import JobError, JobRecord, JobStatus, utcnow
from server.store import open_backend
from tests.servers import free_port, mcp_client, server_env, serving, wait_healthy

pytestmark = pytest.mark.anyio

CALL_TIMEOUT = 60.0


def text(result: CallToolResult) -> str:
    return " ".join(c.text for c in result.content if isinstance(c, TextContent))


async def test_each_caller_has_a_day_of_credits_and_every_spend_and_cancel_is_audited(tmp_path: Path) -> None:
    port = free_port()
    audit = tmp_path / "audit" / "trail.jsonl"
    env = server_env(
        tmp_path,
        CALLSHEET_HTTP_TOKEN="alice-token,bob-token",
        CALLSHEET_CALLER_CREDITS_PER_DAY="5",
        CALLSHEET_AUDIT_LOG=str(audit),
    )

    four = {"prompt": "a model in a linen suit", "num_images": 4, "wait_seconds": 40}
    with serving(tmp_path, "--port", str(port), env=env) as proc:
        await wait_healthy(proc, port)
        with anyio.fail_after(CALL_TIMEOUT):
            async with mcp_client(f"http://127.0.0.1:{port}/mcp", "alice-token") as alice:
                made = await alice.call_tool("fashn_model_create", four)
                assert (made.structured_content or {})["status"] == "succeeded", text(made)
                again = await alice.call_tool("fashn_model_create", four)  # the same job: nothing spent
                assert (again.structured_content or {})["job_id"] == (made.structured_content or {})["job_id"]
                over = await alice.call_tool(
                    "fashn_model_create", {**four, "num_images": 2, "wait_seconds": 0}
                )
                assert over.is_error and "[budget_exceeded]" in text(over)
                assert "4 used, 1 left" in text(over) and "00:00 UTC" in text(over), text(over)
                plan = {"name": "too much", "steps": [{"id": "a", "tool": "fashn_tryon_v1_6", "args": {}}]}
                plan["steps"][0]["args"] = {
                    "model_image": "https://93.184.216.34/m.png",
                    "garment_image": "https://93.184.216.34/g.png",
                    "num_samples": 2,
                }
                shoot = await alice.call_tool("shoot_start", {"plan": plan, "confirm": True})
                assert shoot.is_error and "budget" in text(shoot) and "1 left" in text(shoot), text(shoot)
                listed = await alice.call_tool("jobs_list", {})
                assert len((listed.structured_content or {})["jobs"]) == 1  # nothing refused was stored
                day = (await alice.call_tool("credits", {})).structured_content or {}
                assert day["you"]["used"] == 4 and day["you"]["left"] == 1 and day["you"]["limit"] == 5
                cheap = await alice.call_tool(
                    "fashn_model_create", {**four, "num_images": 1, "wait_seconds": 0}
                )
                cheap_id = (cheap.structured_content or {})["job_id"]
                await alice.call_tool("job_cancel", {"job_id": cheap_id})
            async with mcp_client(f"http://127.0.0.1:{port}/mcp", "bob-token") as bob:  # a budget of his own
                mine = await bob.call_tool("fashn_model_create", {**four, "prompt": "a model in wool"})
                assert (mine.structured_content or {})["status"] == "succeeded", text(mine)
                day = (await bob.call_tool("credits", {})).structured_content or {}
                assert day["you"]["used"] == 4 and day["you"]["left"] == 1
    lines = [json.loads(line) for line in audit.read_text().splitlines()]
    jobs = {line["job_id"]: line for line in lines if line["tool"] == "fashn_model_create"}
    assert len(jobs) == 3  # alice's two jobs and bob's one: one line each, when they ended
    first = jobs[(made.structured_content or {})["job_id"]]
    assert first["status"] == "succeeded" and first["estimate"] == 4 and first["credits_used"] == 4
    assert (
        first["label"].startswith("token-")
        and first["caller"] != jobs[(mine.structured_content or {})["job_id"]]["caller"]
    )
    canceled = [line for line in lines if line["tool"] == "job_cancel"]
    assert len(canceled) == 1 and canceled[0]["job_id"] == cheap_id and canceled[0]["label"] == first["label"]
    assert all({"time", "caller", "label", "tool"} <= set(line) for line in lines)
    assert "alice-token" not in audit.read_text() and "bob-token" not in audit.read_text()


def job(status: JobStatus, **fields: Any) -> JobRecord:
    now = utcnow()
    return JobRecord(
        job_id="j1",
        provider="fashn",
        operation="edit",
        status=status,
        created_at=now,
        updated_at=now,
        **fields,
    )


def test_what_an_ended_job_cost() -> None:
    """The provider's figure when it gave one; else the estimate only where it may have been charged."""
    assert charged(job(JobStatus.SUCCEEDED, credits_estimate=2, credits_used=3)) == 3
    assert charged(job(JobStatus.SUCCEEDED, credits_estimate=2)) == 2
    lost = JobError(code="submission_lost", message="may have been charged", retryable=True)
    assert charged(job(JobStatus.FAILED, credits_estimate=2, error=lost)) == 2
    failed = JobError(code="PoseError", message="no pose", retryable=False)
    assert charged(job(JobStatus.FAILED, credits_estimate=2, error=failed)) == 0
    assert charged(job(JobStatus.CANCELED, credits_estimate=2, provider_job_id="p1")) == 2
    assert charged(job(JobStatus.CANCELED, credits_estimate=2)) == 0  # never reached the provider


async def test_a_day_is_corrected_to_what_jobs_cost_when_they_end(tmp_path: Path) -> None:
    async with open_backend(None, tmp_path / "store") as backend:
        ledger = Ledger(backend.jobs, 10, tmp_path / "audit.jsonl")
        await ledger.reserve("ann", 4, "fashn_edit")
        await ledger.settle(job(JobStatus.FAILED, credits_estimate=4, caller="ann"))  # not charged: back
        assert (await ledger.usage("ann")).used == 0
        await ledger.reserve("ann", 4, "fashn_edit")
        await ledger.settle(job(JobStatus.SUCCEEDED, credits_estimate=4, credits_used=6, caller="ann"))
        usage = await ledger.usage("ann")
        assert usage.used == 6 and usage.left == 4 and usage.resets_at.hour == 0
        assert len((tmp_path / "audit.jsonl").read_text().splitlines()) == 2
