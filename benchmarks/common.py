"""What every benchmark shares: sandbox settings, scaled policies, request logging, figures.

Sandbox providers run their documented latencies and limit windows times `time_scale`; the engine's
poll floor and ceiling and the retry backoff are real seconds, so the benchmarks scale them by the
same factor (otherwise a 0.5 s poll floor would stand for 10 s of provider time at scale 0.05).
"""

from __future__ import annotations

import io
import json
import math
import os
import re
import statistics
import time
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from PIL import Image
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from server.config import Settings
from server.policy import PollPolicy, RetryPolicy
from server.providers.fashn.emulator import COMPLETED, FashnEmulator

SEED = 0
"""The FASHN emulator's default seed: prediction n's duration is drawn from `random.Random(f"{SEED}:{n}")`."""


def sandbox_settings(home: Path, inputs: Path, time_scale: float) -> Settings:
    """Every provider without a key in sandbox mode, data in `home`, input files from `inputs`."""
    inputs.mkdir(parents=True, exist_ok=True)
    return Settings.from_env(sandbox_env(home, inputs, time_scale))  # it reads no PATH, HOME, ...


def sandbox_env(home: Path, inputs: Path, time_scale: float) -> dict[str, str]:
    """The configuration of `sandbox_settings` as environment variables (with PATH, HOME, LANG and
    TMPDIR passed on), for `callsheet serve` in a subprocess."""
    env = {
        "CALLSHEET_HOME": str(home),
        "CALLSHEET_INPUT_ROOTS": str(inputs),
        "CALLSHEET_SANDBOX": "1",
        "CALLSHEET_SANDBOX_TIME_SCALE": str(time_scale),
    }
    for name in ("PATH", "HOME", "LANG", "TMPDIR"):
        if name in os.environ:
            env[name] = os.environ[name]
    return env


def scaled_poll(time_scale: float, base: PollPolicy | None = None) -> PollPolicy:
    """`base` (the shipped default) with its floor and ceiling in scaled time, like everything else."""
    base = base or PollPolicy()
    return replace(base, floor=base.floor * time_scale, ceiling=base.ceiling * time_scale)


def scaled_retry(time_scale: float) -> RetryPolicy:
    """The shipped retry backoff, in scaled time."""
    default = RetryPolicy()
    return replace(default, base=default.base * time_scale, cap=default.cap * time_scale)


def png_bytes(width: int, height: int, color: tuple[int, int, int]) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (width, height), color).save(buf, format="PNG")
    return buf.getvalue()


def write_inputs(inputs: Path) -> tuple[Path, Path]:
    """A model photo and a garment photo inside the input roots."""
    inputs.mkdir(parents=True, exist_ok=True)
    model, garment = inputs / "model.png", inputs / "dress.png"
    model.write_bytes(png_bytes(64, 96, (220, 180, 160)))
    garment.write_bytes(png_bytes(64, 96, (10, 120, 200)))
    return model, garment


def rss_mb() -> float:
    """Resident set size of this process now (VmRSS), in MiB."""
    status = Path("/proc/self/status")
    if status.exists():
        match = re.search(r"^VmRSS:\s+(\d+)\s+kB", status.read_text(), re.MULTILINE)
        if match:
            return int(match.group(1)) / 1024
    import resource  # not on every platform; peak rather than current RSS

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def percentile(values: Iterable[float], q: float) -> float:
    """The q-th percentile (0-100), nearest rank: a value that really occurred."""
    ordered = sorted(values)
    if not ordered:
        return math.nan
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def median(values: Iterable[float]) -> float:
    return float(statistics.median(list(values)))


@dataclass
class RequestLog:
    """Wraps a sandbox ASGI app and records (monotonic start, end, method, path) of every request,
    and the answer of every refused one (`refusals`: start, path, status, body)."""

    app: ASGIApp
    entries: list[tuple[float, float, str, str]] = field(default_factory=list)
    refusals: list[tuple[float, str, int, str]] = field(default_factory=list)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.monotonic()
        status = 0

        async def watch(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            elif message["type"] == "http.response.body" and status >= 400:
                body = bytes(message.get("body", b"")).decode("utf-8", "replace")
                self.refusals.append((started, scope["path"], status, body[:300]))
            await send(message)

        try:
            await self.app(scope, receive, watch)
        finally:
            self.entries.append((started, time.monotonic(), scope["method"], scope["path"]))


@dataclass
class CdnCache:
    """Serves the FASHN emulator's CDN files from memory after the first file of each kind.

    The emulator draws every placeholder on demand, on the CPU that also runs the server under test;
    FASHN's CDN costs the client only the transfer. Drawing (50-250 ms a file on a small machine,
    not scaled) would otherwise count as orchestration time against scaled 1-5 s predictions. A file
    is served from the cache only for a completed prediction whose output has the same model, size and
    format as one already drawn; everything else goes to the emulator.
    """

    emulator: FashnEmulator
    app: ASGIApp
    _files: dict[tuple[str, int, int, str], tuple[bytes, list[tuple[bytes, bytes]]]] = field(
        default_factory=dict
    )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        key = self._key(scope)
        if key is None:
            await self.app(scope, receive, send)
            return
        cached = self._files.get(key)
        if cached is not None:
            body, headers = cached
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            await send({"type": "http.response.body", "body": body})
            return
        start: dict[str, Any] = {}
        chunks: list[bytes] = []

        async def capture(message: Message) -> None:
            if message["type"] == "http.response.start":
                start.update(message)
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))
            await send(message)

        await self.app(scope, receive, capture)
        if start.get("status") == 200:
            self._files[key] = (b"".join(chunks), list(start.get("headers", [])))

    def _key(self, scope: Scope) -> tuple[str, int, int, str] | None:
        if scope["type"] != "http":
            return None
        match = re.fullmatch(r"/cdn/([^/]+)/output_(\d+)\.(\w+)", scope["path"])
        if match is None:
            return None
        prediction = self.emulator.stats.predictions.get(match.group(1))
        n = int(match.group(2))
        if (
            prediction is None
            or n >= len(prediction.outputs)
            or prediction.state(time.monotonic()) != COMPLETED
        ):
            return None
        out = prediction.outputs[n]
        if out.ext != match.group(3):
            return None
        return prediction.model_name, out.width, out.height, out.ext


class Report:
    """Prints each figure as it is measured and keeps it for `results.json`."""

    def __init__(self) -> None:
        self.sections: dict[str, dict[str, Any]] = {}
        self._current: dict[str, Any] = {}

    def section(self, key: str, title: str | None = None) -> None:
        """Figures from now on go to section `key`; `title` is printed as its heading."""
        self._current = self.sections.setdefault(key, {})
        if title is not None:
            print(f"\n== {title}", flush=True)

    def figure(self, key: str, value: Any, label: str, unit: str = "", target: str | None = None) -> None:
        self._current[key] = value
        shown = f"{value:,.3f}".rstrip("0").rstrip(".") if isinstance(value, float) else f"{value}"
        line = f"  {label:<58} {shown} {unit}".rstrip()
        if target:
            line += f"   (target {target})"
        print(line, flush=True)

    def note(self, text: str, key: str | None = None) -> None:
        if key is not None:
            self._current[key] = text
        print(f"  - {text}", flush=True)

    def write(self, path: Path, header: dict[str, Any]) -> None:
        path.write_text(json.dumps({**header, "figures": self.sections}, indent=2) + "\n")
