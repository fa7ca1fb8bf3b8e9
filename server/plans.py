"""Shoot plans: the JSON format, its validation, and its expansion into jobs and waves.

A plan is a list of steps, each a generation tool with its arguments. An argument may name an
earlier step's output (`"@hero.outputs[0]"`, or `"@hero.outputs"` for all of them), a step may fan
out over a list (`for_each`, with `"@item"` standing for each element), and `"@@"` starts a
literal `@`. `validate_plan` reports every problem at once, each with its step and field, and
prices the expanded jobs; nothing here sends or stores anything.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, Field, ValidationError

from server.models import credits_text
from server.policy import MAX_PLAN_CHARS, MAX_PLAN_JOBS
from server.providers.base import OperationSpec

MAX_FAN_OUT = 50
"""Longest `for_each` list one step may give."""
OUTPUT_PLACEHOLDER = "callsheet://jobs/planned/outputs/0"

_REF = re.compile(r"^@([A-Za-z][A-Za-z0-9_-]*)\.outputs(?:\[([0-9]+)\])?$")
_STEP_ID = r"^[A-Za-z][A-Za-z0-9_-]{0,63}$"
"""ASCII, as JSON Schema clients read `\\w`; pydantic's Unicode `\\w` here cost 15-25 ms of every start."""


class Step(BaseModel):
    """One step: a generation tool, its arguments, optionally fanned out."""

    id: str = Field(pattern=_STEP_ID, description="Unique step name, used in references: @<id>.outputs[n].")
    tool: str = Field(max_length=100, description="A generation tool, e.g. fashn_tryon_max.")
    args: dict[str, Any] = Field(
        default_factory=dict,
        description='The tool\'s arguments; "@step.outputs[n]" or "@step.outputs" is an earlier '
        'step\'s output(s), "@item" the for_each element, "@@" a literal @.',
    )
    for_each: list[Any] | str | None = Field(
        default=None,
        description='Run the step once per element: a list, or a reference such as "@tryon.outputs".',
    )


class ShootPlan(BaseModel):
    """A whole shoot: what runs, in which order, at what price."""

    name: str = Field(min_length=1, max_length=100, description="Shoot name, used for its folder.")
    budget_credits: float | None = Field(
        default=None, ge=0, description="Credits the shoot may spend; it stops before crossing this."
    )
    output_dir: str | None = Field(
        default=None,
        description="Folder for the shoot, inside CALLSHEET_INPUT_ROOTS or the data folder.",
    )
    steps: list[Step] = Field(min_length=1, max_length=100, description="The steps; order is free.")


class Problem(BaseModel):
    step: str | None = Field(description="The step concerned, or null for the plan as a whole.")
    field: str | None = Field(description="The argument or plan field concerned.")
    message: str = Field(description="What is wrong and how to fix it.")


class PlannedJob(BaseModel):
    step: str = Field(description="Step id.")
    item: int | None = Field(description="Index within the step's for_each, or null.")
    tool: str = Field(description="Tool to call.")
    args: dict[str, Any] = Field(description="Arguments; references are resolved when the step runs.")
    credits_estimate: float | None = Field(default=None, description="Estimated credits of this job.")


class Estimate(BaseModel):
    total: float = Field(description="Estimated credits of the whole shoot.")
    by_provider: dict[str, float] = Field(description="Estimated credits per provider.")


class Validation(BaseModel):
    ok: bool = Field(description="True when the plan can start as it is.")
    problems: list[Problem] = Field(description="Every problem found, each with its step and field.")
    jobs: list[PlannedJob] = Field(description="The jobs the plan expands into.")
    waves: list[list[str]] = Field(description="Step ids in order of execution; a wave runs together.")
    estimate: Estimate = Field(description="Credit estimate, in total and per provider.")
    budget_credits: float | None = Field(description="The plan's budget, if any.")


@dataclass(frozen=True)
class Reference:
    step: str
    index: int | None  # None: all outputs (a list)


def parse_reference(value: object) -> Reference | None:
    if not isinstance(value, str):
        return None
    match = _REF.match(value)
    if match is None:
        return None
    return Reference(match.group(1), int(match.group(2)) if match.group(2) is not None else None)


def walk_strings(value: object, path: str = "") -> Iterator[tuple[str, str]]:
    """Every string inside an argument value, with its path (`images.person`, `urls[1]`)."""
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, dict):
        for key, inner in value.items():
            yield from walk_strings(inner, f"{path}.{key}" if path else str(key))
    elif isinstance(value, list):
        for n, inner in enumerate(value):
            yield from walk_strings(inner, f"{path}[{n}]")


def substitute(value: object, resolve: Any) -> object:
    """Replace each reference-like string by `resolve(text)`; "@@x" becomes "@x"."""
    if isinstance(value, str):
        if value.startswith("@@"):
            return value[1:]
        if value.startswith("@"):
            return resolve(value)
        return value
    if isinstance(value, dict):
        return {k: substitute(v, resolve) for k, v in value.items()}
    if isinstance(value, list):
        return [substitute(v, resolve) for v in value]
    return value


def with_item(value: object, item: object) -> Any:
    """The arguments with "@item" replaced by the for_each element (other references stay as text)."""
    if value == "@item":
        return item
    if isinstance(value, dict):
        return {k: with_item(v, item) for k, v in value.items()}
    if isinstance(value, list):
        return [with_item(v, item) for v in value]
    return value


def validate_plan(
    plan_data: object, tools: dict[str, tuple[str, OperationSpec]], *, max_jobs: int = MAX_PLAN_JOBS
) -> tuple[ShootPlan | None, Validation]:
    """Check a plan against the available tools (name -> (provider, spec)); expand, order and price it.

    Expansion stops at the step that would take the plan past `max_jobs`: fanning out over earlier
    outputs multiplies, and a few steps could otherwise expand to tens of thousands of jobs.
    """
    problems: list[Problem] = []
    size = len(json.dumps(plan_data, default=str))
    if size > MAX_PLAN_CHARS:
        message = (
            f"The plan is {size:,} characters of JSON, more than {MAX_PLAN_CHARS:,}. Pass images as file "
            "paths, URLs or callsheet:// outputs rather than data: URIs, or split the shoot."
        )
        return None, _result([Problem(step=None, field=None, message=message)], [], [], None)
    try:
        plan = ShootPlan.model_validate(plan_data)
    except ValidationError as exc:
        for err in exc.errors():
            loc = [str(p) for p in err["loc"]]
            where = None
            if len(loc) >= 2 and loc[0] == "steps":
                where = f"steps[{loc[1]}]"
                loc = loc[2:]
            problems.append(Problem(step=where, field=".".join(loc) or None, message=err["msg"]))
        return None, _result(problems, [], [], None)

    ids = [s.id for s in plan.steps]
    by_id = {s.id: s for s in plan.steps}
    for dup in sorted({i for i in ids if ids.count(i) > 1}):
        problems.append(
            Problem(step=dup, field="id", message=f"Two steps are called {dup!r}; ids must be unique.")
        )

    deps: dict[str, set[str]] = {s.id: set() for s in plan.steps}
    for step in plan.steps:
        values: list[tuple[str, str]] = list(walk_strings(step.args))
        if isinstance(step.for_each, str):
            values.append(("for_each", step.for_each))
        elif isinstance(step.for_each, list):
            values += [(f"for_each{p}", v) for p, v in walk_strings(step.for_each)]
        for path, text in values:
            if not text.startswith("@") or text.startswith("@@"):
                continue
            if text == "@item":
                if step.for_each is None or path.startswith("for_each"):
                    problems.append(
                        Problem(
                            step=step.id,
                            field=path,
                            message='"@item" is only meaningful in args of a step with for_each.',
                        )
                    )
                continue
            ref = parse_reference(text)
            if ref is None:
                problems.append(
                    Problem(
                        step=step.id,
                        field=path,
                        message=f'{text!r} is not a reference: use "@step.outputs[n]", "@step.outputs", '
                        '"@item", or "@@" for a literal @.',
                    )
                )
            elif ref.step not in by_id:
                problems.append(
                    Problem(step=step.id, field=path, message=f"{text!r} names no step of this plan.")
                )
            elif ref.step == step.id:
                problems.append(
                    Problem(step=step.id, field=path, message="A step cannot use its own outputs.")
                )
            else:
                deps[step.id].add(ref.step)
        if isinstance(step.for_each, str) and parse_reference(step.for_each) is None:
            problems.append(
                Problem(
                    step=step.id,
                    field="for_each",
                    message='for_each must be a list or a reference like "@step.outputs".',
                )
            )
        if isinstance(step.for_each, list) and not step.for_each:
            problems.append(
                Problem(
                    step=step.id, field="for_each", message="for_each is an empty list: nothing would run."
                )
            )
        if isinstance(step.for_each, list) and len(step.for_each) > MAX_FAN_OUT:
            problems.append(
                Problem(
                    step=step.id,
                    field="for_each",
                    message=f"{len(step.for_each)} items; at most {MAX_FAN_OUT} per step.",
                )
            )

    waves, cyclic = _waves(deps)
    if cyclic:
        problems.append(
            Problem(
                step=", ".join(sorted(cyclic)),
                field=None,
                message="These steps depend on each other in a cycle; break it.",
            )
        )

    jobs: list[PlannedJob] = []
    counts: dict[str, int] = {}
    for step_id in (s for wave in waves for s in wave):
        step = by_id[step_id]
        items = _items(step, counts)
        if len(jobs) + len(items) > max_jobs:
            problems.append(
                Problem(
                    step=step.id,
                    field="for_each",
                    message=f"This step takes the plan to {len(jobs) + len(items)} jobs, past the cap of "
                    f"{max_jobs} (CALLSHEET_MAX_PLAN_JOBS). Fan out over fewer outputs (e.g. "
                    '"@step.outputs[0]"), lower num_images, or split the shoot.',
                )
            )
            break
        jobs += _expand(step, items, tools, counts, problems)
    return plan, _result(problems, jobs, waves, plan.budget_credits)


def _items(step: Step, counts: dict[str, int]) -> list[Any]:
    """What the step runs once for: its for_each list, one placeholder per output it refers to, or once."""
    if isinstance(step.for_each, list):
        return list(step.for_each)
    if isinstance(step.for_each, str):
        ref = parse_reference(step.for_each)
        n = counts.get(ref.step, 1) if ref is not None else 1
        return [OUTPUT_PLACEHOLDER] * (n if ref is None or ref.index is None else 1)
    return [None]


def _expand(
    step: Step,
    items: list[Any],
    tools: dict[str, tuple[str, OperationSpec]],
    counts: dict[str, int],
    problems: list[Problem],
) -> list[PlannedJob]:
    """The step's jobs with their estimated cost; checks the arguments against the tool's schema."""
    if step.tool not in tools:
        problems.append(
            Problem(
                step=step.id,
                field="tool",
                message=f"Unknown or unavailable tool {step.tool!r}. Available: {', '.join(sorted(tools))}.",
            )
        )
        counts[step.id] = 1
        return []
    _, spec = tools[step.tool]
    out = []
    for n, item in enumerate(items):

        def resolve(text: str, item: Any = item) -> object:
            if text == "@item":
                return OUTPUT_PLACEHOLDER if isinstance(item, str) and item.startswith("@") else item
            ref = parse_reference(text)
            if ref is not None and ref.index is None:
                return [OUTPUT_PLACEHOLDER] * max(1, counts.get(ref.step, 1))
            return OUTPUT_PLACEHOLDER

        args = substitute(step.args, resolve)
        credits = None
        try:
            inputs = spec.inputs.model_validate(args)
        except ValidationError as exc:
            if n == 0:  # one report per step, not per item
                for err in exc.errors():
                    field = ".".join(str(p) for p in err["loc"]) or None
                    message = "unknown argument" if err["type"] == "extra_forbidden" else err["msg"]
                    problems.append(
                        Problem(step=step.id, field=field, message=f"{message} (tool {step.tool}).")
                    )
        else:
            credits = spec.credits(inputs)
            counts[step.id] = counts.get(step.id, 0) + _outputs_per_job(inputs)
        out.append(
            PlannedJob(
                step=step.id,
                item=n if step.for_each is not None else None,
                tool=step.tool,
                args=step.args if step.for_each is None else with_item(step.args, item),
                credits_estimate=credits,
            )
        )
    counts.setdefault(step.id, len(items))
    return out


def _outputs_per_job(inputs: BaseModel) -> int:
    for name in ("num_images", "num_samples"):
        value = getattr(inputs, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return 1


def _waves(deps: dict[str, set[str]]) -> tuple[list[list[str]], set[str]]:
    """Kahn's layering: each wave holds the steps whose dependencies are all in earlier waves."""
    remaining = {k: set(v) for k, v in deps.items()}
    waves: list[list[str]] = []
    done: set[str] = set()
    while remaining:
        ready = sorted(k for k, v in remaining.items() if v <= done)
        if not ready:
            return waves, set(remaining)
        waves.append(ready)
        done.update(ready)
        for k in ready:
            del remaining[k]
    return waves, set()


def _result(
    problems: list[Problem], jobs: list[PlannedJob], waves: list[list[str]], budget: float | None
) -> Validation:
    by_provider: dict[str, float] = {}
    for job in jobs:
        provider = job.tool.split("_", 1)[0]
        by_provider[provider] = by_provider.get(provider, 0.0) + (job.credits_estimate or 0.0)
    total = sum(by_provider.values())
    if budget is not None and total > budget:
        problems.append(
            Problem(
                step=None,
                field="budget_credits",
                message=f"The plan is estimated at {credits_text(total)}, above its budget of {budget:g}: "
                "raise the budget or cut steps.",
            )
        )
    return Validation(
        ok=not problems,
        problems=problems,
        jobs=jobs,
        waves=waves,
        estimate=Estimate(total=total, by_provider=by_provider),
        budget_credits=budget,
    )
