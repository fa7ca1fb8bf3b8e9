"""`python -m benchmarks`: every figure of the benchmark suite, printed and written to results.json.

Sections 1-5 and 7-9 run in this process; the store-scale section (6) runs in two child processes, one
filling the store and one starting a server on it, so its memory figure is a fresh server's. Redis
figures (1b, 5b, 6 on Redis) use a redis-server the run starts on a free port (tests/redis_server.py).
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import anyio

from benchmarks.common import Report
from benchmarks.orchestration import burst, orchestration, paces, replicas, report_repeat
from benchmarks.overhead import overhead, result_size, status_under_burst, tool_list_size, webhooks
from benchmarks.store_scale import TOTAL, UNFINISHED
from tests.redis_server import RedisServer

RESULTS = Path(__file__).with_name("results.json")
COMMAND = "python -m benchmarks"
ORCHESTRATION_SCALE = 0.1
"""A 40 s try-on takes 4 s, FASHN's 60 s /run window 6 s. Provider time shrinks, callsheet's own time per
call (a few ms of CPU, on the machine that also runs the emulator) does not: at the sandbox's default
0.05 it weighs twenty times what it does against FASHN's real latencies, at 0.1 ten times. The batch
is also run at 0.05 (`OTHER_SCALE`) and that ratio printed beside."""
OTHER_SCALE = 0.05
BURST_SCALE = 0.1
"""At 0.1 a 5 s try-on takes 0.5 s, and six slots would start more than 50 a (scaled) minute: the
/run window binds, not only the six in flight (the fixed ~0.1 s per job of download and thumbnail,
unscaled, would keep a smaller scale under it)."""
BATCH_TIMEOUT = 120.0
STORE_PHASE_TIMEOUT = 600.0


@contextmanager
def timed(timings: dict[str, float], name: str) -> Iterator[None]:
    """Adds the seconds the block took to `timings` as `name` (when it ends without an error)."""
    started = time.perf_counter()
    yield
    timings[name] = time.perf_counter() - started


async def in_process(report: Report, timings: dict[str, float], redis: RedisServer) -> None:
    with timed(timings, "1-2 orchestration"):
        repeated = await orchestration(
            report, time_scale=ORCHESTRATION_SCALE, wait_limit=BATCH_TIMEOUT, also_at=OTHER_SCALE
        )
    with timed(timings, "1b replicas"):
        base = redis.url.rsplit("/", 1)[0]
        await replicas(report, redis=base, time_scale=ORCHESTRATION_SCALE, wait_limit=BATCH_TIMEOUT)
    with timed(timings, "1c paces"):
        await paces(report, time_scale=ORCHESTRATION_SCALE, wait_limit=BATCH_TIMEOUT)
    with timed(timings, "3 burst"):
        await burst(report, time_scale=BURST_SCALE, wait_limit=BATCH_TIMEOUT)
    report_repeat(report, repeated)
    with timed(timings, "5 overhead"):
        await overhead(report)
    with timed(timings, "5b status under a burst"):
        redis.flush()
        await status_under_burst(report, redis.url)


def store_scale(report: Report, timings: dict[str, float], redis: RedisServer) -> None:
    """Figure 6 on the embedded store, then on Redis (section `store_redis`)."""
    for section, store_url, where in (
        ("store", None, "the embedded store"),
        ("store_redis", redis.url, "Redis"),
    ):
        redis.flush()
        title = f"6. Store scale: {TOTAL:,} jobs in {where} ({UNFINISHED:,} unfinished)"
        report.section(section, title)
        with (
            timed(timings, f"6 {section}"),
            tempfile.TemporaryDirectory(prefix="callsheet-bench-store-") as tmp,
        ):
            for phase in ("fill", "resume"):
                out = Path(tmp) / f"{phase}.json"
                command = [
                    sys.executable,
                    "-m",
                    "benchmarks.store_scale",
                    phase,
                    str(Path(tmp) / "home"),
                    str(out),
                ]
                subprocess.run(
                    [*command, *([store_url] if store_url else [])], check=True, timeout=STORE_PHASE_TIMEOUT
                )
                report.sections[section].update(json.loads(out.read_text()))


def main() -> int:
    started = time.perf_counter()
    date = datetime.now(UTC).isoformat(timespec="seconds")
    machine = {
        "machine": platform.platform(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
    }
    print(
        f"callsheet benchmarks, {date}, {machine['machine']}, {machine['cpu_count']} CPUs, "
        f"Python {machine['python']}",
        flush=True,
    )
    report = Report()
    timings: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="callsheet-bench-redis-") as folder:
        redis = RedisServer(Path(folder)).start()  # a redis-server of the run's own, on a free port
        try:
            anyio.run(in_process, report, timings, redis)
            store_scale(report, timings, redis)
        finally:
            redis.stop()
    with timed(timings, "7 result size"):
        anyio.run(result_size, report)
    with timed(timings, "8 tool list"):
        anyio.run(tool_list_size, report)
    with timed(timings, "9 webhooks"):
        anyio.run(webhooks, report)
    total = time.perf_counter() - started
    print(
        f"\n== Whole run: {total:.1f} s ("
        + ", ".join(f"{name} {seconds:.1f} s" for name, seconds in timings.items())
        + ")"
    )
    header = {
        "date": date,
        **machine,
        "command": COMMAND,
        "total_seconds": round(total, 1),
        "section_seconds": {k: round(v, 1) for k, v in timings.items()},
    }
    report.write(RESULTS, header)
    print(f"Written to {RESULTS}")
    return 0
