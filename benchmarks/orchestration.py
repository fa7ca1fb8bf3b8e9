"""Figures 1-4: orchestration efficiency, status calls per job, 429s under a burst, repeat of a batch.

Jobs are submitted straight to the engine (`Engine.submit`, what every generation tool calls) with
the FASHN emulator behind the real adapter, so the figures are the engine's and the adapter's,
not the MCP layer's (figure 5 measures that).
"""

from __future__ import annotations

import dataclasses
import functools
import heapq
import math
import tempfile
import time
from collections.abc import Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio

from benchmarks.common import (
    SEED,
    CdnCache,
    Report,
    RequestLog,
    median,
    percentile,
    sandbox_settings,
    scaled_poll,
    scaled_retry,
    write_inputs,
)
from server.engine import Engine
from server.models import TERMINAL, JobRecord, JobStatus
from server.policy import PollPolicy
from server.providers.fashn.adapter import LIMITS as FASHN_LIMITS
from server.providers.fashn.emulator import FashnEmulator
from server.services import open_services

BATCH = 60
BURST_FACTOR = 3
SLOTS = FASHN_LIMITS.max_in_flight or 6
PACES = (0.5, 1.0, 2.0)
"""How fast FASHN runs against its documented durations in figure 1c."""
RUN_LIMIT, RUN_PERIOD = FASHN_LIMITS.windows["run"][0].limit, FASHN_LIMITS.windows["run"][0].period
SDK_POLL_INTERVAL = 1.0
"""The official FASHN SDK polls `/status` every second."""


@dataclass
class Batch:
    """One batch of jobs run to the end, with what the emulator saw."""

    records: list[JobRecord]
    emulator: FashnEmulator
    log: RequestLog
    started: float
    """Monotonic time of the first submit."""
    ended: float
    """Monotonic time at which the last job reached its final state (from its `updated_at`)."""
    offset: float
    """Wall-clock minus monotonic time, to place the records' `updated_at` on the monotonic clock."""
    durations: dict[str, float] = field(default_factory=dict)
    """Scaled seconds each prediction took at the emulator, by prediction id."""

    @property
    def wall(self) -> float:
        return self.ended - self.started


async def submit_all(
    engines: Sequence[Engine], operation: str, calls: Sequence[dict[str, Any]]
) -> list[JobRecord]:
    """Submit every call at once (concurrently), as an assistant firing a batch of tool calls would;
    with several engines (replicas), call n goes to engine n mod their number, as a round robin would."""
    records: dict[int, JobRecord] = {}

    async def one(i: int, args: dict[str, Any]) -> None:
        records[i] = await engines[i % len(engines)].submit("fashn", operation, args)

    async with anyio.create_task_group() as tg:
        for i, args in enumerate(calls):
            tg.start_soon(one, i, args)
    return [records[i] for i in range(len(calls))]


async def wait_all(engine: Engine, job_ids: list[str], wait_limit: float) -> list[JobRecord]:
    """Wait (bounded) until every job is final, reading only the unfinished ones, 4 times a second.

    Cheaper than `Engine.wait` on 60+ ids, which re-reads them all on every state change; exact end
    times come from the records' `updated_at`, so the coarse tick does not blur the figures.
    """
    done: dict[str, JobRecord] = {}
    with anyio.fail_after(wait_limit):
        while True:
            for job_id in job_ids:
                if job_id not in done:
                    record = await engine.get(job_id)
                    if record.status in TERMINAL:
                        done[job_id] = record
            if len(done) == len(job_ids):
                return [done[job_id] for job_id in job_ids]
            await anyio.sleep(0.25)


def monotonic_of(record: JobRecord, offset: float) -> float:
    return record.updated_at.timestamp() - offset


def lower_bound(durations: Sequence[float], time_scale: float) -> tuple[float, dict[str, float]]:
    """A lower bound on the makespan any orchestrator could reach with these predictions.

    The optimal schedule of the durations on `SLOTS` machines takes at least the average load per
    machine and at least the longest prediction. The /run window adds: predictions 50m+1.. cannot
    start before m windows have passed, so the best choice (the shortest ones) still ends after
    m * window + the longest of them.
    """
    ordered = sorted(durations)
    n = len(ordered)
    parts = {"load_per_slot": sum(ordered) / SLOTS, "longest": ordered[-1]}
    window = RUN_PERIOD * time_scale
    m = 1
    while n - RUN_LIMIT * m >= 1:
        parts[f"run_window_{m}"] = m * window + ordered[n - RUN_LIMIT * m - 1]
        m += 1
    return max(parts.values()), parts


def list_schedule(durations: Sequence[float]) -> float:
    """Makespan of a zero-overhead scheduler that starts each prediction, in the given order, the instant
    a slot frees: the best an orchestrator that cannot know durations in advance can do with this order."""
    slots = [0.0] * SLOTS
    for d in durations:
        heapq.heappush(slots, heapq.heappop(slots) + d)
    return max(slots)


def polled_schedule(durations: Sequence[float], poll: PollPolicy, typical: float, time_scale: float) -> float:
    """Makespan of the same zero-overhead scheduler when each prediction holds its slot until the first
    look of `poll` that sees it ended (spaced as the engine spaces them): the cost of the poll policy
    alone, before any time spent in callsheet or the emulator."""
    budget = FASHN_LIMITS.scaled(time_scale).poll_interval(SLOTS)
    held = []
    for duration in durations:
        elapsed, planned = 0.0, 0
        while elapsed < duration:
            wait, is_planned = poll.next_look(typical, elapsed, planned)
            elapsed += max(wait, budget)
            planned += is_planned
        held.append(elapsed)
    return list_schedule(held)


async def run_batch(
    home: Path,
    inputs: Path,
    *,
    time_scale: float,
    poll: PollPolicy,
    operation: str,
    calls: list[dict[str, Any]],
    wait_limit: float,
    repeat: bool = False,
    store_url: str | None = None,
    replicas: int = 1,
    pace: float = 1.0,
    seed: int = SEED,
) -> tuple[Batch, dict[str, Any] | None]:
    """Run `calls` at once against a fresh emulator; with `repeat`, send them again once all succeeded.

    `replicas` sets of services (engines with their own store connections) share `store_url` and the
    one emulator, as replicas of one deployment share Redis and one provider account. The emulator
    (`seed` draws its durations) runs jobs at `pace` times their documented durations."""
    settings = dataclasses.replace(sandbox_settings(home, inputs, time_scale), store_url=store_url)
    emulator = FashnEmulator(time_scale=time_scale, seed=seed, pace=pace)
    log = RequestLog(CdnCache(emulator, emulator.app))
    async with AsyncExitStack() as stack:
        engines = [
            (
                await stack.enter_async_context(
                    open_services(
                        settings, sandbox_apps={"fashn": log}, retry=scaled_retry(time_scale), poll=poll
                    )
                )
            ).engine
            for _ in range(replicas)
        ]
        offset = time.time() - time.monotonic()
        started = time.monotonic()
        submitted = await submit_all(engines, operation, calls)
        records = await wait_all(engines[-1], [r.job_id for r in submitted], wait_limit)
        ended = max(monotonic_of(r, offset) for r in records)
        batch = Batch(records, emulator, log, started, ended, offset)
        batch.durations = {pid: p.duration for pid, p in emulator.stats.predictions.items()}
        repeated = None
        if repeat:
            stats = emulator.stats
            before = (stats.run_calls, stats.status_calls, stats.cdn_calls, stats.cancel_calls)
            t0 = time.monotonic()
            again = await submit_all(engines, operation, calls)
            again = await wait_all(engines[-1], [r.job_id for r in again], wait_limit)
            wall = time.monotonic() - t0
            after = (stats.run_calls, stats.status_calls, stats.cdn_calls, stats.cancel_calls)
            repeated = {
                "provider_calls": sum(after) - sum(before),
                "wall_seconds": wall,
                "same_jobs": [r.job_id for r in again] == [r.job_id for r in records],
                "all_succeeded": all(r.status is JobStatus.SUCCEEDED for r in again),
            }
    return batch, repeated


def profile(batch: Batch, time_scale: float) -> dict[str, float]:
    """Where slot time goes: per job, from the prediction's end to the status call that saw it (poll
    lateness), and from there to the job being final (status answer, download, hash, thumbnail, store).

    Then a model of the run: each prediction holds its slot from its /run to the status call that saw
    it end (the engine frees the slot before downloading), slots are refilled in /run order the instant
    they free. Replayed with the measured times it should land near the measured wall time.
    """
    last_status: dict[str, float] = {}
    for started, _ended, _method, path in batch.log.entries:
        if path.startswith("/v1/status/"):
            pid = path.rsplit("/", 1)[1]
            last_status[pid] = max(last_status.get(pid, 0.0), started)
    lateness, finish = [], []
    held = []
    predictions = batch.emulator.stats.predictions
    by_prediction = {r.provider_job_id: r for r in batch.records}
    for prediction in sorted(predictions.values(), key=lambda p: p.number):
        record = by_prediction.get(prediction.id)
        if record is None or prediction.id not in last_status:
            continue
        seen, final = last_status[prediction.id], monotonic_of(record, batch.offset)
        lateness.append(seen - (prediction.created + prediction.duration))
        finish.append(final - seen)
        held.append(seen - prediction.created)
    mean_d = sum(batch.durations.values()) / len(batch.durations)
    bound, _ = lower_bound(list(batch.durations.values()), time_scale)
    first_run = min(p.created for p in predictions.values()) - batch.started
    mean_finish = sum(finish) / len(finish)
    return {
        "mean_duration_s": mean_d,
        "mean_poll_lateness_s": sum(lateness) / len(lateness),
        "poll_lateness_share": sum(lateness) / len(lateness) / mean_d,
        "max_poll_lateness_s": max(lateness),
        "mean_finish_s": mean_finish,
        "finish_share": mean_finish / mean_d,
        "first_run_after_s": first_run,
        "model_ratio": (first_run + list_schedule(held) + mean_finish) / bound,
    }


def status_calls(batch: Batch) -> list[int]:
    by_id = batch.emulator.stats.status_calls_by_id
    return [by_id.get(r.provider_job_id or "", 0) for r in batch.records]


def sdk_status_calls(batch: Batch, time_scale: float) -> list[int]:
    """What fixed 1 s polling needs for the same predictions: one call per second of real duration."""
    return [
        math.ceil(batch.durations[r.provider_job_id or ""] / time_scale / SDK_POLL_INTERVAL)
        for r in batch.records
    ]


def efficiency(report: Report, batch: Batch, poll: PollPolicy, time_scale: float) -> float:
    """The ratio, and how it splits: not knowing durations, polling within the policy, time spent here."""
    durations = [
        p.duration for p in sorted(batch.emulator.stats.predictions.values(), key=lambda p: p.number)
    ]
    bound, parts = lower_bound(durations, time_scale)
    ideal = list_schedule(durations)
    polled = polled_schedule(durations, poll, batch.records[0].typical_seconds, time_scale)
    ratio = batch.wall / bound
    report.figure("wall_seconds", batch.wall, "wall time, first submit to last job succeeded", "s")
    report.figure("lower_bound_seconds", bound, "lower bound (limits and actual durations)", "s")
    report.figure("lower_bound_parts", {k: round(v, 3) for k, v in parts.items()}, "  bound parts")
    report.figure("ratio", ratio, "ratio wall / lower bound", target="<= 1.10")
    report.figure(
        "ideal_list_schedule_ratio", ideal / bound, "  zero-overhead scheduler, same order, / bound"
    )
    report.figure(
        "polled_schedule_ratio", polled / bound, "  the same, seeing each end at the poll policy's looks"
    )
    report.figure("wall_vs_polled", batch.wall / polled, "  wall / that (time spent in callsheet)")
    return ratio


def report_profile(report: Report, prof: dict[str, float]) -> None:
    mean_d = prof["mean_duration_s"]
    report.figure("mean_duration_s", mean_d, "  mean prediction duration", "s")
    report.figure(
        "poll_lateness_share",
        prof["poll_lateness_share"],
        "  poll lateness: prediction done -> status call that saw it",
        f"x mean duration (mean {prof['mean_poll_lateness_s']:.3f} s, "
        f"max {prof['max_poll_lateness_s']:.3f} s)",
    )
    report.figure(
        "finish_share",
        prof["finish_share"],
        "  finishing: that call -> job final (download, thumbnail)",
        f"x mean duration (mean {prof['mean_finish_s']:.3f} s)",
    )
    report.figure("first_run_after_s", prof["first_run_after_s"], "  first /run after the first submit", "s")
    report.figure("model_ratio", prof["model_ratio"], "  model of this run / bound (checks the model)")


def report_repeat(report: Report, repeated: dict[str, Any]) -> None:
    report.section("repeat", f"4. Repeat of the identical batch ({BATCH} calls again, after all succeeded)")
    report.figure("provider_calls", repeated["provider_calls"], "provider calls", target="0")
    report.figure("wall_seconds", repeated["wall_seconds"], "wall time", "s")
    report.figure("same_jobs", repeated["same_jobs"], "every call returned its existing job")


async def orchestration(
    report: Report, *, time_scale: float, wait_limit: float, also_at: float | None = None
) -> dict[str, Any]:
    """Figures 1 and 2, and the same batch at time scale `also_at`; returns what figure 4 measured."""
    with tempfile.TemporaryDirectory(prefix="callsheet-bench-") as tmp:
        model, garment = write_inputs(Path(tmp) / "inputs")
        calls = [{"model_image": str(model), "product_image": str(garment), "seed": n} for n in range(BATCH)]

        report.section("orchestration", f"1. Orchestration efficiency: {BATCH} fashn_tryon_max at once")
        report.figure("time_scale", time_scale, "time scale (latencies and limit windows)")
        poll = scaled_poll(time_scale)
        batch, repeated = await run_batch(
            Path(tmp) / "home",
            Path(tmp) / "inputs",
            time_scale=time_scale,
            poll=poll,
            operation="tryon_max",
            calls=calls,
            wait_limit=wait_limit,
            repeat=True,
        )
        ok = sum(r.status is JobStatus.SUCCEEDED for r in batch.records)
        report.figure("succeeded", ok, "jobs succeeded", f"of {BATCH}")
        efficiency(report, batch, poll, time_scale)
        report.figure("sent_429", batch.emulator.stats.sent_429, "429s from the emulator")
        report.figure("max_in_flight", batch.emulator.stats.max_in_flight, "most predictions in flight")
        report.note("profile: where the slot time goes beyond the predictions themselves")
        report_profile(report, profile(batch, time_scale))
        if also_at is not None:
            other, _ = await run_batch(
                Path(tmp) / "home-also",
                Path(tmp) / "inputs",
                time_scale=also_at,
                poll=scaled_poll(also_at),
                operation="tryon_max",
                calls=calls,
                wait_limit=wait_limit,
            )
            bound, _ = lower_bound(list(other.durations.values()), also_at)
            report.figure(
                "ratio_at_other_scale",
                other.wall / bound,
                f"the same batch at time scale {also_at}: ratio",
                "(fixed per-call costs weigh twice as much)",
            )

        report.section("status_calls", f"2. Status calls per job over those {BATCH}")
        calls_made, sdk = status_calls(batch), sdk_status_calls(batch, time_scale)
        report.figure("median", median(calls_made), "median", target="<= 4")
        report.figure("p95", percentile(calls_made, 95), "95th percentile")
        report.figure("total", sum(calls_made), "total")
        report.figure("sdk_1s_median", median(sdk), "fixed 1 s polling (FASHN SDK): median")
        report.figure("sdk_1s_p95", percentile(sdk, 95), "fixed 1 s polling (FASHN SDK): 95th percentile")
        report.figure("sdk_1s_total", sum(sdk), "fixed 1 s polling (FASHN SDK): total")
        assert repeated is not None
    return repeated


async def replicas(report: Report, *, redis: str, time_scale: float, wait_limit: float) -> None:
    """Figure 1 again on Redis (`redis`: its URL without a database): one replica, then three sharing
    the store and the provider account (each call to the next replica), in the same run as figure 1.
    Each run has a database of its own, so the second is not a repeat of the first."""
    report.section("replicas", f"1b. The same {BATCH} try-ons on Redis: 1 replica beside 3 replicas")
    report.figure("time_scale", time_scale, "time scale")
    with tempfile.TemporaryDirectory(prefix="callsheet-bench-") as tmp:
        model, garment = write_inputs(Path(tmp) / "inputs")
        calls = [{"model_image": str(model), "product_image": str(garment), "seed": n} for n in range(BATCH)]
        for n in (1, 3):
            batch, _ = await run_batch(
                Path(tmp) / f"home-{n}",
                Path(tmp) / "inputs",
                time_scale=time_scale,
                poll=scaled_poll(time_scale),
                operation="tryon_max",
                calls=calls,
                wait_limit=wait_limit,
                store_url=f"{redis}/{n}",
                replicas=n,
            )
            bound, _ = lower_bound(list(batch.durations.values()), time_scale)
            stats = batch.emulator.stats
            ok = sum(r.status is JobStatus.SUCCEEDED for r in batch.records)
            report.figure(
                f"ratio_{n}",
                batch.wall / bound,
                f"{n} replica(s): ratio wall / lower bound",
                target="<= 1.10",
            )
            report.figure(f"sent_429_{n}", stats.sent_429, "  429s", target="0")
            report.figure(
                f"max_in_flight_{n}", stats.max_in_flight, "  most predictions in flight", f"(limit {SLOTS})"
            )
            report.figure(f"succeeded_{n}", ok, "  jobs succeeded", f"of {BATCH}")
            report.figure(f"run_calls_{n}", stats.run_calls, "  /run calls")
            report.figure(f"status_median_{n}", median(status_calls(batch)), "  status calls per job, median")


async def paces(report: Report, *, time_scale: float, wait_limit: float) -> None:
    """Figure 1 when FASHN runs faster or slower than it documents. Cold: on a fresh store, the
    engine starts from the documented durations and learns from the jobs of the batch itself.
    Learned: the same batch after the engine saw a first batch at that pace (other durations, drawn
    with another seed), as a deployment that has run for a while polls."""
    report.section(
        "paces", f"1c. The same {BATCH} try-ons when FASHN's jobs take 0.5x, 1x and 2x as documented"
    )
    report.figure("time_scale", time_scale, "time scale")
    with tempfile.TemporaryDirectory(prefix="callsheet-bench-") as tmp:
        model, garment = write_inputs(Path(tmp) / "inputs")
        calls = [{"model_image": str(model), "product_image": str(garment), "seed": n} for n in range(BATCH)]
        earlier = [{**call, "seed": BATCH + n} for n, call in enumerate(calls)]
        for pace in PACES:
            for state in ("cold", "learned"):
                home = Path(tmp) / f"home-{pace}-{state}"
                batch_at = functools.partial(
                    run_batch,
                    home,
                    Path(tmp) / "inputs",
                    time_scale=time_scale,
                    poll=scaled_poll(time_scale),
                    operation="tryon_max",
                    wait_limit=wait_limit * pace,
                    pace=pace,
                )
                if state == "learned":
                    await batch_at(calls=earlier, seed=SEED + 1)
                batch, _ = await batch_at(calls=calls)
                bound, _ = lower_bound(list(batch.durations.values()), time_scale)
                made = status_calls(batch)
                name = f"{pace:g}x_{state}"
                report.figure(
                    f"ratio_{name}",
                    batch.wall / bound,
                    f"{pace:g}x, {state}: ratio wall / lower bound",
                    f"({batch.wall:.2f} s / {bound:.2f} s)",
                    target="<= 1.10",
                )
                report.figure(
                    f"status_median_{name}", median(made), "  status calls per job, median", target="<= 4"
                )
                report.figure(f"status_p95_{name}", percentile(made, 95), "  95th percentile")
                report.figure(f"sent_429_{name}", batch.emulator.stats.sent_429, "  429s", target="0")


async def burst(report: Report, *, time_scale: float, wait_limit: float) -> None:
    """3x the per-minute /run limit at once. FASHN's try-on v1.6 in performance mode takes ~5 s, so six
    slots would start ~70 predictions a minute: the /run window (50 per 60 s) binds as well as the six
    in flight. With try-on max (~45 s) six slots start only ~8 a minute and the window never binds."""
    n = BURST_FACTOR * RUN_LIMIT
    report.section("burst", f"3. 429s provoked: {n} try-ons at once (3x the /run limit per minute)")
    with tempfile.TemporaryDirectory(prefix="callsheet-bench-") as tmp:
        model, garment = write_inputs(Path(tmp) / "inputs")
        calls = [
            {"model_image": str(model), "garment_image": str(garment), "mode": "performance", "seed": s}
            for s in range(n)
        ]
        batch, _ = await run_batch(
            Path(tmp) / "home",
            Path(tmp) / "inputs",
            time_scale=time_scale,
            poll=scaled_poll(time_scale),
            operation="tryon_v1_6",
            calls=calls,
            wait_limit=wait_limit,
        )
    stats = batch.emulator.stats
    report.figure("model", "tryon-v1.6 (mode performance)", "model")
    report.figure("time_scale", time_scale, "time scale")
    report.figure("sent_429", stats.sent_429, "429 responses", target="0")
    for started, path, status, body in batch.log.refusals:
        report.note(f"{status} on {path} at {started - batch.started:.3f} s: {body}")
    report.figure("succeeded", sum(r.status is JobStatus.SUCCEEDED for r in batch.records), "jobs succeeded")
    report.figure("run_calls", stats.run_calls, "/run calls")
    report.figure("max_in_flight", stats.max_in_flight, "most predictions in flight", f"(limit {SLOTS})")
    runs = sorted(start for start, _end, method, path in batch.log.entries if path == "/v1/run")
    window = RUN_PERIOD * time_scale
    busiest = max(sum(1 for t in runs if s <= t < s + window) for s in runs)
    report.figure("busiest_run_window", busiest, "most /run calls in any scaled 60 s", f"(limit {RUN_LIMIT})")
    bound, _ = lower_bound(list(batch.durations.values()), time_scale)
    report.figure("wall_seconds", batch.wall, "wall time", "s")
    report.figure("ratio", batch.wall / bound, "ratio wall / lower bound")
