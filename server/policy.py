"""Retry policy, timeouts, polling and provider limits: every such number lives here."""

from __future__ import annotations

import random
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, replace

import httpx


@dataclass(frozen=True)
class Timing:
    """How long one request may take: per phase (`timeout`) and in all, answer included (`deadline`).

    Per-read timeouts alone let a provider that sends one byte every few seconds hold a request for
    ever; the deadline ends it. Connect failures are safe to retry (nothing was sent); a request cut
    short after sending may have landed, so the engine never resends a submission that was.
    """

    timeout: httpx.Timeout
    deadline: float


HTTP = Timing(httpx.Timeout(connect=10.0, read=60.0, write=60.0, pool=30.0), deadline=120.0)
# Outputs up to MAX_DOWNLOAD_BYTES: the deadline allows about 256 KB/s for the largest.
DOWNLOAD = Timing(httpx.Timeout(connect=10.0, read=120.0, write=30.0, pool=30.0), deadline=900.0)
MAX_DOWNLOAD_BYTES = 200 * 1024 * 1024
MAX_INPUT_IMAGE_BYTES = 25 * 1024 * 1024
# Text arguments (prompts, names, ids) are capped: a prompt is a few thousand characters at most.
MAX_TEXT_CHARS = 8000
# A shoot plan as JSON (it is stored with the shoot): a hundred steps with long prompts fit.
MAX_PLAN_CHARS = 1_000_000
# An image reference may be a data URI of the largest accepted image (base64 is 4/3 of the bytes).
MAX_IMAGE_REF_CHARS = (MAX_INPUT_IMAGE_BYTES + 2) // 3 * 4 + 100
# Most jobs one shoot plan may expand to (CALLSHEET_MAX_PLAN_JOBS): fanning out over earlier outputs
# multiplies, and six steps of four images each would otherwise be tens of thousands of jobs.
MAX_PLAN_JOBS = 500
# A shoot estimated above this many credits needs the user's confirmation before it starts.
CONFIRM_ABOVE_CREDITS = 20.0
# Calls whose inputs are read and checked at once (the rest wait their turn, in order of arrival).
PREPARE_AT_ONCE = 4


@dataclass(frozen=True)
class RetryPolicy:
    """Capped exponential backoff with full jitter, for transient errors only."""

    attempts: int = 6
    base: float = 1.0
    cap: float = 30.0

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        """Delay before retry number `attempt` (1-based); a provider's Retry-After wins when longer."""
        backoff = random.uniform(0, min(self.cap, self.base * 2 ** (attempt - 1)))
        return max(backoff, retry_after or 0.0)


@dataclass(frozen=True)
class PollPolicy:
    """When to ask the provider whether a job has ended, from the model's typical duration.

    A fixed tick either wastes calls (FASHN's SDK asks every second: ~40 calls for a 40 s try-on) or
    notices the end late, and a late look keeps the job's in-flight slot from the next job. So: four
    `looks` before and around the typical duration (the median job ends by the fourth), then one every
    `step` x typical while the job is within the model's usual range, then, once it runs longer than
    `overdue` x typical, backing off to `factor` x the elapsed time. Never sooner than `floor` nor
    later than `ceiling` seconds; the engine also keeps polls within the provider's status budget
    (`Limits.poll_interval`).

    A look the ceiling brings forward (a long job) is one more: the planned looks still come where they
    were planned. The ceiling was chosen for the documented durations, so it stretches with a provider
    found to run slower (`pace`): at twice the documented durations the looks are those of the
    documented pace, twice as far apart.

    The looks come from the try-on durations FASHN documents (20-120 s, about 40 s): placed to make
    the mean delay between a job's end and the look that sees it smallest with four looks for the
    median job (about 3 % of the duration, against 7 % for looks at 0.7 and 1.0 then +50 %).
    """

    looks: tuple[float, ...] = (0.65, 0.83, 0.92, 1.04)
    step: float = 0.03
    overdue: float = 3.0
    factor: float = 1.5
    floor: float = 0.5
    ceiling: float = 30.0
    webhook_safety: float = 5.0
    """A job whose provider calls back when it ends (a webhook) is looked at only as a safety net: not
    before this many times its typical duration (past the longest durations FASHN documents, about 4x
    the typical one), by when the webhook has come unless it was lost."""

    def next_look(
        self, typical: float, elapsed: float, planned: int, pace: float = 1.0
    ) -> tuple[float, bool]:
        """Seconds until the next look at a job running for `elapsed` s that has had `planned` of its
        planned looks, and whether that look is the next planned one. `typical` is the documented
        duration times `pace`, how fast the provider runs against its documented durations."""
        ceiling = self.ceiling * max(pace, 1.0)
        if planned < len(self.looks):
            wait = self.looks[planned] * typical - elapsed
            return (ceiling, False) if wait > ceiling else (max(wait, self.floor), True)
        target = elapsed + self.step * typical if elapsed < self.overdue * typical else elapsed * self.factor
        return min(max(target - elapsed, self.floor), ceiling), False

    def passed(self, typical: float, elapsed: float) -> int:
        """The planned looks a job taken up `elapsed` s after it started (a restart) has missed, but the
        last of them, which it has at once."""
        return max(0, sum(look * typical <= elapsed for look in self.looks) - 1)


# Learned pace: how fast each provider's operation really runs against its documented typical duration.
PACE_KEPT = 30
"""The most recent jobs of an operation whose durations set its pace."""
PACE_MIN_SEEN = 5
"""Until this many were seen, the documented duration is used as it is."""
PACE_TOLERANCE = 0.2
"""While the jobs seen run within this share of the documented pace, the documented durations stay:
the looks were placed for them, and a batch's first ends are its shortest jobs, not its typical ones."""
PACE_REREAD = 30.0
"""Seconds between re-reads of a pace that other replicas may have taught meanwhile."""
PACE_RANGE = (0.1, 10.0)
"""A job's duration is counted at most this far from the documented one (either way)."""


def pace(ratios: Sequence[float]) -> float:
    """How fast an operation runs now (1: as documented, 0.5: twice as fast), from the `ratios` of
    actual to documented duration of the last jobs seen: their median, once there are enough and it
    is further from the documented pace than PACE_TOLERANCE.

    The poll policy's looks are placed in units of the typical duration, so scaling it by the pace
    places them where the actual durations fall: a provider that runs twice as fast is seen on time,
    one that runs twice as slow does not spend its looks before the end."""
    if len(ratios) < PACE_MIN_SEEN:
        return 1.0
    seen = statistics.median(ratios)
    if abs(seen - 1.0) <= PACE_TOLERANCE:
        return 1.0
    return min(max(seen, PACE_RANGE[0]), PACE_RANGE[1])


@dataclass(frozen=True)
class RateWindow:
    """At most `limit` requests per `period` seconds (a sliding window)."""

    limit: int
    period: float


@dataclass(frozen=True)
class Limits:
    windows: dict[str, tuple[RateWindow, ...]]
    """Per endpoint kind ("run", "status", "credits", ...), the windows that apply."""
    max_in_flight: int | None = None
    """Jobs running at the provider at once (FASHN: 6 per account)."""
    poll_kind: str = "status"
    """The endpoint kind that status polls count against."""
    poll_share: float = 1.0
    """The share of that kind's rate that polling may take: below 1 where submissions share it."""
    rate_headers: bool = False
    """The provider announces what is left in `X-RateLimit-*` headers: keep within them too."""

    def poll_interval(self, jobs: float) -> float:
        """The shortest interval between two polls of one job while `jobs` jobs poll at it, so that
        together they keep within `poll_share` of every window of `poll_kind`."""
        windows = self.windows.get(self.poll_kind, ())
        return max((w.period * jobs / (w.limit * self.poll_share) for w in windows), default=0.0)

    def scaled(self, factor: float) -> Limits:
        """The same limits with windows shortened by `factor` (sandbox time scaling)."""
        return replace(
            self,
            windows={
                kind: tuple(RateWindow(w.limit, w.period * factor) for w in ws)
                for kind, ws in self.windows.items()
            },
        )
