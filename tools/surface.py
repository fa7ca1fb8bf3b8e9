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

Start-up: the SDK builds that model (pydantic) for every tool to publish its schema, about 2 ms a tool
and most of what building the server costs. The published schemas are kept in the data folder
(`ToolSchemas`), so a start lists the tools from them and builds each tool's model at its first use
(`LazyTools`).
"""

from __future__ import annotations

import base64
import hashlib
import inspect
import json
import logging
import re
import sys
from collections.abc import Callable
from functools import cache
from importlib.metadata import version
from pathlib import Path
from typing import Annotated, Any

import pydantic
from mcp.server.apps import Apps
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.tools import Tool as Registered
from mcp.server.mcpserver.tools import ToolManager
from mcp.server.mcpserver.utilities.func_metadata import func_metadata
from mcp_types import CallToolResult, Icon, Tool, ToolAnnotations
from pydantic import BaseModel

from server import __version__, paths
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
    name = name or fn.__name__
    if description is None and fn.__doc__:
        description = " ".join(fn.__doc__.split())  # the docstring, without its source indentation

    def build() -> Registered:
        tool = Registered.from_function(
            fn,
            name=name,
            title=title,
            description=description,
            annotations=annotations,
            icons=icons,
            meta=meta,
        )
        tool.parameters = compact(tool.parameters)
        if output is not None:
            tool.fn_metadata.output_model = output
            tool.fn_metadata.output_schema = _output_schema(output)
        elif tool.fn_metadata.output_schema is not None:
            tool.fn_metadata.output_schema = _untitled(tool.fn_metadata.output_schema)
        return tool

    # What the schemas are made from: the signature (a discovered tool's own; function addresses
    # differ from run to run) and the output model.
    made_from = re.sub(
        r" at 0x[0-9a-f]+", "", f"{name}{inspect.signature(fn)}->{output and output.__qualname__}"
    )
    listing = {"fn": fn, "name": name, "title": title, "description": description or ""}
    listing |= {"annotations": annotations, "icons": icons, "meta": meta}
    lazy_tools(app).add(listing, made_from, build)


@cache
def _output_schema(model: type[BaseModel]) -> dict[str, Any] | None:
    """What the SDK publishes as `outputSchema` for a tool whose result is `model`, without the titles
    pydantic makes up from class and field names (an eighth of every tool list's bytes)."""

    async def returns() -> None: ...

    annotation = Annotated[CallToolResult, model]
    returns.__signature__ = inspect.Signature(return_annotation=annotation)  # type: ignore[attr-defined]
    returns.__annotations__ = {"return": annotation}
    schema = func_metadata(returns).output_schema
    return None if schema is None else _untitled(schema)


def _untitled(node: Any) -> Any:
    """`node` without its `title` annotations (a property called "title" is a schema, and stays)."""
    if isinstance(node, dict):
        return {k: _untitled(v) for k, v in node.items() if not (k == "title" and isinstance(v, str))}
    if isinstance(node, list):
        return [_untitled(item) for item in node]
    return node


class ToolSchemas:
    """Each tool's published schemas (compact input, output) by what they are made from, kept in
    `folder` from one start to the next. They are used only under the same code (every source file
    of callsheet, by size and time), the same mcp, pydantic and Python: anything else, or a file that
    cannot be read, means building them again. Nothing is kept when the folder cannot be written."""

    FILE = "tool-schemas.json"

    def __init__(self, folder: Path | None) -> None:
        self.path = folder / self.FILE if folder is not None else None
        self.stamp = _code_stamp()
        self.kept: dict[str, Any] = {}
        self.made: dict[str, Any] = {}
        if self.path is not None:
            try:
                data = json.loads(self.path.read_text(encoding="utf-8"))
                if data.get("stamp") == self.stamp:
                    outputs = data["outputs"]  # each output schema once: 34 tools share the Job's
                    self.kept = {
                        made_from: {"input": entry["input"], "output": None if n is None else outputs[n]}
                        for made_from, entry in data["tools"].items()
                        for n in [entry["output"]]
                    }
            except (OSError, ValueError, KeyError, TypeError, AttributeError, IndexError):
                pass  # none yet, or damaged: built again and written anew

    def get(self, made_from: str) -> tuple[dict[str, Any], dict[str, Any] | None] | None:
        entry = self.kept.get(made_from)
        if not isinstance(entry, dict) or not isinstance(entry.get("input"), dict):
            return None
        self.made[made_from] = entry
        return entry["input"], entry.get("output")

    def put(self, made_from: str, tool: Registered) -> None:
        self.made[made_from] = {"input": tool.parameters, "output": tool.output_schema}

    def save(self) -> None:
        """Write what this start used, if anything was built (atomically: replicas may share a folder)."""
        if self.path is None or self.made.keys() <= self.kept.keys():
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            outputs: list[dict[str, Any]] = []
            tools = {}
            for made_from, entry in self.made.items():
                output = entry["output"]
                if output is not None and output not in outputs:
                    outputs.append(output)
                n = None if output is None else outputs.index(output)
                tools[made_from] = {"input": entry["input"], "output": n}
            data = {"stamp": self.stamp, "outputs": outputs, "tools": tools}
            folder = self.path.parent.resolve()
            paths.write_atomic(folder, folder / self.FILE, json.dumps(data).encode())
        except OSError as exc:
            logging.getLogger(__name__).debug("tool schemas not kept: %s", exc)
        self.kept = dict(self.made)


SOURCE_ROOT = Path(__file__).resolve().parent.parent


def _code_stamp(root: Path = SOURCE_ROOT) -> str:
    """What every kept schema depends on: callsheet's source files and the libraries that build them."""
    parts = [__version__, sys.version, version("mcp"), pydantic.VERSION]
    for package in ("server", "tools", "prompts"):
        for path in sorted((root / package).rglob("*.py")):
            info = path.stat()
            parts.append(f"{path.relative_to(root)}:{info.st_size}:{info.st_mtime_ns}")
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


class LazyTools(ToolManager):
    """The SDK's tool manager, where a tool whose schemas were kept is listed from them and built at
    its first use: `get_tool`, through which the SDK and callsheet reach a tool to check or call it."""

    def __init__(self, schemas: ToolSchemas, *, warn_on_duplicate_tools: bool) -> None:
        super().__init__(warn_on_duplicate_tools=warn_on_duplicate_tools)
        self.schemas = schemas
        self._builds: dict[str, Callable[[], Registered]] = {}

    def add(self, listing: dict[str, Any], made_from: str, build: Callable[[], Registered]) -> None:
        """A tool: `listing` is what clients see of it but its schemas, `build` makes the whole tool."""
        name = listing["name"]
        if name in self._tools:
            if self.warn_on_duplicate_tools:
                logging.getLogger(__name__).warning("Tool already exists: %s", name)
            return
        kept = self.schemas.get(made_from)
        if kept is None:
            tool = build()
            self.schemas.put(made_from, tool)
            self._tools[name] = tool
            return
        # Listed as it is kept; never run as it is (get_tool builds it first), so no argument model.
        shell = Registered.model_construct(**listing, parameters=kept[0], is_async=True)
        shell.__dict__["output_schema"] = kept[1]  # the SDK's cached property
        self._tools[name] = shell
        self._builds[name] = build

    @property
    def unbuilt(self) -> set[str]:
        """The tools listed from kept schemas and not used yet."""
        return set(self._builds)

    def get_tool(self, name: str) -> Registered | None:
        build = self._builds.pop(name, None)
        if build is not None:
            self._tools[name] = build()
        return super().get_tool(name)

    def remove_tool(self, name: str) -> None:
        self._builds.pop(name, None)
        super().remove_tool(name)


def lazy_tools(app: MCPServer, folder: Path | None = None) -> LazyTools:
    """The app's `LazyTools`, put in place of the SDK's manager the first time (with schemas kept in
    `folder`; none kept when no folder is given)."""
    manager = app._tool_manager
    if not isinstance(manager, LazyTools):
        if manager.list_tools():
            raise RuntimeError("lazy_tools must be put in place before any tool is registered")
        manager = LazyTools(ToolSchemas(folder), warn_on_duplicate_tools=manager.warn_on_duplicate_tools)
        app._tool_manager = manager
    return manager


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
