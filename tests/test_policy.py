"""When jobs are polled: the look schedule, and the share of a provider's rate that polling may take."""

from __future__ import annotations

import itertools
import time
from pathlib import Path
from typing import Any

import anyio
import pytest

from server.models import JobStatus
from server.policy import PACE_MIN_SEEN, PACE_RANGE, PollPolicy, pace
from server.providers.base import Mode, ProviderSettings
from server.providers.fashn.adapter import LIMITS as FASHN_LIMITS
from server.providers.fashn.emulator import FashnEmulator
from server.providers.genapi.adapter import LIMITS as GENAPI_LIMITS
from server.providers.neofashion.adapter import NeoFashion
from server.services import open_services
from tests.conftest import FAST_RETRY, make_settings, png_bytes

TYPICAL = 40.0


def looks(
    policy: PollPolicy, typical: float, until: float, pace: float = 1.0, elapsed: float = 0.0
) -> list[float]:
    """The moments (seconds after submission) at which `policy` asks about a job still running at
    `until`, taken up `elapsed` s after it started, as the engine follows it."""
    moments, planned = [], policy.passed(typical, elapsed)
    while elapsed < until:
        wait, is_planned = policy.next_look(typical, elapsed, planned, pace)
        elapsed += wait
        planned += is_planned
        moments.append(elapsed)
    return moments


def test_four_looks_before_and_around_the_typical_duration() -> None:
    policy = PollPolicy()
    first_four = looks(policy, TYPICAL, until=TYPICAL)[:4]
    assert first_four == pytest.approx([f * TYPICAL for f in policy.looks])
    assert first_four[0] > 0.5 * TYPICAL and first_four[-1] > TYPICAL  # a job at its typical end is seen


def test_after_the_looks_a_steady_step_until_overdue_then_backing_off() -> None:
    policy = PollPolicy()
    moments = looks(policy, TYPICAL, until=6 * TYPICAL)
    gaps = [b - a for a, b in itertools.pairwise(moments)]
    steady = [g for a, g in zip(moments[3:], gaps[3:], strict=False) if a < policy.overdue * TYPICAL]
    assert steady and all(g == pytest.approx(policy.step * TYPICAL) for g in steady)
    late = [g for a, g in zip(moments, gaps, strict=False) if a >= policy.overdue * TYPICAL]
    backoff = (policy.factor - 1) * policy.overdue * TYPICAL
    assert late[0] == pytest.approx(min(backoff, policy.ceiling), rel=0.05) and late[0] > 10 * steady[0]
    assert late == sorted(late) and late[-1] <= policy.ceiling
    # Fixed 1 s polling (FASHN's SDK) would have asked 240 times by now.
    assert len(moments) < 90


def test_floor_and_ceiling_bound_every_delay() -> None:
    policy = PollPolicy(floor=0.5, ceiling=30.0)
    assert looks(policy, 0.1, until=1.5) == pytest.approx([0.5, 1.0, 1.5])  # a tiny typical
    assert policy.next_look(3600.0, 0.0, 0) == (30.0, False)  # an hour-long job is still looked at


def test_a_job_taken_up_late_is_looked_at_once_then_at_the_looks_still_ahead() -> None:
    """After a restart: one look at once for the planned looks it missed, not one each."""
    policy = PollPolicy(floor=0.5)
    between = (policy.looks[1] + policy.looks[2]) / 2 * TYPICAL
    assert looks(policy, TYPICAL, until=1.05 * TYPICAL, elapsed=between) == pytest.approx(
        [between + 0.5, policy.looks[2] * TYPICAL, policy.looks[3] * TYPICAL, 1.07 * TYPICAL]
    )
    late = looks(policy, TYPICAL, until=5 * TYPICAL + 1, elapsed=5 * TYPICAL)
    assert late[0] == pytest.approx(5 * TYPICAL + 0.5)


def test_a_look_the_ceiling_brings_forward_leaves_the_planned_looks_in_place() -> None:
    """A long job (a 1080p video: 90 s typical) is looked at by the ceiling first, then at every
    planned place; before, the early look used up a planned one and the next came a whole step late."""
    policy = PollPolicy()
    video = 90.0
    moments = looks(policy, video, until=video)
    assert moments[0] == policy.ceiling
    assert moments[1:5] == pytest.approx([f * video for f in policy.looks])


@pytest.mark.parametrize("pace_", [0.5, 2.0, 3.0])
def test_at_another_pace_the_looks_are_the_documented_ones_scaled(pace_: float) -> None:
    """The ceiling was chosen for the documented durations: at a pace learned to be slower it stretches
    too, so a try-on running 2x or 3x slower gets the same looks, and no more, as at 1x."""
    policy = PollPolicy()
    documented = looks(policy, TYPICAL, until=1.2 * TYPICAL)
    at_pace = looks(policy, TYPICAL * pace_, until=1.2 * TYPICAL * pace_, pace=pace_)
    assert at_pace == pytest.approx([m * pace_ for m in documented])


def test_a_pace_that_moves_under_a_running_job_adds_no_look() -> None:
    """Learned from other jobs while this one runs: its next planned look moves, none is repeated."""
    policy = PollPolicy()
    elapsed, planned, moments = 0.0, 0, []
    for pace_ in (2.2, 2.2, 2.0, 2.0):  # the pace drops between its second and third look
        wait, is_planned = policy.next_look(TYPICAL * pace_, elapsed, planned, pace_)
        elapsed, planned = elapsed + wait, planned + is_planned
        moments.append(elapsed)
    assert planned == 4
    assert moments[2:] == pytest.approx([policy.looks[2] * TYPICAL * 2.0, policy.looks[3] * TYPICAL * 2.0])


def test_poll_interval_spreads_the_status_budget_over_the_jobs_followed() -> None:
    # FASHN's /status has its own window (50 per 10 s): six jobs may each be asked every 1.2 s.
    assert FASHN_LIMITS.poll_interval(6) == pytest.approx(1.2)
    # neo-fashion counts every request in one window (60 per minute): polls keep to half of it.
    neo = NeoFashion(
        ProviderSettings("neofashion", Mode.LIVE, "", "", "k", {"NEOFASHION_RATE_PER_MINUTE": 60})
    )
    assert neo.limits().poll_interval(10) == pytest.approx(20.0)
    assert GENAPI_LIMITS.poll_interval(8) == pytest.approx(8.0)
    assert FASHN_LIMITS.scaled(0.1).poll_interval(6) == pytest.approx(0.12)
    assert FASHN_LIMITS.poll_interval(0) == 0.0


@pytest.mark.anyio
async def test_the_engine_spreads_polls_over_the_status_budget(tmp_path: Path) -> None:
    """A policy that would ask every millisecond still asks each of six running jobs only once per
    six status-window slots: together they keep within FASHN's /status window.

    Checked on what the engine decides, not on how long anything took: while all six jobs run, the
    gap between two status calls for one job is at least the interval (a busy machine can only make
    the gaps longer)."""
    scale = 0.05  # FASHN's /status window: 50 calls per 0.5 s, so six jobs get one call each per 60 ms
    (tmp_path / "inputs").mkdir()
    settings = make_settings(tmp_path / "home", tmp_path / "inputs", CALLSHEET_SANDBOX_TIME_SCALE=str(scale))
    model = tmp_path / "inputs" / "model.png"
    model.write_bytes(png_bytes())
    emulator = FashnEmulator(time_scale=0.01, seed=3)  # the predictions take 0.1-1.2 s
    calls: list[tuple[float, str]] = []

    async def recorded(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            calls.append((time.monotonic(), scope["path"]))
        await emulator.app(scope, receive, send)

    impatient = PollPolicy(looks=(), step=0.0, floor=0.001, ceiling=0.01)
    async with open_services(
        settings, sandbox_apps={"fashn": recorded}, retry=FAST_RETRY, poll=impatient
    ) as svc:
        jobs = [
            await svc.engine.submit("fashn", "model_swap", {"model_image": str(model), "seed": n})
            for n in range(6)
        ]
        with anyio.fail_after(30):
            result = await svc.engine.wait([j.job_id for j in jobs], wait_seconds=30)
        interval = svc.providers["fashn"].limiter.limits.poll_interval(6)
    assert interval == pytest.approx(0.06)
    assert all(j.status is JobStatus.SUCCEEDED for j in result.jobs)
    assert emulator.stats.sent_429 == 0
    all_sent = max(t for t, path in calls if path.endswith("/run"))
    polls: dict[str, list[float]] = {}
    for t, path in calls:
        if "/status/" in path:
            polls.setdefault(path, []).append(t)
    first_end = min(times[-1] for times in polls.values())  # after it, fewer jobs share the window
    gaps = [
        b - a
        for times in polls.values()
        for a, b in itertools.pairwise(times)
        if a >= all_sent and b < first_end
    ]
    assert gaps, "six jobs were followed together for a while"
    assert min(gaps) >= interval * 0.999  # every 1 ms would have been asked


def test_the_pace_is_the_median_of_the_jobs_seen_once_there_are_enough() -> None:
    assert pace([]) == pace([0.5] * (PACE_MIN_SEEN - 1)) == 1.0  # as documented until enough were seen
    assert pace([0.5, 0.4, 3.0, 0.6, 0.5]) == 0.5  # one slow job does not move it
    assert pace([2.0] * PACE_MIN_SEEN) == 2.0
    assert pace([0.85, 1.1, 0.9, 1.15, 0.95]) == 1.0  # near the documented pace: documented
    assert pace([1000.0] * PACE_MIN_SEEN) == PACE_RANGE[1] and pace([0.0] * PACE_MIN_SEEN) == PACE_RANGE[0]
