"""What the assistant reads of the tools: compact, strict-mode ready, still enough to call every tool.

All four providers in sandbox mode, through an in-memory MCP client, in both protocol eras where the
era matters (the tool list itself does not depend on it).
"""

from __future__ import annotations

import base64
import copy
import json
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from agents.strict_schema import ensure_strict_json_schema
from mcp import Client
from mcp_types import Tool

from server.app import create_app
from server.config import Settings
from server.errors import ConfigError
from server.providers import REGISTRY
from tests.conftest import FAST_POLL, FAST_RETRY, make_settings, png_bytes
from tests.schema_driver import SchemaDriver, text
from tools.surface import SHARED_ARGUMENTS, ToolSchemas, _code_stamp, lazy_tools, model_facing_bytes

pytestmark = pytest.mark.anyio

MODEL_FACING_BUDGET = 48_000
"""Bytes of the model-facing part of tools/list (name, title, description, input schema) at most."""
PUBLIC_IMAGE = (
    "https://93.184.216.34/look.png"  # a literal public address: checked without DNS, never fetched
)
FREE_FORM = {"shoot_validate", "shoot_start"}
"""Tools whose input has a free-form map that the contract fixes (a plan step's `args`)."""


@asynccontextmanager
async def connect(settings: Settings, mode: str = "auto") -> AsyncIterator[Client]:
    async with Client(create_app(settings, retry=FAST_RETRY, poll=FAST_POLL), mode=mode) as client:
        yield client


async def discovered_tools(client: Client) -> list[Tool]:
    """The tool list once the Generation API's tools are discovered (its steady state)."""
    refreshed = await client.call_tool("genapi_tools", {"refresh": True})
    assert not refreshed.is_error, text(refreshed)
    return (await client.list_tools()).tools


def walk(schema: Any, path: str = "") -> list[tuple[str, dict[str, Any]]]:
    """Every schema node (not property names) with its path."""
    if not isinstance(schema, dict):
        return []
    found = [(path, schema)]
    for name, sub in (schema.get("properties") or {}).items():
        found += walk(sub, f"{path}.{name}")
    for key in ("items", "additionalProperties"):
        found += walk(schema.get(key), f"{path}[{key}]")
    for key in ("anyOf", "oneOf", "allOf"):
        for n, sub in enumerate(schema.get(key) or []):
            found += walk(sub, f"{path}<{key}{n}>")
    return found


async def test_the_model_facing_tool_list_is_within_budget_and_compact(settings: Settings) -> None:
    async with connect(settings) as client:
        tools = await discovered_tools(client)
        conventions = await client.read_resource("callsheet://conventions")
        instructions = client.instructions
    assert {t.name.split("_")[0] for t in tools} >= {"fashn", "autotoon", "neofashion", "genapi"}
    size = model_facing_bytes(tools)
    print(f"model-facing tools/list: {size} bytes for {len(tools)} tools (budget {MODEL_FACING_BUDGET})")
    assert size <= MODEL_FACING_BUDGET
    for tool in tools:
        for path, node in walk(tool.input_schema):
            where = f"{tool.name}{path}"
            assert "title" not in node and "$defs" not in node and "$ref" not in node, where
            assert {"type": "null"} not in (node.get("anyOf") or []), f"{where}: anyOf with null"
            if node.get("type") == "object" and "properties" in node:
                assert node.get("additionalProperties") is False or tool.name in FREE_FORM, where
        props = tool.input_schema.get("properties", {})
        if all(
            name in props for name in SHARED_ARGUMENTS
        ):  # a generation tool: said once, in the conventions
            assert not any("description" in props[name] for name in SHARED_ARGUMENTS), tool.name
    said = conventions.contents[0].text  # type: ignore[union-attr]
    assert instructions == said
    for promise in ("Image references", "wait_seconds", "force: true", "job_wait", "URLs only", "8,000"):
        assert promise in said


async def test_every_tool_is_accepted_by_openai_strict_mode_but_the_free_form_plan(
    settings: Settings,
) -> None:
    """openai-agents' own conversion (what `convert_schemas_to_strict=True` runs on MCP tools)."""
    async with connect(settings) as client:
        tools = await discovered_tools(client)
    refused = {}
    for tool in tools:
        schema = copy.deepcopy(tool.input_schema)
        schema.setdefault("properties", {})
        try:
            ensure_strict_json_schema(schema, _reject_open_objects=tool.input_schema != {})
        except Exception as exc:  # noqa: BLE001  (the library's UserError and others: all are a refusal)
            refused[tool.name] = str(exc)
    assert set(refused) == FREE_FORM, refused


async def test_every_generation_tool_is_run_to_success_by_a_caller_that_reads_only_the_schemas(
    tmp_path: Any,
) -> None:
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    (inputs / "look.png").write_bytes(png_bytes(96, 128))
    settings = make_settings(tmp_path / "home", inputs)
    async with connect(settings) as client:
        tools = await discovered_tools(client)
        driver = SchemaDriver(client, tools, inputs / "look.png", PUBLIC_IMAGE)
        generation = [
            t.name
            for t in tools
            if t.name.split("_")[0] in REGISTRY and t.annotations and not t.annotations.read_only_hint
        ]
        ended = {}
        for name in generation:
            result = await driver.run(name)
            job = result.structured_content or {}
            while job.get("next_step"):  # still running: the result says what to call
                waited = await client.call_tool(job["next_step"]["tool"], job["next_step"]["arguments"])
                job = (waited.structured_content or {})["jobs"][0]
            ended[name] = job.get("status") or text(result)[:300]
    assert len(generation) == 22
    assert ended == dict.fromkeys(generation, "succeeded"), ended
    fixed = {tool: error for tool, _, error in driver.calls if error}
    print(f"{len(driver.calls)} calls for {len(generation)} tools; fixed from the error: {sorted(fixed)}")


@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_a_running_job_carries_its_next_step_in_the_structured_result(
    settings: Settings, mode: str
) -> None:
    async with connect(settings, mode) as client:
        started = await client.call_tool(
            "fashn_model_create", {"prompt": "editorial model", "wait_seconds": 0}
        )
        job = started.structured_content or {}
        assert job["status"] in ("queued", "submitted", "running"), text(started)
        assert job["next_step"] == {"tool": "job_wait", "arguments": {"job_ids": [job["job_id"]]}}
        waited = await client.call_tool("job_wait", job["next_step"]["arguments"] | {"wait_seconds": 50})
        done = (waited.structured_content or {})["jobs"][0]
    assert done["status"] == "succeeded" and done["next_step"] is None


async def test_toolsets_list_only_the_groups_chosen(tmp_path: Any) -> None:
    (tmp_path / "inputs").mkdir()
    settings = make_settings(tmp_path / "home", tmp_path / "inputs", CALLSHEET_TOOLSETS="fashn, jobs")
    async with connect(settings) as client:
        names = {t.name for t in (await client.list_tools()).tools}
    assert names == {n for n in names if n.startswith(("fashn_", "job_", "jobs_"))}
    assert {"fashn_tryon_max", "job_wait", "jobs_list"} <= names and len(names) == 12 + 4
    with pytest.raises(ConfigError, match=r"unknown group.*shots.*the groups are fashn"):
        make_settings(tmp_path / "home", tmp_path / "inputs", CALLSHEET_TOOLSETS="fashn,shots")


@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_the_server_and_every_tool_carry_an_embedded_icon(settings: Settings, mode: str) -> None:
    async with connect(settings, mode) as client:
        server = client.server_info
        tools = await discovered_tools(client)
    assert server is not None and server.icons
    ours = server.icons[0].src
    badges: dict[str, set[str]] = {}
    for tool in tools:
        assert tool.icons and len(tool.icons) == 1, tool.name
        icon = tool.icons[0]
        assert icon.mime_type == "image/svg+xml" and icon.src.startswith("data:image/svg+xml;base64,")
        svg = base64.b64decode(icon.src.split(",", 1)[1]).decode()
        assert svg.startswith("<svg") and "href" not in svg and len(icon.src) < 1000, (
            tool.name
        )  # nothing fetched
        prefix = tool.name.split("_")[0]
        badges.setdefault(prefix if prefix in REGISTRY else "callsheet", set()).add(icon.src)
    assert badges["callsheet"] == {ours}
    provider_badges = [badges[name] for name in REGISTRY]
    assert all(len(b) == 1 for b in provider_badges)  # one badge per provider ...
    assert len(set().union(*provider_badges) | {ours}) == len(REGISTRY) + 1  # ... and no two alike


def tool_list_json(tools: list[Tool]) -> list[dict[str, Any]]:
    return [t.model_dump(mode="json", by_alias=True) for t in tools]


async def test_a_start_lists_the_tools_from_kept_schemas_and_builds_each_at_its_first_use(
    settings: Settings,
) -> None:
    first = create_app(settings, retry=FAST_RETRY, poll=FAST_POLL)
    assert not lazy_tools(first).unbuilt  # nothing kept yet: every tool built, its schemas kept
    async with Client(first) as client:
        built = tool_list_json((await client.list_tools()).tools)
    assert (settings.home / "cache" / ToolSchemas.FILE).is_file()

    again = create_app(settings, retry=FAST_RETRY, poll=FAST_POLL)
    assert lazy_tools(again).unbuilt == {t["name"] for t in built}
    image = settings.input_roots[0] / "look.png"
    image.write_bytes(png_bytes())
    async with Client(again) as client:
        assert tool_list_json((await client.list_tools()).tools) == built  # the same, to the byte
        unbuilt = lazy_tools(again).unbuilt | {"genapi_generate"}  # see below
        assert unbuilt == {t["name"] for t in built}  # listing builds nothing
        refused = await client.call_tool("fashn_edit", {"image": str(image), "prompt": "x", "colour": "red"})
        assert refused.is_error and "colour" in text(refused) and "unknown argument" in text(refused)
        done = await client.call_tool(
            "fashn_edit", {"image": str(image), "prompt": "red coat", "wait_seconds": 50}
        )
        assert not done.is_error and (done.structured_content or {})["status"] == "succeeded"
        now = lazy_tools(again).unbuilt
        assert now | {"genapi_generate"} == unbuilt - {"fashn_edit"}  # built at its first use
    # The Generation API's tool may be built again meanwhile: its tools are looked up as a session starts.


async def test_kept_schemas_are_not_trusted_from_other_code_or_a_damaged_file(settings: Settings) -> None:
    async with connect(settings) as client:
        built = tool_list_json((await client.list_tools()).tools)
    kept = settings.home / "cache" / ToolSchemas.FILE
    data = json.loads(kept.read_text())
    for entry in data["tools"].values():
        entry["input"] = {"type": "object", "properties": {"planted": {"type": "string"}}}
    for planted in (json.dumps(data | {"stamp": "other code"}), "{not json", json.dumps({"stamp": 1})):
        kept.write_text(planted)
        app = create_app(settings, retry=FAST_RETRY, poll=FAST_POLL)
        assert not lazy_tools(app).unbuilt
        async with Client(app) as client:
            assert tool_list_json((await client.list_tools()).tools) == built
        assert json.loads(kept.read_text())["stamp"] == ToolSchemas(None).stamp  # written anew


async def test_a_discovered_tool_is_not_listed_from_the_schema_kept_before_discovery(
    settings: Settings,
) -> None:
    for _ in range(2):  # the second start finds the undiscovered schema kept, then discovers again
        async with connect(settings) as client:
            tools = {t.name: t for t in await discovered_tools(client)}
        choices = tools["genapi_generate"].input_schema["properties"]["tool"]
        assert choices.get("enum"), choices


async def test_a_data_folder_that_cannot_keep_schemas_costs_only_the_time(settings: Settings) -> None:
    settings.home.mkdir(parents=True, exist_ok=True)
    (settings.home / "cache").write_text("a file where the folder would be")
    for _ in range(2):
        app = create_app(settings, retry=FAST_RETRY, poll=FAST_POLL)
        assert not lazy_tools(app).unbuilt
        async with Client(app) as client:
            assert len((await client.list_tools()).tools) > 30


def test_the_code_stamp_changes_with_any_source_file(tmp_path: Path) -> None:
    for package in ("server", "tools", "prompts"):
        (tmp_path / package).mkdir()
        (tmp_path / package / "a.py").write_text("x = 1\n")
    stamps = {_code_stamp(tmp_path)}
    (tmp_path / "tools" / "a.py").write_text("x = 22\n")  # another size
    stamps.add(_code_stamp(tmp_path))
    os.utime(tmp_path / "server" / "a.py", ns=(1, 1))  # another time
    stamps.add(_code_stamp(tmp_path))
    (tmp_path / "prompts" / "b.py").write_text("")  # another file
    stamps.add(_code_stamp(tmp_path))
    (tmp_path / "server" / "notes.md").write_text("not code")
    stamps.add(_code_stamp(tmp_path))
    assert len(stamps) == 4
