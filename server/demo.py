"""`callsheet demo`: a small shoot, end to end, in sandbox mode, through the MCP protocol.

It plays the assistant: an in-process MCP client calls the real tools of the real server (the
providers are the sandbox emulators), casts a model, tries two garments on, reframes both for
4:5, and prints where the outputs are. Like every MCP client it lives on the far side of the
protocol, which is why it imports `mcp.Client`.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

from mcp import Client

from server.app import create_app
from server.config import PROVIDERS, Settings
from server.sandbox.images import placeholder_png

GARMENTS = {
    "linen-dress": ["GARMENT", "linen slip dress", "ivory"],
    "wool-coat": ["GARMENT", "double-face wool coat", "camel"],
}


class ProgressBoard:
    """One line per step, redrawn as progress notifications arrive."""

    def __init__(self) -> None:
        self.last: dict[str, str] = {}
        self.started = time.monotonic()

    def callback(self, step: str) -> Any:
        async def on_progress(progress: float, total: float | None, message: str | None) -> None:
            self.show(step, progress / (total or 100), message or "")

        return on_progress

    def show(self, step: str, fraction: float, message: str) -> None:
        filled = int(max(0.0, min(1.0, fraction)) * 24)
        line = f"  {step:<22} [{'#' * filled}{'.' * (24 - filled)}] {fraction:>4.0%}  {message}"
        if self.last.get(step) != line:
            self.last[step] = line
            print(line, flush=True)


def demo_settings() -> Settings:
    """Sandbox for every provider, whatever keys the shell has: the demo never spends credits."""
    env = dict(os.environ)
    for p in PROVIDERS:
        env.pop(p.key_var, None)
        env.pop(p.url_var, None)
    env["CALLSHEET_SANDBOX"] = "1"
    return Settings.from_env(env)


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

    board = ProgressBoard()
    print(f"callsheet demo (sandbox: placeholder images, no credits spent)\ndata folder: {settings.home}\n")
    async with Client(create_app(settings)) as client:
        print("1. cast a model (fashn_model_create)")
        cast = await call(
            client,
            board,
            "cast",
            "fashn_model_create",
            {
                "prompt": "editorial model, 30s, short dark hair, relaxed confident pose",
                "aspect_ratio": "3:4",
                "wait_seconds": 50,
            },
        )
        model_uri = cast["outputs"][0]["uri"]

        print("\n2. try two garments on the cast model (fashn_tryon_max, in parallel)")
        tryon_ids = []
        for path in garments:
            job = await call(
                client,
                board,
                f"tryon {path.stem}",
                "fashn_tryon_max",
                {
                    "model_image": model_uri,
                    "product_image": str(path),
                    "wait_seconds": 0,
                },
            )
            tryon_ids.append(job["job_id"])
        tryons = await wait_all(client, board, "tryons", tryon_ids)

        print("\n3. reframe each look for 4:5 feeds (fashn_reframe)")
        reframe_ids = []
        for path, job in zip(garments, tryons, strict=True):
            reframed = await call(
                client,
                board,
                f"reframe {path.stem}",
                "fashn_reframe",
                {
                    "image": job["outputs"][0]["uri"],
                    "aspect_ratio": "4:5",
                    "wait_seconds": 0,
                },
            )
            reframe_ids.append(reframed["job_id"])
        reframes = await wait_all(client, board, "reframes", reframe_ids)

    jobs = [cast, *tryons, *reframes]
    failed = [j for j in jobs if j["status"] != "succeeded"]
    elapsed = time.monotonic() - board.started
    print(f"\n{len(jobs) - len(failed)} of {len(jobs)} jobs succeeded in {elapsed:.1f} s:")
    for job in jobs:
        for output in job["outputs"]:
            print(f"  {job['operation']:<14} {output['width']}x{output['height']}  {output['path']}")
    print(f"\noutputs are in {settings.media_dir}")
    return 1 if failed else 0


async def call(
    client: Client, board: ProgressBoard, step: str, tool: str, args: dict[str, Any]
) -> dict[str, Any]:
    result = await client.call_tool(tool, args, progress_callback=board.callback(step))
    if result.is_error or result.structured_content is None:
        text = " ".join(getattr(c, "text", "") for c in result.content)
        print(f"  {step}: {text}", file=sys.stderr)
        raise SystemExit(1)
    job: dict[str, Any] = result.structured_content
    board.show(step, job["progress"], job["status"])
    return job


async def wait_all(
    client: Client, board: ProgressBoard, step: str, job_ids: list[str]
) -> list[dict[str, Any]]:
    while True:
        result = await client.call_tool(
            "job_wait", {"job_ids": job_ids, "wait_seconds": 50}, progress_callback=board.callback(step)
        )
        data = result.structured_content or {}
        if result.is_error or not data.get("jobs"):
            print(f"  {step}: job_wait failed", file=sys.stderr)
            raise SystemExit(1)
        if not data["pending"]:
            board.show(step, 1.0, "done")
            jobs: list[dict[str, Any]] = data["jobs"]
            return jobs
