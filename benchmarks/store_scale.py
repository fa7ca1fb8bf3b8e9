"""Figure 6: the job store at 100,000 jobs, and a server start-up that resumes 10,000 of them.

Run in its own process (`python -m benchmarks.store_scale OUT.json`) so that the memory figure is
the server's and not what earlier benchmarks left on the heap.

What "resume" measures: `open_services` on the filled data folder, i.e. the real start-up path
(store, sandbox providers, engine), until every unfinished job has a driver that has taken its
lease, read its record and is waiting for its first status call. The unfinished jobs are FASHN jobs
already submitted (they have a provider id), and the benchmark's poll policy parks every driver for
an hour at its first look, so nothing reaches the emulator: the figure is the engine's and the
store's alone.
"""

from __future__ import annotations

import dataclasses
import json
import random
import statistics
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import anyio

from benchmarks.common import Report, rss_mb, sandbox_settings
from server.models import JobError, JobRecord, JobStatus, Output, _base36
from server.policy import PollPolicy
from server.services import open_services
from server.store import Store, open_backend

TOTAL = 100_000
UNFINISHED = 10_000
PROVIDERS = ("fashn", "autotoon", "neofashion", "genapi")
OPERATIONS = {
    "fashn": "tryon_max",
    "autotoon": "editorial",
    "neofashion": "image",
    "genapi": "generate",
}
FINISHED_MIX = ((JobStatus.SUCCEEDED, 78), (JobStatus.FAILED, 14), (JobStatus.CANCELED, 8))
FILTERS: tuple[tuple[str, JobStatus, str], ...] = (
    ("common", JobStatus.SUCCEEDED, "fashn"),
    ("selective", JobStatus.FAILED, "autotoon"),
    ("rare", JobStatus.CANCELED, "genapi"),
    ("unfinished", JobStatus.RUNNING, "fashn"),
)
REPEATS = 5
PAGE_TARGET_MS = 100.0
RESUME_TARGET_S = 5.0
RESUME_TIMEOUT = 120.0
T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
BASE_MILLIS = int(T0.timestamp() * 1000)


@dataclass
class _Arrivals:
    expected: int
    count: int = 0
    all_in: anyio.Event = field(default_factory=anyio.Event)


@dataclass(frozen=True)
class ParkingPoll(PollPolicy):
    """Counts the drivers that reached their first status look, and parks them there for an hour."""

    arrivals: _Arrivals = field(default_factory=lambda: _Arrivals(UNFINISHED))

    def next_look(
        self, typical: float, elapsed: float, planned: int, pace: float = 1.0
    ) -> tuple[float, bool]:
        self.arrivals.count += 1
        if self.arrivals.count >= self.arrivals.expected:
            self.arrivals.all_in.set()
        return 3600.0, False


def job_id(n: int, rng: random.Random) -> str:
    """Time-sortable like `new_job_id`: one millisecond apart, so job n is the n-th oldest."""
    return "j" + _base36(BASE_MILLIS + n).rjust(9, "0") + f"{rng.getrandbits(40):010x}"


def make_record(n: int, rng: random.Random, unfinished: bool, home: Path) -> JobRecord:
    """A realistic record: summary of the arguments, one output for a success, an error for a failure."""
    jid = job_id(n, rng)
    created = T0 + timedelta(milliseconds=n)
    provider = "fashn" if unfinished else PROVIDERS[rng.randrange(len(PROVIDERS))]
    if unfinished:
        status = JobStatus.SUBMITTED if rng.random() < 0.5 else JobStatus.RUNNING
    else:
        status = rng.choices([s for s, _ in FINISHED_MIX], [w for _, w in FINISHED_MIX])[0]
    record = JobRecord(
        job_id=jid,
        provider=provider,
        operation=OPERATIONS[provider],
        status=status,
        created_at=created,
        updated_at=created + timedelta(seconds=40),
        credits_estimate=2.0,
        sandbox=True,
        key=f"{rng.getrandbits(256):064x}",
        summary={
            "model_image": "~/shoots/spring/model-03.jpg",
            "product_image": f"~/shoots/spring/garment-{n % 500:03d}.png",
            "seed": n,
        },
        typical_seconds=40.0,
        shoot_id=f"s{n // 250:05d}" if n % 3 == 0 else None,
    )
    if status in (JobStatus.SUBMITTED, JobStatus.RUNNING, JobStatus.SUCCEEDED):
        record.provider_job_id = f"{rng.getrandbits(128):032x}-u1"
        record.submitted_at = created + timedelta(milliseconds=300)
        record.status_calls = 2
    if status is JobStatus.SUCCEEDED:
        record.progress = 1.0
        record.credits_used = 2.0
        record.outputs = [
            Output(
                uri=f"callsheet://jobs/{jid}/outputs/0",
                path=str(home / "media" / jid / "output_0.png"),
                source_url=f"https://cdn.fashn.ai/{record.provider_job_id}/output_0.png",
                mime_type="image/png",
                width=683,
                height=1024,
                bytes=1_254_321,
                sha256=f"{rng.getrandbits(256):064x}",
            )
        ]
    elif status is JobStatus.FAILED:
        record.error = JobError(
            code="image_load_error",
            message="Error loading model image: The URL's Content-Type is not an image.",
            retryable=False,
        )
    elif status is JobStatus.CANCELED:
        record.error = JobError(code="canceled", message="Canceled at fashn too.", retryable=True)
    return record


async def fill(store: Store, home: Path) -> tuple[float, str]:
    """Put TOTAL jobs, UNFINISHED of them spread evenly; returns (seconds, id of the median job)."""
    rng = random.Random(6)
    every = TOTAL // UNFINISHED
    middle = ""
    started = time.perf_counter()
    for n in range(TOTAL):
        record = make_record(n, rng, unfinished=n % every == every - 1, home=home)
        await store.put(record)
        if n == TOTAL // 2:
            middle = record.job_id
    return time.perf_counter() - started, middle


async def timed_list(store: Store, **query: Any) -> tuple[float, int]:
    """Median milliseconds of REPEATS identical calls, and the page length."""
    times, size = [], 0
    for _ in range(REPEATS):
        started = time.perf_counter()
        page, _ = await store.list(limit=20, **query)
        times.append((time.perf_counter() - started) * 1000)
        size = len(page)
    return statistics.median(times), size


async def fill_and_query(report: Report, home: Path, store_url: str | None) -> None:
    settings = sandbox_settings(home, home.parent / "inputs", 0.05)
    async with open_backend(store_url, settings.store_dir) as backend:
        store = backend.jobs
        seconds, middle = await fill(store, home)
        report.figure("insert_per_second", TOTAL / seconds, "insert rate (store.put)", "jobs/s")
        report.figure("insert_seconds", seconds, "  time to insert all", "s")
        worst = 0.0
        for name, status, provider in FILTERS:
            first, n1 = await timed_list(store, status=status, provider=provider)
            deep, n2 = await timed_list(store, status=status, provider=provider, cursor=middle)
            worst = max(worst, first, deep)
            report.figure(
                f"list_{name}_first_ms",
                first,
                f"jobs_list status={status.value} provider={provider}: first page",
                f"ms ({n1} jobs)",
            )
            report.figure(
                f"list_{name}_deep_ms", deep, "  a page 50,000 jobs deep (cursor)", f"ms ({n2} jobs)"
            )
        unfiltered, _ = await timed_list(store, cursor=middle)
        report.figure("list_unfiltered_deep_ms", unfiltered, "jobs_list unfiltered, 50,000 deep", "ms")
        report.figure("list_worst_ms", worst, "worst filtered page", "ms", target=f"<= {PAGE_TARGET_MS:g}")
        started = time.perf_counter()
        unfinished = await store.unfinished()
        report.figure(
            "unfinished_seconds",
            time.perf_counter() - started,
            f"store.unfinished() ({len(unfinished):,} jobs)",
            "s",
        )


async def resume(report: Report, home: Path, store_url: str | None) -> None:
    """A fresh process starts a server with no jobs (cold: imports, store, sandbox providers), stops it,
    then starts one on the filled data folder."""
    rss_imports = rss_mb()
    empty = sandbox_settings(home.parent / "empty-home", home.parent / "inputs", 0.05)
    started = time.perf_counter()
    with anyio.fail_after(RESUME_TIMEOUT):
        async with open_services(empty):
            bare = time.perf_counter() - started
    rss_before = rss_mb()

    settings = dataclasses.replace(sandbox_settings(home, home.parent / "inputs", 0.05), store_url=store_url)
    parking = ParkingPoll()
    started = time.perf_counter()
    with anyio.fail_after(RESUME_TIMEOUT):
        async with open_services(settings, poll=parking):
            spawned = time.perf_counter() - started
            await parking.arrivals.all_in.wait()
            ready = time.perf_counter() - started
            rss_after = rss_mb()
            drivers = parking.arrivals.count
            stopping = time.perf_counter()
        stopped = time.perf_counter() - stopping

    report.figure("startup_empty_seconds", bare, "start-up with no jobs (cold process)", "s")
    report.figure(
        "resume_spawn_seconds", spawned, f"start-up with {UNFINISHED:,} unfinished: drivers spawned", "s"
    )
    report.figure(
        "resume_seconds",
        ready,
        "  ... every driver leased, read its job, waiting to poll",
        "s",
        target=f"<= {RESUME_TARGET_S:g}",
    )
    report.figure("drivers", drivers, "jobs being driven")
    report.figure("rss_imports_mb", rss_imports, "server process RSS: imports only", "MiB")
    report.figure("rss_started_mb", rss_before, "  started once with no jobs", "MiB")
    report.figure("rss_mb", rss_after, f"  driving {UNFINISHED:,} jobs", "MiB")
    report.figure("shutdown_seconds", stopped, "shutdown (drivers stopped, leases released)", "s")


def main() -> None:
    """`python -m benchmarks.store_scale fill|resume HOME OUT.json [STORE_URL]`: one phase, on the
    embedded store or the Redis that STORE_URL names, figures to OUT.json."""
    phase, home, out = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
    store_url = sys.argv[4] if len(sys.argv) > 4 else None
    report = Report()
    report.section("store")
    anyio.run(fill_and_query if phase == "fill" else resume, report, home, store_url)
    out.write_text(json.dumps(report.sections["store"]))


if __name__ == "__main__":
    main()
