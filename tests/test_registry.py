"""server.json, the MCP Registry's description of callsheet, against the registry's published schema
(a pinned copy in bundle/registry/), and against what callsheet really is."""

from __future__ import annotations

import copy
import hashlib
import json
import tomllib
from pathlib import Path
from typing import Any

import jsonschema
import pytest

ROOT = Path(__file__).resolve().parent.parent
PINNED = ROOT / "bundle" / "registry" / "server.schema.json"
SCHEMA = json.loads(PINNED.read_text())
PUBLISHED_SHA256 = "3fba09590c99f61735d234822279f4223fab9e300c0a81e81c91ab62a4114de0"
"""Of the file at its `$id`, https://static.modelcontextprotocol.io/schemas/2025-12-11/... (see
bundle/registry/README.md)."""


def server_json() -> dict[str, Any]:
    return dict(json.loads((ROOT / "server.json").read_text()))


def problems(document: dict[str, Any]) -> list[str]:
    validator = jsonschema.Draft7Validator(SCHEMA, format_checker=jsonschema.Draft7Validator.FORMAT_CHECKER)
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(document)]


def test_server_json_is_valid_against_the_registrys_schema() -> None:
    assert hashlib.sha256(PINNED.read_bytes()).hexdigest() == PUBLISHED_SHA256  # the published bytes
    document = server_json()
    assert document["$schema"] == SCHEMA["$id"]
    assert problems(document) == []


@pytest.mark.parametrize(
    ("change", "where"),
    [
        (lambda d: d.update(name="callsheet"), "name"),  # not reverse-DNS
        (lambda d: d.update(description="x" * 101), "description"),
        (lambda d: d["packages"][0].update(version="latest"), "packages/0"),
        (lambda d: d["packages"][0].pop("transport"), "packages/0"),
        # The 2025-09-29 form of a deployment's address: since 2025-12-11 a remote URL starts https://.
        (lambda d: d["remotes"][0].update(url="{CALLSHEET_PUBLIC_URL}/mcp"), "remotes/0"),
    ],
)
def test_the_schema_is_in_force(change: Any, where: str) -> None:
    """The pinned schema refuses what the registry refuses (so the test above can fail)."""
    document = copy.deepcopy(server_json())
    change(document)
    assert any(problem.startswith(where) for problem in problems(document)), problems(document)


def test_server_json_says_what_callsheet_is() -> None:
    document = server_json()
    with (ROOT / "pyproject.toml").open("rb") as file:
        project = tomllib.load(file)["project"]
    package = document["packages"][0]
    assert document["version"] == package["version"] == project["version"]
    assert package["identifier"] == project["name"] and package["registryType"] == "pypi"
    assert package["runtimeHint"] == "uvx" and package["packageArguments"][0]["value"] == "serve"
    assert "callsheet" in project["scripts"]  # uvx runs the package's console script
    variables = {v["name"]: v for v in package["environmentVariables"]}
    readme = (ROOT / "README.md").read_text()
    for name, variable in variables.items():
        assert f"`{name}`" in readme, f"{name} is not documented in the README"
        assert variable.get("isSecret", False) == name.endswith("_API_KEY"), name
    assert {f"{p.upper()}_API_KEY" for p in ("fashn", "autotoon", "neofashion", "genapi")} <= set(variables)
    remote = document["remotes"][0]
    assert remote["type"] == "streamable-http" and remote["url"] == "https://{host}/mcp"
    assert remote["variables"]["host"]["isRequired"] and "CALLSHEET_PUBLIC_URL" in readme
