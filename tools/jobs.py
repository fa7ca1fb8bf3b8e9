"""Job tools: status, wait, cancel, list. Exact shapes from the design's contract."""

from __future__ import annotations

from typing import Annotated, Literal

from mcp.server.mcpserver import Context, MCPServer
from mcp_types import CallToolResult, TextContent
from pydantic import BaseModel, Field

from server.models import Job, JobStatus
from tools.common import (
    CANCEL,
    READ_ONLY,
    caller,
    job_content,
    job_result,
    progress_reporter,
    services,
    tool_errors,
)
from tools.surface import JOB_VIEW, publish

JobId = Annotated[str, Field(description="A job_id returned by a generation tool or jobs_list.")]


class WaitResult(BaseModel):
    jobs: list[Job] = Field(description="Every requested job, in the order asked for.")
    pending: list[str] = Field(description="Ids of the jobs that are still not finished.")


class JobPage(BaseModel):
    jobs: list[Job] = Field(description="Jobs, newest first.")
    next_cursor: str | None = Field(description="Pass as cursor to get the next page; null when none.")


@tool_errors
async def job_status(job_id: JobId, ctx: Context) -> Annotated[CallToolResult, Job]:
    """Current state of a job: status, progress, outputs (thumbnail plus a link to each file), error."""
    svc = services(ctx)
    return job_result(svc, await svc.engine.get(job_id, caller=caller(ctx).id))


@tool_errors
async def job_wait(
    job_ids: Annotated[list[str], Field(min_length=1, max_length=100, description="Job ids to wait for.")],
    ctx: Context,
    wait_seconds: Annotated[
        int, Field(ge=0, le=50, description="Seconds (0-50) to wait, with progress notifications.")
    ] = 40,
    until: Annotated[
        Literal["all", "any"], Field(description="Return when all jobs have finished, or as soon as any has.")
    ] = "all",
) -> Annotated[CallToolResult, WaitResult]:
    """Wait for jobs, with progress; returns early when the condition holds. Jobs run on whatever
    happens to this call: call again to keep waiting."""
    svc = services(ctx)
    result = await svc.engine.wait(
        job_ids,
        wait_seconds=wait_seconds,
        until=until,
        on_progress=progress_reporter(ctx),
        caller=caller(ctx).id,
    )
    structured = WaitResult(
        jobs=[svc.engine.public(job) for job in result.jobs], pending=result.pending
    ).model_dump(mode="json")
    content = []
    for job in result.jobs:
        content.extend(job_content(svc, job))
    if result.pending:
        content.append(
            TextContent(type="text", text=f"{len(result.pending)} job(s) still running: call job_wait again.")
        )
    return CallToolResult(content=content, structured_content=structured)


@tool_errors
async def job_cancel(job_id: JobId, ctx: Context) -> Annotated[CallToolResult, Job]:
    """Cancel a job, at the provider too where the provider allows it. A finished job is left as it is."""
    svc, who = services(ctx), caller(ctx)
    job, note = await svc.engine.cancel(job_id, caller=who.id)
    if svc.engine.ledger is not None:
        await svc.engine.ledger.audit(
            caller=who.id, label=who.label, tool="job_cancel", job_id=job_id, status=job.status.value
        )
    return job_result(svc, job, note)


@tool_errors
async def jobs_list(
    ctx: Context,
    status: Annotated[JobStatus | None, Field(description="Only jobs in this state.")] = None,
    provider: Annotated[str | None, Field(description="Only this provider's jobs, e.g. fashn.")] = None,
    shoot_id: Annotated[str | None, Field(description="Only the jobs of this shoot.")] = None,
    limit: Annotated[int, Field(ge=1, le=100, description="Page size.")] = 20,
    cursor: Annotated[str | None, Field(description="next_cursor from the previous page.")] = None,
) -> JobPage:
    """List jobs, newest first, with filters and paging."""
    svc = services(ctx)
    records, next_cursor = await svc.engine.list_jobs(
        status=status, provider=provider, shoot_id=shoot_id, caller=caller(ctx).id, limit=limit, cursor=cursor
    )
    return JobPage(jobs=[svc.engine.public(r) for r in records], next_cursor=next_cursor)


def register_job_tools(app: MCPServer) -> None:
    publish(app, job_status, title="Job status", annotations=READ_ONLY, view=JOB_VIEW)
    publish(app, job_wait, title="Wait for jobs", annotations=READ_ONLY, view=JOB_VIEW)
    publish(app, job_cancel, title="Cancel a job", annotations=CANCEL)
    publish(app, jobs_list, title="List jobs", annotations=READ_ONLY)
