"""Generation tools: one per provider operation, built from the adapter's typed input models.

Each tool's flat arguments are the fields of the provider's input model (the provider's own names),
plus `wait_seconds` and `force`. The same model validates the call again in the adapter, so the
schema the assistant reads and the check the call meets cannot drift apart.
"""

from __future__ import annotations

import contextlib
import inspect
import json
from typing import Annotated, Any, cast

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp_types import CallToolResult, TextContent, ToolAnnotations
from pydantic import BaseModel, Field

from server.models import Job, JobStatus
from server.providers.base import OperationSpec, QuerySpec, validate_inputs
from tools.common import (
    QUERY,
    caller,
    drop_none,
    job_result,
    services,
    tool_errors,
    wait_for,
)
from tools.surface import JOB_VIEW, publish

GENERATION_ANNOTATIONS = ToolAnnotations(
    read_only_hint=False,
    destructive_hint=False,
    idempotent_hint=True,  # an identical call returns the same job and spends nothing
    open_world_hint=True,
)


def generation_tool(provider: str, operation: str, inputs: type[BaseModel]) -> Any:
    """A tool function whose signature is `inputs`' fields, flat, plus wait_seconds, force and ctx."""

    async def tool(ctx: Context, wait_seconds: int = 40, force: bool = False, **args: Any) -> CallToolResult:
        svc = services(ctx)
        who = caller(ctx)
        job = await svc.engine.submit(
            provider, operation, drop_none(args), force=force, caller=who.id, caller_label=who.label
        )
        job = await wait_for(ctx, job, wait_seconds)
        result = job_result(svc, job)
        # A job that failed is reported as a tool error too, so no assistant mistakes it for a result.
        result.is_error = job.status is JobStatus.FAILED
        return result

    params = flat_parameters(inputs)
    params += [
        inspect.Parameter(
            "wait_seconds",
            inspect.Parameter.KEYWORD_ONLY,
            default=40,
            annotation=Annotated[int, Field(ge=0, le=50)],
        ),
        inspect.Parameter(
            "force",
            inspect.Parameter.KEYWORD_ONLY,
            default=False,
            annotation=bool,
        ),
        inspect.Parameter("ctx", inspect.Parameter.KEYWORD_ONLY, annotation=Context),
    ]
    returns = CallToolResult  # its structured result is a Job: `publish(output=Job)`
    wrapped = tool_errors(tool)
    wrapped.__signature__ = inspect.Signature(params, return_annotation=returns)  # type: ignore[attr-defined]
    wrapped.__annotations__ = {p.name: p.annotation for p in params} | {"return": returns}
    wrapped.__name__ = f"{provider}_{operation}"
    return wrapped


def flat_parameters(inputs: type[BaseModel]) -> list[inspect.Parameter]:
    """The model's fields as keyword parameters (required first), descriptions and constraints kept."""
    params = []
    for name, field in inputs.model_fields.items():
        annotation = cast(Any, Annotated)[field.rebuild_annotation(), Field(description=field.description)]
        default = inspect.Parameter.empty if field.is_required() else None
        params.append(
            inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation)
        )
    params.sort(key=lambda p: p.default is not inspect.Parameter.empty)
    return params


def query_tool(provider: str, spec: QuerySpec) -> Any:
    """A read-only tool: validate with the query's model, call the provider, return its JSON."""

    async def tool(ctx: Context, **args: Any) -> CallToolResult:
        svc = services(ctx)
        adapter = svc.engine.provider(provider)
        validated = validate_inputs(spec.inputs, drop_none(args), f"{provider}_{spec.name}")
        data = await adapter.query(spec.name, validated)
        text = json.dumps(data)
        if len(text) > 2000:
            text = text[:2000] + " ... (truncated here; the structured result has everything)"
        return CallToolResult(content=[TextContent(type="text", text=text)], structured_content=data)

    params = [
        *flat_parameters(spec.inputs),
        inspect.Parameter("ctx", inspect.Parameter.KEYWORD_ONLY, annotation=Context),
    ]
    wrapped = tool_errors(tool)
    wrapped.__signature__ = inspect.Signature(params, return_annotation=CallToolResult)  # type: ignore[attr-defined]
    wrapped.__annotations__ = {p.name: p.annotation for p in params} | {"return": CallToolResult}
    wrapped.__name__ = f"{provider}_{spec.name}"
    return wrapped


def register_query_tools(app: MCPServer, specs: list[tuple[str, QuerySpec]]) -> None:
    for provider, spec in specs:
        publish(
            app,
            query_tool(provider, spec),
            name=f"{provider}_{spec.name}",
            title=spec.title,
            description=spec.description,
            annotations=QUERY,
            provider=provider,
        )


def register_generation_tools(app: MCPServer, specs: list[tuple[str, OperationSpec]]) -> None:
    """One tool per (provider, operation) that is live or sandbox."""
    for provider, op in specs:
        publish(
            app,
            generation_tool(provider, op.operation, op.inputs),
            name=f"{provider}_{op.operation}",
            title=op.title,
            description=op.description,
            annotations=GENERATION_ANNOTATIONS,
            provider=provider,
            view=JOB_VIEW,
            output=Job,
        )


def replace_generation_tool(app: MCPServer, provider: str, op: OperationSpec) -> None:
    """Register an operation's tool again, with the schema of its current inputs (discovered values)."""
    with contextlib.suppress(ToolError):  # not registered yet
        app.remove_tool(f"{provider}_{op.operation}")
    register_generation_tools(app, [(provider, op)])
