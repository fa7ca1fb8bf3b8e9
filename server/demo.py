"""`callsheet demo`: a campaign-launch shoot, end to end, in sandbox mode, through the MCP protocol.

It plays the assistant: an in-process MCP client validates and prices a campaign plan with
`shoot_validate`, starts it with `shoot_start`, follows it with `shoot_status` (a progress bar per
step) and prints the shoot folder and its contact sheet. The providers are the sandbox emulators,
so no credits are spent. Like every MCP client it lives on the far side of the protocol, which is
why it imports `mcp.Client`.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

from mcp import Client

from server.app import create_app
from server.config import Settings
from server.models import credits_text
from server.providers import REGISTRY
from server.sandbox.images import placeholder_png

GARMENTS = {
    "linen-dress": ["GARMENT", "linen slip dress", "ivory"],
    "wool-coat": ["GARMENT", "double-face wool coat", "camel"],
    "silk-shirt": ["GARMENT", "silk shirt", "sage"],
}


def demo_settings() -> Settings:
    """Sandbox for every provider, whatever keys the shell has: the demo never spends credits."""
    env = dict(os.environ)
    for p in REGISTRY.values():
        env.pop(p.key_var, None)
        env.pop(p.url_var, None)
    env["CALLSHEET_SANDBOX"] = "1"
    return Settings.from_env(env)


def campaign_plan(garments: list[Path], tools: set[str]) -> dict[str, Any]:
    """A campaign_launch-style plan: cast, hero, looks, moods, variations, video, cut-downs."""
    steps: list[dict[str, Any]] = [
        {
            "id": "cast",
            "tool": "fashn_model_create",
            "args": {"prompt": "editorial model, 30s, short dark hair, confident", "aspect_ratio": "3:4"},
        },
        {
            "id": "hero",
            "tool": "fashn_tryon_max",
            "args": {"model_image": "@cast.outputs[0]", "product_image": str(garments[0])},
        },
        {
            "id": "looks",
            "tool": "fashn_tryon_max",
            "for_each": [str(g) for g in garments[1:]],
            "args": {"model_image": "@cast.outputs[0]", "product_image": "@item"},
        },
        {
            "id": "cutdowns",
            "tool": "fashn_reframe",
            "for_each": ["9:16", "1:1"],
            "args": {"image": "@hero.outputs[0]", "aspect_ratio": "@item"},
        },
        {
            "id": "video",
            "tool": "fashn_image_to_video",
            "args": {"image": "@hero.outputs[0]", "duration": 5, "resolution": "480p"},
        },
    ]
    if "autotoon_relight" in tools:
        steps.append(
            {
                "id": "moods",
                "tool": "autotoon_relight",
                "for_each": ["golden-hour", "dramatic"],
                "args": {"base_image_url": "@hero.outputs[0]", "lighting": "@item"},
            }
        )
    if "genapi_generate" in tools:
        steps.append(
            {
                "id": "swap",
                "tool": "genapi_generate",
                "args": {
                    "tool": "fashion_swap",
                    "images": {"person": "@cast.outputs[0]", "clothes": str(garments[2])},
                },
            }
        )
    return {"name": "demo campaign launch", "budget_credits": 60, "steps": steps}


class Board:
    """One progress bar per step, printed when it changes."""

    def __init__(self) -> None:
        self.last: dict[str, str] = {}

    def show(self, shoot: dict[str, Any]) -> None:
        for step in shoot["steps"]:
            jobs = step["jobs"]
            share = sum(j["progress"] for j in jobs) / len(jobs) if jobs else 0.0
            filled = int(share * 24)
            line = f"  {step['id']:<10} [{'#' * filled}{'.' * (24 - filled)}] {share:>4.0%}  {step['status']}"
            if step.get("note"):
                line += f" ({step['note']})"
            if self.last.get(step["id"]) != line:
                self.last[step["id"]] = line
                print(line, flush=True)


async def run_demo() -> int:
    settings = demo_settings()
    garments_dir = settings.home / "demo" / "garments"
    garments_dir.mkdir(parents=True, exist_ok=True)
    garments: list[Path] = []
    for i, (name, label) in enumerate(GARMENTS.items()):
        path = garments_dir / f"{name}.png"
        if not path.exists():
            path.write_bytes(placeholder_png(768, 1024, label, seed=100 + i))
        garments.append(path)

    started = time.monotonic()
    print(f"callsheet demo (sandbox: placeholder images, no credits spent)\ndata folder: {settings.home}\n")
    async with Client(create_app(settings)) as client:
        tools = {t.name for t in (await client.list_tools()).tools}
        plan = campaign_plan(garments, tools)
        checked = await client.call_tool("shoot_validate", {"plan": plan})
        validation = checked.structured_content or {}
        if checked.is_error or not validation.get("ok"):
            print(f"the plan does not validate: {validation.get('problems')}", file=sys.stderr)
            return 1
        estimate = validation["estimate"]
        print(
            f"1. shoot_validate: {len(validation['jobs'])} jobs in {len(validation['waves'])} waves, "
            f"about {credits_text(estimate['total'])} {estimate['by_provider']}"
        )
        start = await client.call_tool("shoot_start", {"plan": plan, "confirm": True})
        if start.is_error or start.structured_content is None:
            print(" ".join(getattr(c, "text", "") for c in start.content), file=sys.stderr)
            return 1
        shoot_id = start.structured_content["shoot_id"]
        print(f"2. shoot_start: {shoot_id} (sandbox credits are free, so the price is confirmed)")
        print("3. shoot_status:")
        board = Board()
        shoot: dict[str, Any] = {}
        while True:
            status = await client.call_tool("shoot_status", {"shoot_id": shoot_id, "wait_seconds": 1})
            shoot = status.structured_content or {}
            if not shoot:
                print("shoot_status failed", file=sys.stderr)
                return 1
            board.show(shoot)
            if shoot["status"] != "running":
                break

    jobs = [j for s in shoot["steps"] for j in s["jobs"]]
    outputs = sum(len(j["outputs"]) for j in jobs)
    elapsed = time.monotonic() - started
    credits = shoot["credits_used"]
    print(
        f"\nshoot {shoot['status']}: {len(jobs)} jobs, {outputs} outputs, {credits_text(credits)}, ", end=""
    )
    print(f"{elapsed:.1f} s")
    print(f"shoot folder:  {shoot['folder']}")
    print(f"contact sheet: {shoot['contact_sheet']['path']}")
    print(f"               {shoot['contact_sheet']['html']}")
    return 0 if shoot["status"] == "succeeded" else 1
