"""What every tool shares: reaching the services, waiting with progress, shaping results, errors.

MCP errors are made here and only here: a `CallsheetError` becomes a tool error whose text says
what went wrong and what to do next; the assistant never sees a traceback.
"""

from __future__ import annotations

import base64
from collections.abc import Awaitable, Callable
from functools import wraps
from typing import Any, ParamSpec, TypeVar

from mcp.server.context import ServerRequestContext
from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ToolError
from mcp_types import CallToolResult, ContentBlock, ImageContent, ResourceLink, TextContent, ToolAnnotations

from server.access import CALLER_KEY, LOCAL, Caller
from server.errors import CallsheetError
from server.models import TERMINAL, JobRecord, JobStatus, credits_text
from server.services import Services

P = ParamSpec("P")
R = TypeVar("R")


READ_ONLY = ToolAnnotations(
    read_only_hint=True, destructive_hint=False, idempotent_hint=True, open_world_hint=False
)
"""Reads callsheet's own state (jobs, shoots, plans)."""
QUERY = ToolAnnotations(
    read_only_hint=True, destructive_hint=False, idempotent_hint=True, open_world_hint=True
)
"""Reads from a provider (lists, balances); costs nothing."""
CANCEL = ToolAnnotations(
    read_only_hint=False, destructive_hint=True, idempotent_hint=True, open_world_hint=True
)
"""Cancels a job or shoot, at the provider too."""


def services(ctx: Context) -> Services:
    svc = ctx.request_context.lifespan_context
    assert isinstance(svc, Services)
    return svc


def caller(ctx: Context) -> Caller:
    """Whose jobs, shoots and files this request may see: the answer `AccessGate` stored for it.

    Over stdio (and in memory) there is no HTTP request: the one local user, who sees everything.
    An HTTP request that did not pass the gate has no answer and is refused, never made local.
    """
    return caller_of(ctx.request_context)


def caller_of(request_context: ServerRequestContext[Any, Any]) -> Caller:
    """`caller` for a request seen below the tools (the app's own request handling)."""
    request = request_context.request
    if request is None:
        return LOCAL
    found = (getattr(request, "scope", {}).get("state") or {}).get(CALLER_KEY)
    if not isinstance(found, Caller):
        raise ToolError("This request carries no checked caller; serve HTTP with `callsheet serve --http`.")
    return found


def tool_errors(fn: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
    """Map the exception tree to a tool error with a message the assistant can act on."""

    @wraps(fn)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return await fn(*args, **kwargs)
        except CallsheetError as exc:
            raise ToolError(f"{exc.message} [{exc.code}]") from None

    return wrapper


def progress_reporter(ctx: Context) -> Callable[[float, str], Awaitable[None]]:
    async def report(fraction: float, message: str) -> None:
        await ctx.report_progress(round(fraction * 100, 1), 100, message)

    return report


async def wait_for(ctx: Context, job: JobRecord, wait_seconds: float) -> JobRecord:
    if wait_seconds <= 0 or job.status in TERMINAL:
        return job
    result = await services(ctx).engine.wait(
        [job.job_id], wait_seconds=wait_seconds, on_progress=progress_reporter(ctx), caller=caller(ctx).id
    )
    return result.jobs[0]


def summary(job: JobRecord, progress: float, note: str = "") -> str:
    """One short human sentence or two about the job."""
    head = f"Job {job.job_id} ({job.provider} {job.operation}{', sandbox' if job.sandbox else ''})"
    if job.status is JobStatus.SUCCEEDED:
        credits = f", {credits_text(job.credits_used)}" if job.credits_used is not None else ""
        paths = "; ".join(f"{o.uri} -> {o.path}" for o in job.outputs)
        text = f"{head} succeeded: {len(job.outputs)} output(s){credits}. {paths}"
    elif job.status is JobStatus.FAILED:
        assert job.error is not None
        text = f"{head} failed [{job.error.code}]: {job.error.message}"
    elif job.status is JobStatus.CANCELED:
        text = f"{head} canceled. {job.error.message if job.error else ''}".strip()
    else:
        text = (
            f"{head} is {job.status.value} ({progress:.0%}). It keeps running on the server: "
            f'call job_wait with job_ids ["{job.job_id}"] to wait for it.'
        )
    return f"{text} {note}".strip() if note not in text else text


def job_content(svc: Services, job: JobRecord, note: str = "") -> list[ContentBlock]:
    """Text summary, then per output a small thumbnail and a link to the full file; never the file inline."""
    blocks: list[ContentBlock] = [TextContent(type="text", text=summary(job, svc.engine.progress(job), note))]
    for n, output in enumerate(job.outputs):
        thumb = svc.media.thumbnail(output)
        if thumb is not None:
            data, mime = thumb
            blocks.append(ImageContent(type="image", data=base64.b64encode(data).decode(), mime_type=mime))
        blocks.append(
            ResourceLink(
                type="resource_link",
                uri=output.uri,
                name=f"{job.operation}-{job.job_id}-{n}",
                mime_type=output.mime_type,
                size=output.bytes,
                description=f"Full-size output {n} of job {job.job_id} ({output.width}x{output.height})",
            )
        )
    return blocks


def job_result(svc: Services, job: JobRecord, note: str = "") -> CallToolResult:
    return CallToolResult(
        content=job_content(svc, job, note), structured_content=svc.engine.public(job).model_dump(mode="json")
    )


def drop_none(values: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None}
