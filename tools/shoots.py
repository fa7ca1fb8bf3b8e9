"""Shoot tools: validate and price a plan, start it (confirming the price), follow, cancel, list."""

from __future__ import annotations

from typing import Annotated, Any

from mcp.server.mcpserver import Context, Elicit, MCPServer, Resolve
from mcp.server.mcpserver.exceptions import ToolError
from mcp_types import CallToolResult, ResourceLink, TextContent, ToolAnnotations
from pydantic import BaseModel, Field, WithJsonSchema

from server.models import Shoot, ShootRecord, ShootStatus, credits_text
from server.plans import ShootPlan, Validation
from server.policy import CONFIRM_ABOVE_CREDITS
from server.shoots import ShootRunner
from tools.common import CANCEL, READ_ONLY, caller, progress_reporter, services, tool_errors
from tools.surface import SHOOT_BOARD, publish


def _inline_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The model's JSON Schema with its $defs inlined, so it can sit inside a tool's input schema."""
    schema = model.model_json_schema()
    defs = schema.pop("$defs", {})

    def inline(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                return inline(defs[ref.removeprefix("#/$defs/")])
            return {k: inline(v) for k, v in node.items()}
        if isinstance(node, list):
            return [inline(v) for v in node]
        return node

    result: dict[str, Any] = inline(schema)
    return result


PlanArg = Annotated[
    dict[str, Any],
    # The published schema is ShootPlan's; validation is ours, so every problem is reported at once.
    WithJsonSchema(_inline_schema(ShootPlan)),
    Field(description="The shoot plan: steps, each a generation tool and its arguments."),
]


class StartResult(BaseModel):
    shoot_id: str = Field(description="Pass to shoot_status, shoot_cancel.")
    status: ShootStatus = Field(description="running once started.")
    estimate: dict[str, Any] = Field(description="Credit estimate: total and by_provider.")


class ShootPage(BaseModel):
    shoots: list[Shoot] = Field(description="Shoots, newest first.")
    next_cursor: str | None = Field(description="Pass as cursor for the next page; null when none.")


class PriceConfirmation(BaseModel):
    start: bool = Field(description="Start the shoot at this estimated price?")


@tool_errors
async def shoot_validate(plan: PlanArg, ctx: Context) -> Validation:
    """Check a shoot plan without running anything: every problem at once (step and field), the expanded
    job list, the order of execution (waves) and the credit estimate per provider against the budget."""
    _, validation = await services(ctx).shoots.validate(plan)
    return validation


async def ask_price(
    plan: dict[str, Any], ctx: Context, confirm: bool = False
) -> PriceConfirmation | Elicit[PriceConfirmation]:
    """Confirm the price with the user through elicitation when the client can ask them.

    Only the estimate matters here: the full check (folder, balances) runs once, in shoot_start.
    """
    _, validation = await services(ctx).shoots.validate(plan, balances=False)
    if confirm or not ShootRunner.needs_confirmation(validation):
        return PriceConfirmation(start=True)
    caps = ctx.client_capabilities
    if caps is not None and caps.elicitation is not None:
        return Elicit(
            f"Start shoot {plan.get('name')!r}: {len(validation.jobs)} jobs, about "
            f"{credits_text(validation.estimate.total)} ({validation.estimate.by_provider})?",
            PriceConfirmation,
        )
    return PriceConfirmation(start=False)


@tool_errors
async def shoot_start(
    plan: PlanArg,
    ctx: Context,
    approval: Annotated[PriceConfirmation, Resolve(ask_price)],
    confirm: Annotated[
        bool,
        Field(
            description=f"Set true after the user agreed to the price. Needed for shoots above "
            f"{credits_text(CONFIRM_ABOVE_CREDITS)} when the client cannot ask the user itself."
        ),
    ] = False,
) -> StartResult:
    """Validate a plan, confirm its price with the user and start it in the background; follow it with
    shoot_status. An invalid plan is refused with every problem; nothing is charged."""
    svc = services(ctx)
    parsed, validation = await svc.shoots.validate(plan)
    if parsed is None or not validation.ok:
        lines = "; ".join(
            f"{p.step or 'plan'}{'.' + p.field if p.field else ''}: {p.message}" for p in validation.problems
        )
        raise ToolError(f"The plan cannot start: {lines}")
    if not approval.start:
        raise ToolError(
            f"This shoot is estimated at {credits_text(validation.estimate.total)} "
            f"({validation.estimate.by_provider}). Show the price to the user and, once they agree, call "
            "shoot_start again with confirm: true."
        )
    who = caller(ctx)
    record = await svc.shoots.start(parsed, validation, caller=who.id, caller_label=who.label)
    return StartResult(
        shoot_id=record.shoot_id, status=record.status, estimate=validation.estimate.model_dump()
    )


async def _shoot_result(ctx: Context, record: ShootRecord) -> CallToolResult:
    svc = services(ctx)
    view = await svc.shoots.view(record)
    counts: dict[str, int] = {}
    for step in view.steps:
        counts[step.status.value] = counts.get(step.status.value, 0) + 1
    text = (
        f"Shoot {view.shoot_id} ({view.name}) is {view.status.value} ({view.progress:.0%}): "
        f"{', '.join(f'{n} {s}' for s, n in counts.items())}; {credits_text(view.credits_used)} used. "
        f"Folder: {view.folder}."
    )
    if view.note:
        text += f" {view.note}"
    if view.status is ShootStatus.RUNNING:
        text += f' Call shoot_status with shoot_id "{view.shoot_id}" and wait_seconds to follow it.'
    content: list[Any] = [TextContent(type="text", text=text)]
    if view.contact_sheet.path:
        content.append(
            ResourceLink(
                type="resource_link",
                uri=view.contact_sheet.uri,
                name=f"contact-sheet-{view.shoot_id}",
                mime_type="image/png",
            )
        )
    for step in view.steps:
        for job in step.jobs:
            for output in job.outputs:
                content.append(
                    ResourceLink(
                        type="resource_link",
                        uri=output.uri,
                        name=f"{step.id}-{job.job_id}",
                        mime_type=output.mime_type,
                        size=output.bytes,
                    )
                )
    return CallToolResult(content=content, structured_content=view.model_dump(mode="json"))


@tool_errors
async def shoot_status(
    shoot_id: Annotated[str, Field(description="A shoot_id from shoot_start or shoots_list.")],
    ctx: Context,
    wait_seconds: Annotated[
        int, Field(ge=0, le=50, description="Seconds (0-50) to wait, with progress.")
    ] = 0,
) -> Annotated[CallToolResult, Shoot]:
    """A shoot's state: steps, jobs, progress, credits, outputs, what failed and why, the contact sheet."""
    svc = services(ctx)
    who = caller(ctx).id
    if wait_seconds:
        record = await svc.shoots.wait(shoot_id, wait_seconds, progress_reporter(ctx), caller=who)
    else:
        record = await svc.shoots.get(shoot_id, caller=who)
    return await _shoot_result(ctx, record)


@tool_errors
async def shoot_cancel(
    shoot_id: Annotated[str, Field(description="The shoot to cancel.")], ctx: Context
) -> Annotated[CallToolResult, Shoot]:
    """Cancel a running shoot and its unfinished jobs; finished outputs are kept."""
    svc, who = services(ctx), caller(ctx)
    record = await svc.shoots.cancel(shoot_id, caller=who.id)
    if svc.engine.ledger is not None:
        await svc.engine.ledger.audit(
            caller=who.id, label=who.label, tool="shoot_cancel", shoot_id=shoot_id, status=record.status.value
        )
    return await _shoot_result(ctx, record)


@tool_errors
async def shoot_repeat_step(
    shoot_id: Annotated[str, Field(description="An ended shoot.")],
    step_id: Annotated[str, Field(description="The step to run again.")],
    ctx: Context,
    force: Annotated[bool, Field(description="true: fresh generations, paid again.")] = False,
) -> Annotated[CallToolResult, Shoot]:
    """Run a step of an ended shoot again, then the later steps that did not succeed: failed jobs are
    tried again, succeeded ones reused at no cost unless force."""
    record = await services(ctx).shoots.repeat_step(shoot_id, step_id, force=force, caller=caller(ctx).id)
    return await _shoot_result(ctx, record)


@tool_errors
async def shoots_list(
    ctx: Context,
    status: Annotated[ShootStatus | None, Field(description="Only shoots in this state.")] = None,
    limit: Annotated[int, Field(ge=1, le=100, description="Page size.")] = 20,
    cursor: Annotated[str | None, Field(description="next_cursor from the previous page.")] = None,
) -> ShootPage:
    """List shoots, newest first."""
    svc = services(ctx)
    records, next_cursor = await svc.shoots.list(
        status=status, caller=caller(ctx).id, limit=limit, cursor=cursor
    )
    return ShootPage(shoots=[await svc.shoots.view(r) for r in records], next_cursor=next_cursor)


def register_shoot_tools(app: MCPServer) -> None:
    runs = ToolAnnotations(
        read_only_hint=False, destructive_hint=False, idempotent_hint=False, open_world_hint=True
    )
    publish(app, shoot_validate, title="Validate and price a shoot plan", annotations=READ_ONLY)
    publish(app, shoot_start, title="Start a shoot", annotations=runs, view=SHOOT_BOARD)
    publish(app, shoot_status, title="Shoot status", annotations=READ_ONLY, view=SHOOT_BOARD)
    publish(app, shoot_cancel, title="Cancel a shoot", annotations=CANCEL, view=SHOOT_BOARD)
    publish(app, shoots_list, title="List shoots", annotations=READ_ONLY)
    publish(app, shoot_repeat_step, title="Repeat a shoot step", annotations=runs, view=SHOOT_BOARD)
