"""What clients show of the tools, said once: compact input schemas, icons and views in the chat.

Every tool is registered through `publish`. The SDK generates each input schema from the tool's
signature (pydantic); what the model reads is then made compact and strict, the same way for all:
- references are inlined (no `$defs`), generated `title`s are dropped;
- an optional field is its own type plus `null` (`"type": ["string", "null"]`), not an `anyOf`;
- every object with declared properties is closed (`additionalProperties: false`), so OpenAI's
  strict mode accepts the schema as it is;
- the length cap every text argument has is not repeated on each: the server still checks it.

Icons are small SVGs drawn here (no binary files, nothing fetched): callsheet's clapperboard for the
server and its own tools, and each provider's badge (its `badge` letters and colour) on its tools.

Views (MCP Apps): the shoot tools carry `ui://callsheet/shoot-board.html`, the generation and job
tools `ui://callsheet/job.html`; both are `board.html` (one self-contained page), served by the SDK's
`Apps` extension. Clients without MCP Apps ignore the binding and get the same results.

Validation is unchanged: the SDK checks calls against the signature's model, and a generation
tool's call against the provider's input model (`server.app._ArgumentCheck`).
"""

from __future__ import annotations

import base64
import inspect
import json
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Annotated, Any

from mcp.server.apps import Apps
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.utilities.func_metadata import func_metadata
from mcp_types import CallToolResult, Icon, Tool, ToolAnnotations
from pydantic import BaseModel

from server.contact_sheet import LOOK_CSS
from server.policy import MAX_TEXT_CHARS
from server.providers import REGISTRY

SHOOT_BOARD = "ui://callsheet/shoot-board.html"
JOB_VIEW = "ui://callsheet/job.html"

HIDDEN_MAX_LENGTH = MAX_TEXT_CHARS
"""A `maxLength` at or above this is the cap every text argument has (or one for data URIs): said
once in the server's conventions, not on every field."""

SHARED_ARGUMENTS = ("wait_seconds", "force")
"""Arguments every generation tool takes, described once in the server's conventions, not on each."""

_NULL = {"type": "null"}


def publish(
    app: MCPServer,
    fn: Callable[..., Any],
    *,
    title: str,
    annotations: ToolAnnotations,
    name: str | None = None,
    description: str | None = None,
    provider: str | None = None,
    view: str | None = None,
    output: type[BaseModel] | None = None,
) -> None:
    """Register `fn` as a tool with a compact input schema, its icon (the badge of `provider`, or
    callsheet's own) and its `view` in the chat (see the module's docstring). `output`: the model of
    the structured result of an `fn` that returns a plain `CallToolResult`; its schema is the SDK's
    own, made once for every tool that shares it (the SDK makes it again for each tool: 3-4 ms)."""
    icons = provider_icons(provider) if provider else server_icons()
    meta = {"ui": {"resourceUri": view}} if view else None
    if description is None and fn.__doc__:
        description = " ".join(fn.__doc__.split())  # the docstring, without its source indentation
    tool = app._tool_manager.add_tool(  # the SDK's public add_tool returns nothing to adjust
        fn, name=name, title=title, description=description, annotations=annotations, icons=icons, meta=meta
    )
    tool.parameters = compact(tool.parameters)
    if output is not None:
        tool.fn_metadata.output_model = output
        tool.fn_metadata.output_schema = _output_schema(output)


@cache
def _output_schema(model: type[BaseModel]) -> dict[str, Any] | None:
    """What the SDK publishes as `outputSchema` for a tool whose result is `model`."""

    async def returns() -> None: ...

    annotation = Annotated[CallToolResult, model]
    returns.__signature__ = inspect.Signature(return_annotation=annotation)  # type: ignore[attr-defined]
    returns.__annotations__ = {"return": annotation}
    return func_metadata(returns).output_schema


def model_facing_bytes(tools: list[Tool]) -> int:
    """What the model reads of `tools` (name, title, description, input schema), as compact JSON bytes:
    the figure the tool surface is held to."""
    part = [
        {"name": t.name, "title": t.title, "description": t.description, "inputSchema": t.input_schema}
        for t in tools
    ]
    return len(json.dumps(part, separators=(",", ":")).encode())


def compact(schema: dict[str, Any]) -> dict[str, Any]:
    """`schema` as the model should read it: same meaning, fewer bytes, strict-mode ready."""
    defs: dict[str, Any] = schema.get("$defs", {})

    def node(given: dict[str, Any]) -> dict[str, Any]:
        ref = given.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/$defs/"):
            given = {**defs[ref.removeprefix("#/$defs/")], **{k: v for k, v in given.items() if k != "$ref"}}
        out: dict[str, Any] = {}
        for key, value in given.items():
            if key in ("title", "$defs") or (key == "default" and value is None):
                continue
            if key == "maxLength" and value >= HIDDEN_MAX_LENGTH:
                continue
            if key == "properties":
                out[key] = {field: node(sub) for field, sub in value.items()}
            elif key in ("items", "additionalProperties") and isinstance(value, dict):
                out[key] = node(value)
            elif key in ("anyOf", "oneOf", "allOf"):
                out[key] = [node(sub) for sub in value]
            else:
                out[key] = value
        out = _nullable(out)
        if out.get("type") == "object" and "properties" in out:
            out.setdefault("additionalProperties", False)
        return out

    return node(schema)


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    """An `anyOf` with a `null` branch, without it: `null` joins the type (and enum) of the last
    branch that has one plain type; a single branch left replaces the `anyOf`."""
    branches = schema.get("anyOf")
    if not isinstance(branches, list) or _NULL not in branches:
        return schema
    others = [b for b in branches if b != _NULL]
    plain = [n for n, b in enumerate(others) if isinstance(b.get("type"), str) and "anyOf" not in b]
    if not plain:
        return schema
    last = others[plain[-1]]
    others[plain[-1]] = {**last, "type": [last["type"], "null"]}
    if "enum" in last:
        others[plain[-1]]["enum"] = [*last["enum"], None]
    rest = {k: v for k, v in schema.items() if k != "anyOf"}
    return {**others[0], **rest} if len(others) == 1 else {"anyOf": others, **rest}


CLAPPERBOARD = (
    '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 64 64"><rect x="2" y="2" width="60" height="60" '
    'rx="12" fill="#1c1c24"/><path d="M13 28h38v22H13z" fill="#f5f0e8"/><path d="M13 26h38v2H13z" '
    'fill="#d6405c"/><path d="M13 18h6l4 8h-6zm10 0h6l4 8h-6zm10 0h6l4 8h-6zm10 0h6l2 4v4h-4z" '
    'fill="#f5f0e8"/></svg>'
)
"""callsheet's mark (the MCPB bundle draws the same as a PNG, `bundle/build.py`)."""


def _data_uri(svg: str) -> list[Icon]:
    data = base64.b64encode(svg.encode()).decode()
    return [Icon(src=f"data:image/svg+xml;base64,{data}", mime_type="image/svg+xml", sizes=["any"])]


@cache
def server_icons() -> list[Icon]:
    return _data_uri(CLAPPERBOARD)


def provider_icons(provider: str) -> list[Icon]:
    adapter = REGISTRY[provider]
    letters, colour = adapter.badge
    return _badge(letters or "".join(w[0] for w in adapter.title.split()[:2]).upper(), colour)


@cache
def _badge(letters: str, colour: str) -> list[Icon]:
    """A provider's badge: its letters on its colour."""
    size = 30 if len(letters) < 2 else 24
    return _data_uri(
        '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 64 64">'
        f'<rect x="2" y="2" width="60" height="60" rx="12" fill="{colour}"/>'
        f'<text x="32" y="{32 + size * 0.36:.0f}" font-family="Helvetica,Arial,sans-serif" '
        f'font-size="{size}" font-weight="700" text-anchor="middle" fill="#fff">{letters}</text></svg>'
    )


def views() -> Apps:
    """The MCP Apps extension with callsheet's two views: one page, told which it is."""
    page = (Path(__file__).with_name("board.html")).read_text(encoding="utf-8")
    page = page.replace("/* callsheet look */", LOOK_CSS.read_text(encoding="utf-8"))
    apps = Apps()
    for uri, view, title, what in (
        (SHOOT_BOARD, "shoot", "Shoot board", "the plan's steps with live status, every output, actions"),
        (JOB_VIEW, "job", "Job", "a job's status, its outputs, cancel"),
    ):
        html = page.replace('<body data-view="shoot">', f'<body data-view="{view}">')
        apps.add_html_resource(
            uri, html, name=uri.rsplit("/", 1)[-1], title=title, description=f"In the chat: {what}."
        )
    return apps
