"""Shoot plan validation: references, fan-out, cycles, schema checks, prices, waves."""

from __future__ import annotations

from typing import Any

from server.plans import Reference, parse_reference, validate_plan
from server.providers.base import OperationSpec
from server.providers.fashn.adapter import Fashn
from tests.conftest import tools_of

TOOLS: dict[str, tuple[str, OperationSpec]] = tools_of(Fashn)

DESIGN_EXAMPLE: dict[str, Any] = {
    "name": "spring-drop",
    "budget_credits": 120,
    "output_dir": None,
    "steps": [
        {
            "id": "cast",
            "tool": "fashn_model_create",
            "args": {"prompt": "editorial model, 30s, short dark hair"},
        },
        {
            "id": "tryon",
            "tool": "fashn_tryon_max",
            "for_each": ["~/garments/dress.png", "~/garments/coat.png"],
            "args": {"model_image": "@cast.outputs[0]", "product_image": "@item"},
        },
        {
            "id": "crops",
            "tool": "fashn_reframe",
            "for_each": "@tryon.outputs",
            "args": {"image": "@item", "aspect_ratio": "4:5"},
        },
    ],
}


def problems(validation) -> list[tuple[str | None, str | None]]:  # type: ignore[no-untyped-def]
    return [(p.step, p.field) for p in validation.problems]


def test_the_design_example_is_valid_expanded_ordered_and_priced() -> None:
    plan, v = validate_plan(DESIGN_EXAMPLE, TOOLS)
    assert plan is not None and v.ok, v.problems
    assert v.waves == [["cast"], ["tryon"], ["crops"]]
    assert [(j.step, j.item) for j in v.jobs] == [
        ("cast", None),
        ("tryon", 0),
        ("tryon", 1),
        ("crops", 0),
        ("crops", 1),
    ]
    assert v.jobs[1].args == {"model_image": "@cast.outputs[0]", "product_image": "~/garments/dress.png"}
    # model-create 1 + two try-ons at 2 + two reframes at 1
    assert v.estimate.total == 1 + 2 * 2 + 2 * 1
    assert v.estimate.by_provider == {"fashn": v.estimate.total}


def test_every_problem_is_reported_at_once() -> None:
    bad = {
        "name": "broken",
        "budget_credits": 0.5,
        "steps": [
            {"id": "a", "tool": "fashn_nope", "args": {}},
            {
                "id": "b",
                "tool": "fashn_reframe",
                "args": {"image": "@ghost.outputs[0]", "aspect_ratio": "7:3"},
            },
            {
                "id": "c",
                "tool": "fashn_edit",
                "args": {"image": "@c.outputs[0]", "prompt": "x", "colour": "red"},
            },
            {
                "id": "d",
                "tool": "fashn_edit",
                "for_each": "not a list",
                "args": {"image": "@item", "prompt": "x"},
            },
            {"id": "e", "tool": "fashn_edit", "args": {"image": "@item", "prompt": "@nonsense"}},
        ],
    }
    _, v = validate_plan(bad, TOOLS)
    found = problems(v)
    assert not v.ok
    assert ("a", "tool") in found
    assert ("b", "image") in found and ("b", "aspect_ratio") in found
    assert ("c", "image") in found and ("c", "colour") in found
    assert ("d", "for_each") in found
    assert ("e", "image") in found and ("e", "prompt") in found
    assert (None, "budget_credits") in found
    unknown = next(p for p in v.problems if p.step == "a")
    assert "fashn_tryon_max" in unknown.message  # says what is available


def test_step_ids_are_ascii_as_json_schema_clients_read_the_pattern() -> None:
    """The published pattern says `[A-Za-z0-9_-]`: an id a client's own check would refuse is refused
    here too, and a reference to it cannot be written."""
    for bad in ("tryön", "1st", "a.b", "x" * 65):
        plan = {
            "name": "ids",
            "steps": [{"id": bad, "tool": "fashn_edit", "args": {"image": "a.png", "prompt": "x"}}],
        }
        _, v = validate_plan(plan, TOOLS)
        assert not v.ok and any(p.field == "id" for p in v.problems), bad
    assert parse_reference("@tryön.outputs[0]") is None
    assert parse_reference("@try_on-2.outputs[3]") == Reference("try_on-2", 3)


def test_cycles_are_refused() -> None:
    plan = {
        "name": "loop",
        "steps": [
            {"id": "a", "tool": "fashn_edit", "args": {"image": "@b.outputs[0]", "prompt": "x"}},
            {"id": "b", "tool": "fashn_edit", "args": {"image": "@a.outputs[0]", "prompt": "y"}},
        ],
    }
    _, v = validate_plan(plan, TOOLS)
    assert any("cycle" in p.message for p in v.problems)


def test_literal_at_and_duplicate_ids_and_shape_errors() -> None:
    plan = {
        "name": "x",
        "steps": [
            {"id": "a", "tool": "fashn_model_create", "args": {"prompt": "@@handle on the shirt"}},
            {"id": "a", "tool": "fashn_model_create", "args": {"prompt": "again"}},
        ],
    }
    _, v = validate_plan(plan, TOOLS)
    assert problems(v) == [("a", "id")]
    _, v = validate_plan({"name": "", "steps": []}, TOOLS)
    assert {p.field for p in v.problems} == {"name", "steps"}


def test_fan_out_over_all_outputs_counts_images() -> None:
    plan = {
        "name": "n",
        "steps": [
            {"id": "cast", "tool": "fashn_model_create", "args": {"prompt": "p", "num_images": 3}},
            {
                "id": "crop",
                "tool": "fashn_reframe",
                "for_each": "@cast.outputs",
                "args": {"image": "@item", "aspect_ratio": "1:1"},
            },
        ],
    }
    _, v = validate_plan(plan, TOOLS)
    assert v.ok, v.problems
    assert len([j for j in v.jobs if j.step == "crop"]) == 3


def test_auto_toon_and_neo_fashion_steps_are_priced_too() -> None:
    from server.providers.autotoon.adapter import AutoToon
    from server.providers.neofashion.adapter import NeoFashion

    tools = dict(TOOLS)
    tools.update(tools_of(AutoToon, NeoFashion))
    plan = {
        "name": "three providers",
        "steps": [
            {"id": "look", "tool": "neofashion_image", "args": {"prompt": "linen dress, studio"}},
            {
                "id": "moods",
                "tool": "autotoon_relight",
                "for_each": ["golden-hour", "dramatic"],
                "args": {"base_image_url": "@look.outputs[0]", "lighting": "@item"},
            },
            {
                "id": "lineup",
                "tool": "neofashion_bulk",
                "args": {"items": [{"prompt": "coat"}, {"prompt": "scarf"}, {"prompt": "boots"}]},
            },
        ],
    }
    _, v = validate_plan(plan, tools)
    assert v.ok, v.problems
    priced = {(j.step, j.item): j.credits_estimate for j in v.jobs}
    assert priced == {("look", None): 50, ("moods", 0): 2, ("moods", 1): 2, ("lineup", None): 150}
    assert v.estimate.by_provider == {"neofashion": 200, "autotoon": 4}


def multiplying_plan(steps: int) -> dict[str, Any]:
    """Each step fans out over every output of the one before, four images a job: 4^n jobs per step."""
    plan_steps: list[dict[str, Any]] = [
        {"id": "s0", "tool": "fashn_model_create", "args": {"prompt": "a model", "num_images": 4}}
    ]
    for n in range(1, steps):
        plan_steps.append(
            {
                "id": f"s{n}",
                "tool": "fashn_edit",
                "for_each": f"@s{n - 1}.outputs",
                "args": {"image": "@item", "prompt": "warmer light", "num_images": 4},
            }
        )
    return {"name": "fan-out", "steps": plan_steps}


def test_fan_out_stops_expanding_at_the_job_cap() -> None:
    """Six steps would be 1 + 4 + 16 + 64 + 256 + 1024 jobs (and 68,250 with the old expansion): the
    expansion stops at the step that crosses the cap, and that step is named with the cap."""
    _, v = validate_plan(multiplying_plan(6), TOOLS)
    assert not v.ok
    assert len(v.jobs) == 1 + 4 + 16 + 64 + 256  # s5 would bring 1024 more: never expanded
    (cap,) = [p for p in v.problems if "cap" in p.message]
    assert cap.step == "s5" and "1365 jobs" in cap.message and "500" in cap.message
    assert "CALLSHEET_MAX_PLAN_JOBS" in cap.message

    # Thirty such steps: the expansion still stops at the first one past the cap.
    _, v = validate_plan(multiplying_plan(30), TOOLS)
    assert len(v.jobs) == 341 and [p.step for p in v.problems if "cap" in p.message] == ["s5"]

    _, v = validate_plan(multiplying_plan(3), TOOLS, max_jobs=20)
    assert len(v.jobs) == 5 and [p.step for p in v.problems] == ["s2"]
    _, v = validate_plan(multiplying_plan(3), TOOLS, max_jobs=21)
    assert v.ok and len(v.jobs) == 21
