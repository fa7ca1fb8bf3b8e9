"""Client-side rate limiting: callsheet queues its own requests instead of provoking 429s.

One `Limiter` per provider keeps every limit that provider has, in one place:
- the sliding windows of each endpoint kind (`Limits.windows`): `acquire(kind)` waits until every
  window has room, then counts the request;
- a `Retry-After` the provider asked for: `block(kind, seconds)` holds that kind until then;
- what the provider's `X-RateLimit-Remaining` / `X-RateLimit-Reset` headers still allow
  (`Limits.rate_headers`), minus the requests already on their way that those numbers do not count
  yet, so a burst sent before the first answer arrives meets no 429 either;
- the jobs in flight at the provider: `slot()` (FASHN: 6).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import anyio
import httpx

from server.policy import Limits


@dataclass
class Ticket:
    """One request let through: when it counts in the windows, and its place in the header budget."""

    kind: str
    counted_at: list[float]
    seq: int = 0


@dataclass
class _HeaderBudget:
    """What the latest rate headers allow. Until the first numbers arrive one request goes at a time;
    a provider that answers without the headers is then never held by them."""

    remaining: int | None = None
    reset_at: float = 0.0
    headerless: bool = False
    seen: int = 0
    """Sequence number of the request whose answer gave the current numbers."""
    sent: int = 0
    outstanding: set[int] = field(default_factory=set)

    def room(self, now: float) -> int:
        uncounted = sum(1 for seq in self.outstanding if seq > self.seen)
        if self.remaining is None:
            return 1 if self.headerless else 1 - uncounted
        return self.remaining + (1 if now >= self.reset_at else 0) - uncounted


class Limiter:
    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self._calls: dict[str, deque[list[float]]] = {}
        self._locks: dict[str, anyio.Lock] = {}
        self._blocked_until: dict[str, float] = {}
        self._budget = _HeaderBudget() if limits.rate_headers else None
        self._changed = anyio.Event()
        self.in_flight = 0
        """Jobs holding a slot: being submitted or followed at the provider."""

    async def acquire(self, kind: str) -> Ticket:
        """Wait until a request of `kind` may go: windows, Retry-After and header budget all allow it."""
        windows = self.limits.windows.get(kind, ())
        lock = self._locks.setdefault(kind, anyio.Lock())
        calls = self._calls.setdefault(kind, deque())
        async with lock:  # FIFO: anyio locks wake waiters in order
            while True:
                now = time.monotonic()
                wait = self._blocked_until.get(kind, 0.0) - now
                for w in windows:
                    recent = sorted(stamp[0] for stamp in calls if stamp[0] > now - w.period)
                    if len(recent) >= w.limit:
                        wait = max(wait, recent[-w.limit] + w.period - now)
                budget = self._budget
                if wait <= 0 and (budget is None or budget.room(now) > 0):
                    break
                changed = self._changed
                if wait <= 0 and budget is not None:  # held by the headers: until an answer or the reset
                    wait = budget.reset_at - now if budget.reset_at > now else 1.0
                with anyio.move_on_after(wait):
                    await changed.wait()
            stamp = [time.monotonic()]
            calls.append(stamp)
            longest = max((w.period for w in windows), default=0.0)
            while calls and calls[0][0] <= time.monotonic() - longest:
                calls.popleft()
            ticket = Ticket(kind, stamp)
            if self._budget is not None:
                self._budget.sent += 1
                ticket.seq = self._budget.sent
                self._budget.outstanding.add(ticket.seq)
        return ticket

    def answered(self, ticket: Ticket, headers: httpx.Headers | None = None) -> None:
        """The request is over (answered, or failed on the way).

        It counts in the windows from now, the latest moment it can have arrived: the provider
        counts a request when it arrives, and counting from the answer keeps the window honest when
        one request travels slower than the ones after it. Its answer's rate headers, if any, update
        the budget.
        """
        ticket.counted_at[0] = time.monotonic()
        budget = self._budget
        if budget is not None:
            budget.outstanding.discard(ticket.seq)
            numbers = rate_limit_headers(headers) if headers is not None else None
            if numbers is None and headers is not None:
                budget.headerless = budget.headerless or budget.remaining is None
            elif numbers is not None:
                budget.headerless = False
                self._learn(ticket.seq, *numbers)
        numbers = rate_limit_headers(headers) if headers is not None else None
        if numbers is not None and numbers[0] <= 0:
            self.block(ticket.kind, numbers[1])  # nothing left until the reset, whatever else we know
        self._wake()

    def block(self, kind: str, seconds: float, ticket: Ticket | None = None) -> None:
        """The provider said Retry-After (or that nothing is left): hold every request of this kind."""
        until = time.monotonic() + seconds
        self._blocked_until[kind] = max(self._blocked_until.get(kind, 0.0), until)
        if ticket is not None and self._budget is not None:
            self._learn(ticket.seq, 0, seconds)

    def _learn(self, seq: int, remaining: int, reset: float) -> None:
        budget = self._budget
        if budget is not None and seq > budget.seen:
            budget.seen, budget.remaining = seq, remaining
            budget.reset_at = time.monotonic() + reset

    def _wake(self) -> None:
        self._changed.set()
        self._changed = anyio.Event()

    @asynccontextmanager
    async def slot(self, *, wait: bool = True) -> AsyncIterator[Callable[[], None]]:
        """Hold one in-flight slot while a job runs at the provider; yields a function that frees it early.

        `wait=False` takes the slot at once even when full: for jobs resumed after a restart,
        which are already running at the provider and must be polled regardless.
        """
        limit = self.limits.max_in_flight
        while wait and limit is not None and self.in_flight >= limit:
            await self._changed.wait()
        self.in_flight += 1
        released = False

        def release() -> None:
            nonlocal released
            if not released:
                released = True
                self.in_flight -= 1
                self._wake()

        try:
            yield release
        finally:
            release()

    def poll_interval(self) -> float:
        """The shortest interval between two polls of one job now (`Limits.poll_interval`)."""
        return self.limits.poll_interval(self.in_flight)


def rate_limit_headers(headers: httpx.Headers) -> tuple[int, float] | None:
    """`X-RateLimit-Remaining` and the seconds until `X-RateLimit-Reset` (clamped to 0-120 s).

    None when either header is missing or not a number.
    """
    remaining = headers.get("x-ratelimit-remaining")
    reset = headers.get("x-ratelimit-reset")
    if remaining is None or reset is None:
        return None
    try:
        left, until = int(float(remaining)), float(reset)
    except ValueError:
        return None
    # Either seconds to wait or an epoch time, depending on the provider.
    wait = until - time.time() if until > 1_000_000_000 else until
    return left, min(max(wait, 0.0), 120.0)
