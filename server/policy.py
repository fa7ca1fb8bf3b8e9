"""Retry policy, timeouts, polling and provider limits: every such number lives here."""

from __future__ import annotations

import random
from dataclasses import dataclass

import httpx

# Every request has a timeout. Connect failures are safe to retry (nothing was sent);
# a read timeout on a submission may mean it landed, so the engine never resends it.
HTTP_TIMEOUT = httpx.Timeout(connect=10.0, read=60.0, write=60.0, pool=30.0)
DOWNLOAD_TIMEOUT = httpx.Timeout(connect=10.0, read=120.0, write=30.0, pool=30.0)
MAX_DOWNLOAD_BYTES = 200 * 1024 * 1024
MAX_INPUT_IMAGE_BYTES = 25 * 1024 * 1024


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
    """Polling starts near the model's typical duration and backs off, instead of a fixed 1 s tick.

    First look at `first` x typical, then at growing fractions, then every `factor` x the last
    interval, never below `floor` seconds nor above `ceiling` seconds.
    """

    first: float = 0.7
    second: float = 1.0
    factor: float = 1.5
    floor: float = 0.5
    ceiling: float = 30.0

    eager_from: float = 0.8
    eager_step: float = 0.1

    def eager_delay(self, typical: float, elapsed: float) -> float:
        """While other jobs queue for a slot: from `eager_from` x typical on, every `eager_step` x typical."""
        start = self.eager_from * typical
        if elapsed < start:
            return max(start - elapsed, self.floor)
        return max(self.eager_step * typical, self.floor)

    def next_delay(self, typical: float, elapsed: float, calls: int) -> float:
        if calls == 0:
            target = self.first * typical
        elif calls == 1:
            target = self.second * typical
        else:
            target = elapsed * self.factor
        return min(max(target - elapsed, self.floor), self.ceiling)


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

    def scaled(self, factor: float) -> Limits:
        """The same limits with windows shortened by `factor` (sandbox time scaling)."""
        return Limits(
            windows={
                kind: tuple(RateWindow(w.limit, w.period * factor) for w in ws)
                for kind, ws in self.windows.items()
            },
            max_in_flight=self.max_in_flight,
        )


# FASHN: /run 50 per 60 s, /status 50 per 10 s, /credits 30 per 10 s, 6 predictions in flight.
FASHN_LIMITS = Limits(
    windows={
        "run": (RateWindow(50, 60.0),),
        "status": (RateWindow(50, 10.0),),
        "credits": (RateWindow(30, 10.0),),
        "cancel": (RateWindow(50, 10.0),),
    },
    max_in_flight=6,
)

# Auto Toon documents no numbers: 429 RATE_LIMITED "retry after the indicated delay" is honoured, and
# these defaults keep well below what an interactive account would hit. Its image calls answer only
# when the image is done (tens of seconds), so they get a long read timeout.
AUTOTOON_LIMITS = Limits(
    windows={
        "generate": (RateWindow(20, 60.0),),
        "status": (RateWindow(60, 60.0),),
        "list": (RateWindow(30, 60.0),),
    },
    max_in_flight=4,
)
SYNC_GENERATION_TIMEOUT = httpx.Timeout(connect=10.0, read=300.0, write=60.0, pool=30.0)

# neo-fashion: one rolling 60 s window per workspace for every request; Starter 60/min by default,
# NEOFASHION_RATE_PER_MINUTE for Pro (300) or a custom plan. X-RateLimit-* headers refine it live.
# A short image may be answered synchronously (the POST returns the finished result), so generation
# POSTs get a long read timeout: a read timeout on a POST could mean a charge without a result.
NEOFASHION_DEFAULT_RATE = 60
NEOFASHION_GENERATE_TIMEOUT = httpx.Timeout(connect=10.0, read=180.0, write=60.0, pool=30.0)

# Generation API (self-hosted): no documented numbers; poll with backoff as its notes advise.
GENAPI_LIMITS = Limits(
    windows={"api": (RateWindow(120, 60.0),)},
    max_in_flight=8,
)


def neofashion_limits(per_minute: int = NEOFASHION_DEFAULT_RATE) -> Limits:
    return Limits(windows={"api": (RateWindow(per_minute, 60.0),)}, max_in_flight=None)
