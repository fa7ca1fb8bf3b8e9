"""An assistant that knows nothing but the tool list: it builds each call from the tool's input schema
(types, enums, bounds, descriptions) and, when a call is refused, reads the error and fixes the call,
as a model does. What it may read in a description is what the server's conventions promise: an
"Image reference" / "Image URL" argument, and an id whose description names the tool that lists them.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from mcp import Client
from mcp_types import CallToolResult, TextContent, Tool

LISTING_TOOL = re.compile(r"\b([a-z]+_(?:models|personas))\b")
QUOTED = re.compile(r"'([A-Za-z_][\w.-]*)'")


def text(result: CallToolResult) -> str:
    return " ".join(c.text for c in result.content if isinstance(c, TextContent))


class SchemaDriver:
    def __init__(self, client: Client, tools: list[Tool], image_path: Path, image_url: str) -> None:
        self.client = client
        self.tools = {t.name: t for t in tools}
        self.image_path = image_path
        self.image_url = image_url
        self.calls: list[tuple[str, dict[str, Any], str]] = []
        """Every call made: (tool, arguments, error text or "")."""

    async def run(self, tool: str, attempts: int = 4) -> CallToolResult:
        """Call `tool` with arguments built from its schema, fixing them from each refusal."""
        schema = self.tools[tool].input_schema
        args = await self._object(schema, required_only=True)
        for _ in range(attempts):
            result = await self.client.call_tool(tool, args)
            self.calls.append((tool, args, text(result) if result.is_error else ""))
            if not result.is_error or not await self._fix(schema, args, text(result)):
                return result
        return result

    async def _fix(self, schema: dict[str, Any], args: dict[str, Any], error: str) -> bool:
        """Add an argument the error names, or use a name it quotes where the schema leaves one open."""
        props = schema.get("properties", {})
        for name in props:
            if name not in args and re.search(rf"\b{re.escape(name)}\b", error):
                args[name] = await self._value(name, props[name])
                return True
        quoted = [q for q in QUOTED.findall(error) if q not in args]
        for name, value in args.items():  # a list of {name-like key: ...} items: the API's own names
            items = props.get(name, {}).get("items", {})
            key = next(iter(items.get("required", [])), None)
            if quoted and isinstance(value, list) and value and key and value[0].get(key) != quoted[0]:
                value[0][key] = quoted[0]
                return True
        return False

    async def _object(self, schema: dict[str, Any], required_only: bool) -> dict[str, Any]:
        props = schema.get("properties", {})
        names = schema.get("required", []) if required_only else list(props)
        return {name: await self._value(name, props[name]) for name in names}

    async def _value(self, name: str, schema: dict[str, Any]) -> Any:
        kinds = schema.get("type", "string")
        kind = next(k for k in ([kinds] if isinstance(kinds, str) else kinds) if k != "null")
        description = schema.get("description", "")
        if "enum" in schema:
            return next(v for v in schema["enum"] if v is not None)
        if kind == "string":
            if "Image URL" in description:
                return self.image_url
            if "Image reference" in description:
                return str(self.image_path)
            listing = LISTING_TOOL.search(description)
            if name.endswith("_id") and listing and listing.group(1) in self.tools:
                return await self._first_id(listing.group(1))
            return "an editorial test shot"
        if kind in ("integer", "number"):
            return schema.get("minimum", 1)
        if kind == "boolean":
            return False
        if kind == "array":
            item = {"description": description, **schema.get("items", {})}  # an image list says so once
            return [await self._value(name, item) for _ in range(schema.get("minItems", 1))]
        if kind == "object":
            return await self._object(schema, required_only=True)
        raise AssertionError(f"{name}: no value for a schema of type {kind}")

    async def _first_id(self, listing_tool: str) -> str:
        result = await self.client.call_tool(listing_tool, {})
        found = re.search(r'"id":\s*"([^"]+)"', text(result))
        assert found, f"{listing_tool} listed no id: {text(result)[:300]}"
        return found.group(1)
