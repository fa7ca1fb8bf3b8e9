"""Caps on what a call may carry: every text argument of every tool, and whole shoot plans."""

from __future__ import annotations

from typing import Any

import pytest
from mcp import Client
from mcp_types import TextContent

from server.app import create_app
from server.config import Settings
from server.plans import validate_plan
from server.policy import MAX_IMAGE_REF_CHARS, MAX_PLAN_CHARS, MAX_TEXT_CHARS
from server.providers import REGISTRY
from server.providers.base import Mode, ProviderSettings, image_fields
from tests.test_plans import TOOLS

pytestmark = pytest.mark.anyio


def uncapped_strings(schema: dict[str, Any], where: str = "") -> list[str]:
    """Every string in a JSON schema (nested objects, arrays, maps included) that has no maxLength."""
    found = []
    defs = schema.get("$defs", {})

    def walk(node: Any, path: str) -> None:
        if not isinstance(node, dict):
            return
        ref = node.get("$ref")
        if isinstance(ref, str):
            walk(defs[ref.rsplit("/", 1)[-1]], path)
        free_text = node.get("type") == "string" and "enum" not in node and "const" not in node
        if free_text and node.get("maxLength") not in (MAX_TEXT_CHARS, MAX_IMAGE_REF_CHARS):
            found.append(path)
        for key in ("anyOf", "oneOf", "allOf"):
            for n, inner in enumerate(node.get(key, [])):
                walk(inner, f"{path}|{n}")
        for name, inner in (node.get("properties") or {}).items():
            walk(inner, f"{path}.{name}")
        walk(node.get("items"), f"{path}[]")
        walk(node.get("additionalProperties"), f"{path}{{}}")

    walk(schema, where)
    return found


def test_every_text_argument_of_every_provider_tool_is_capped() -> None:
    adapters = [cls(ProviderSettings(name, Mode.SANDBOX, "", "")) for name, cls in REGISTRY.items()]
    specs = [(f"{a.name}_{op.operation}", op.inputs) for a in adapters for op in a.operations()] + [
        (f"{a.name}_{q.name}", q.inputs) for a in adapters for q in a.queries()
    ]
    assert len(specs) == 27  # 22 generation tools, 5 queries
    for tool, inputs in specs:
        assert uncapped_strings(inputs.model_json_schema()) == [], tool


async def test_a_ten_megabyte_prompt_is_refused_and_nothing_is_stored(settings: Settings) -> None:
    async with Client(create_app(settings)) as client:
        result = await client.call_tool("fashn_model_create", {"prompt": "x" * 10_000_000, "wait_seconds": 0})
        listed = await client.call_tool("jobs_list", {})
    assert result.is_error
    text = " ".join(c.text for c in result.content if isinstance(c, TextContent))
    assert "prompt" in text and f"{MAX_TEXT_CHARS}" in text and len(text) < 1000
    assert (listed.structured_content or {})["jobs"] == []


def test_a_plan_too_large_is_one_problem_naming_the_cap() -> None:
    step = {"id": "cast", "tool": "fashn_model_create", "args": {"prompt": "a model"}}
    huge = {"name": "big", "steps": [step], "notes": "x" * MAX_PLAN_CHARS}
    plan, v = validate_plan(huge, TOOLS)
    assert plan is None and not v.ok and len(v.problems) == 1
    assert f"{MAX_PLAN_CHARS:,}" in v.problems[0].message
    long_tool = {"name": "t", "steps": [{"id": "a", "tool": "y" * 100_000}]}
    _, v = validate_plan(long_tool, TOOLS)
    assert not v.ok and all(len(p.message) < 1000 for p in v.problems)


def test_image_arguments_are_the_ones_that_take_a_whole_image() -> None:
    """Only image references may be as long as a data URI; FASHN's lists of image fields agree."""
    from server.providers.fashn.operations import OPERATIONS

    for op, spec in OPERATIONS.items():
        props = spec.inputs.model_json_schema()["properties"]
        long = {
            name
            for name, prop in props.items()
            if MAX_IMAGE_REF_CHARS in [p.get("maxLength") for p in [prop, *prop.get("anyOf", [])]]
        }
        assert long == set(image_fields(spec.inputs)), op
