"""Build callsheet's MCP bundle (`.mcpb`, for Claude Desktop and other hosts): `python -m bundle`.

The bundle is a zip the host unpacks and runs with its own Python 3.11, offline: `main.py` (the
entry point), `lib/` (callsheet and every dependency, installed by pip for this machine's platform
and Python), `icon.png` and `manifest.json` (what to run, the settings form, every tool and prompt).
The official MCPB tool (`@anthropic-ai/mcpb`, pinned in bundle/package.json) validates the manifest
and packs it. Compiled dependencies (pydantic-core, Pillow, PyAV) make a bundle specific to the
platform it was built on; build one per platform.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path
from typing import Any

import anyio
from mcp import Client
from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parent.parent
HERE = ROOT / "bundle"
MCPB = HERE / "node_modules" / ".bin" / "mcpb"
MANIFEST_VERSION = "0.3"
"""The newest manifest version hosts read today (the tool also knows 0.4, which adds only the `uv` type)."""
PLATFORMS = {"Linux": "linux", "Darwin": "darwin", "Windows": "win32"}

# The settings form: each provider's key (kept in the OS keychain), the folders input files may come
# from, and the data folder. Each maps to the environment variable callsheet reads.
USER_CONFIG: dict[str, dict[str, Any]] = {
    "fashn_api_key": {
        "type": "string",
        "title": "FASHN API key",
        "description": "From app.fashn.ai. Without it, FASHN runs in sandbox mode (free placeholders).",
        "sensitive": True,
        "required": False,
    },
    "autotoon_api_key": {
        "type": "string",
        "title": "Auto Toon API key",
        "description": "toon_... Without it, Auto Toon runs in sandbox mode.",
        "sensitive": True,
        "required": False,
    },
    "neofashion_api_key": {
        "type": "string",
        "title": "neo-fashion API key",
        "description": "ne_live_... or ne_test_... Without it, neo-fashion runs in sandbox mode.",
        "sensitive": True,
        "required": False,
    },
    "genapi_api_key": {
        "type": "string",
        "title": "Generation API key",
        "description": "The key of your self-hosted Generation API. Without it, it runs in sandbox mode.",
        "sensitive": True,
        "required": False,
    },
    "genapi_base_url": {
        "type": "string",
        "title": "Generation API URL",
        "description": "Where your self-hosted Generation API answers.",
        "default": "http://localhost:8000",
        "required": False,
    },
    "input_folders": {
        "type": "directory",
        "title": "Input folders",
        "description": "Folders that local input images may come from (default: your home folder).",
        "multiple": True,
        "required": False,
    },
    "data_folder": {
        "type": "directory",
        "title": "Data folder",
        "description": "Where jobs, outputs and shoot folders are kept (default: the user data folder).",
        "required": False,
    },
}
ENV = {
    "FASHN_API_KEY": "fashn_api_key",
    "AUTOTOON_API_KEY": "autotoon_api_key",
    "NEOFASHION_API_KEY": "neofashion_api_key",
    "GENAPI_API_KEY": "genapi_api_key",
    "GENAPI_BASE_URL": "genapi_base_url",
    "CALLSHEET_HOME": "data_folder",
}


def project() -> dict[str, Any]:
    with (ROOT / "pyproject.toml").open("rb") as file:
        return dict(tomllib.load(file)["project"])


async def surface() -> tuple[list[dict[str, str]], list[dict[str, Any]]]:
    """Every tool and prompt, as the server lists them with all four providers (in sandbox mode)."""
    from server.app import create_app
    from server.config import Settings

    with tempfile.TemporaryDirectory(prefix="callsheet-bundle-") as home:
        settings = Settings.from_env({"CALLSHEET_HOME": home, "CALLSHEET_SANDBOX": "1"})
        async with Client(create_app(settings)) as client:
            tools = (await client.list_tools()).tools
            prompts = (await client.list_prompts()).prompts
    return (
        [
            {"name": tool.name, "description": first_sentence(tool.description or tool.title or "")}
            for tool in tools
        ],
        [
            {
                "name": prompt.name,
                "description": first_sentence(prompt.description or ""),
                "arguments": [argument.name for argument in prompt.arguments or []],
                "text": template(prompt.name),
            }
            for prompt in prompts
        ],
    )


def template(name: str) -> str:
    """The prompt's editable template (prompts/<name>.md), as the manifest shows it."""
    path = ROOT / "prompts" / f"{name}.md"
    return path.read_text() if path.exists() else f"callsheet's {name} prompt."


def first_sentence(text: str) -> str:
    sentence, dot, _ = " ".join(text.split()).partition(". ")
    return sentence + ("." if dot else "")


def manifest(tools: list[dict[str, str]], prompts: list[dict[str, Any]]) -> dict[str, Any]:
    meta = project()
    author = meta.get("authors", [{"name": "The callsheet team"}])[0]
    python = f"{sys.version_info.major}.{sys.version_info.minor}"
    return {
        "manifest_version": MANIFEST_VERSION,
        "name": "callsheet",
        "display_name": "callsheet",
        "version": meta["version"],
        "description": meta["description"],
        "long_description": (
            "Plan and run fashion photo and video shoots through FASHN, Auto Toon, neo-fashion.ai and a "
            "self-hosted Generation API: every generation is a durable job (never paid twice, resumed after "
            "a restart), shot lists run as shoots with a contact sheet. Without API keys every provider "
            "runs in sandbox mode, so you can try it for free."
        ),
        "author": {"name": author.get("name", "The callsheet team")},
        "license": meta.get("license", "MIT"),
        "icon": "icon.png",
        "keywords": ["fashion", "photo", "video", "virtual try-on", "generation", "shoot"],
        "server": {
            "type": "python",
            "entry_point": "main.py",
            "mcp_config": {
                "command": "python3",
                "args": ["${__dirname}/main.py", "${user_config.input_folders}"],
                "env": {name: f"${{user_config.{key}}}" for name, key in ENV.items()},
                "platform_overrides": {"win32": {"command": "python"}},
            },
        },
        "tools": tools,
        "prompts": prompts,
        "user_config": USER_CONFIG,
        "compatibility": {
            "platforms": [PLATFORMS.get(platform.system(), platform.system().lower())],
            "runtimes": {"python": f">={python} <{python.split('.')[0]}.{int(python.split('.')[1]) + 1}"},
        },
    }


def icon(path: Path) -> None:
    """A clapperboard on callsheet's colour, drawn here so the repository holds no binary."""
    size = 256
    image = Image.new("RGBA", (size, size), (0, 0, 0, 0))
    draw = ImageDraw.Draw(image)
    draw.rounded_rectangle((8, 8, size - 8, size - 8), radius=48, fill=(28, 28, 36, 255))
    draw.rectangle((52, 112, 204, 200), fill=(245, 240, 232, 255))
    for n in range(4):  # the clapper's stripes
        x = 52 + n * 40
        draw.polygon([(x, 72), (x + 24, 72), (x + 40, 104), (x + 16, 104)], fill=(245, 240, 232, 255))
    draw.rectangle((52, 104, 204, 112), fill=(214, 64, 92, 255))
    image.save(path, "PNG", optimize=True)


def mcpb(*args: str) -> None:
    if not MCPB.exists():
        subprocess.run(["npm", "ci", "--silent", "--no-audit", "--no-fund"], cwd=HERE, check=True)
    subprocess.run([str(MCPB), *args], check=True)


def build(out: Path) -> Path:
    """Stage, validate and pack the bundle into `out`; returns the .mcpb file."""
    meta = project()
    target = PLATFORMS.get(platform.system(), platform.system().lower())
    bundle = out / f"callsheet-{meta['version']}-{target}-{platform.machine().lower()}.mcpb"
    with tempfile.TemporaryDirectory(prefix="callsheet-bundle-") as tmp:
        stage = Path(tmp) / "callsheet"
        stage.mkdir()
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "install",
                "--quiet",
                "--no-compile",
                "--target",
                str(stage / "lib"),
                str(ROOT),
            ],
            check=True,
        )
        shutil.rmtree(stage / "lib" / "bin", ignore_errors=True)  # console scripts with this machine's paths
        shutil.copy(HERE / "main.py", stage / "main.py")
        icon(stage / "icon.png")
        tools, prompts = anyio.run(surface)
        (stage / "manifest.json").write_text(json.dumps(manifest(tools, prompts), indent=2) + "\n")
        mcpb("validate", str(stage / "manifest.json"))
        out.mkdir(parents=True, exist_ok=True)
        mcpb("pack", str(stage), str(bundle))
    return bundle


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bundle", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out", type=Path, default=ROOT / "dist", help="folder for the .mcpb (default: dist/)"
    )
    args = parser.parse_args(argv)
    print(build(args.out.resolve()))
    return 0
