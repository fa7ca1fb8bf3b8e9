"""Client-side rate limiting: callsheet queues its own requests instead of provoking 429s.

One `Limiter` per provider keeps every limit that provider has, in one place:
- the sliding windows of each endpoint kind (`Limits.windows`): `acquire(kind)` waits until every
  window has room, then counts the request;
- a `Retry-After` the provider asked for: `block(kind, seconds)` holds that kind until then;
- what the provider's `X-RateLimit-Remaining` / `X-RateLimit-Reset` headers still allow
  (`Limits.rate_headers`), minus the requests already on their way that those numbers do not count
  yet, so a burst sent before the first answer arrives meets no 429 either;
- the jobs in flight at the provider: `take()` and `free()` (FASHN: 6).

The counting lives in a `Book`: `LocalBook` in this process, or a Redis book
(`server/store/redis.py`) that every replica shares, so that N replicas on one provider account keep
its limits exactly as one process does. Both pass the same contract tests (tests/test_limiter.py).
A slot is held in the book for as long as its job's lease, and renewed with it: a slot of a replica
that died is freed when its lease lapses.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Protocol

import anyio
import httpx

from server.policy import Limits, RateWindow
from server.signals import Signals

SLOT_RECHECK_SECONDS = 1.0
"""A job waiting for an in-flight slot looks again at least this often (a slot held by a replica
that died frees itself when its lease lapses, without a signal)."""
SLOTS_COUNTED_EVERY = 0.5
"""The poll interval spreads the status budget over the slots taken, counted this often at most."""
OUTSTANDING_SECONDS = 300.0
"""A request unanswered this long no longer holds back the header budget (its sender died)."""


@dataclass
class Ticket:
    """One request let through: its id in the windows, and its place in the header budget."""

    kind: str
    id: str
    seq: int = 0


class Book(Protocol):
    """Where one provider's limits are counted; every operation is atomic."""

    async def admit(self, ticket: Ticket, windows: tuple[RateWindow, ...], budget: bool) -> tuple[float, int]:
        """Count `ticket` now if every window, a `block` and (with `budget`) the header budget allow it:
        returns (0, its sequence number in the budget). Otherwise counts nothing and returns the
        seconds to wait before asking again (and 0)."""

    async def answered(self, ticket: Ticket, numbers: tuple[int, float] | None, has_headers: bool) -> None:
        """The request is over: it counts in the windows from now. Its answer's rate headers (`numbers`:
        remaining, seconds to reset) update the budget; an answer without them (`has_headers` and no
        numbers) tells that the provider does not send them."""

    async def block(self, kind: str, seconds: float, seq: int | None) -> None:
        """Hold every request of `kind` for `seconds`; `seq`: the request that was told so."""

    async def take_slot(self, job_id: str, limit: int | None, ttl: float) -> bool:
        """Take (or keep) an in-flight slot for `job_id` for `ttl` seconds if fewer than `limit` are
        taken (`None`: take it regardless); False when full."""

    async def renew_slots(self, job_ids: list[str], ttl: float) -> None:
        """Keep the slots of these jobs for another `ttl` seconds."""

    async def free_slots(self, job_ids: list[str]) -> None:
        """Give these jobs' slots back."""

    async def slots_taken(self) -> int:
        """Slots taken now, by every process that shares the book."""


@dataclass
class _Budget:
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

    def wait(self, now: float) -> float:
        """Held by the headers: until the reset, or until an answer (a signal) brings numbers."""
        return self.reset_at - now if self.reset_at > now else 1.0

    def learn(self, seq: int, remaining: int, reset: float, now: float) -> None:
        if seq > self.seen:
            self.seen, self.remaining, self.reset_at = seq, remaining, now + reset


class LocalBook:
    """A provider's limits counted in this process (the embedded default)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._calls: dict[str, dict[str, float]] = {}
        self._blocked_until: dict[str, float] = {}
        self._budget = _Budget()
        self._slots: dict[str, float] = {}

    async def admit(self, ticket: Ticket, windows: tuple[RateWindow, ...], budget: bool) -> tuple[float, int]:
        now = self.clock()
        calls = self._calls.setdefault(ticket.kind, {})
        longest = max((w.period for w in windows), default=0.0)
        for old in [t for t, stamp in calls.items() if stamp <= now - longest]:
            del calls[old]
        wait = self._blocked_until.get(ticket.kind, 0.0) - now
        for w in windows:
            recent = sorted(stamp for stamp in calls.values() if stamp > now - w.period)
            if len(recent) >= w.limit:
                wait = max(wait, recent[-w.limit] + w.period - now)
        if wait <= 0 and budget and self._budget.room(now) <= 0:
            wait = self._budget.wait(now)
        if wait > 0:
            return wait, 0
        calls[ticket.id] = now
        if not budget:
            return 0.0, 0
        self._budget.sent += 1
        self._budget.outstanding.add(self._budget.sent)
        return 0.0, self._budget.sent

    async def answered(self, ticket: Ticket, numbers: tuple[int, float] | None, has_headers: bool) -> None:
        now = self.clock()
        calls = self._calls.get(ticket.kind, {})
        if ticket.id in calls:
            calls[ticket.id] = now
        budget = self._budget
        if ticket.seq:
            budget.outstanding.discard(ticket.seq)
            if numbers is None and has_headers:
                budget.headerless = budget.headerless or budget.remaining is None
            elif numbers is not None:
                budget.headerless = False
                budget.learn(ticket.seq, numbers[0], numbers[1], now)

    async def block(self, kind: str, seconds: float, seq: int | None) -> None:
        now = self.clock()
        self._blocked_until[kind] = max(self._blocked_until.get(kind, 0.0), now + seconds)
        if seq:
            self._budget.learn(seq, 0, seconds, now)

    async def take_slot(self, job_id: str, limit: int | None, ttl: float) -> bool:
        if job_id not in self._slots and limit is not None and len(self._slots) >= limit:
            return False
        self._slots[job_id] = self.clock() + ttl
        return True

    async def renew_slots(self, job_ids: list[str], ttl: float) -> None:
        """Nothing to do: in one process a slot lives exactly as long as its holder."""

    async def free_slots(self, job_ids: list[str]) -> None:
        for job_id in job_ids:
            self._slots.pop(job_id, None)

    async def slots_taken(self) -> int:
        return len(self._slots)


@dataclass
class Follow:
    """One job being followed (`Limiter.following`)."""

    limiter: Limiter
    stepping: bool = False

    def step(self) -> None:
        """The job is past its planned looks and steps through its tail (counted once)."""
        if not self.stepping:
            self.stepping = True
            self.limiter._stepping += 1


class Limiter:
    def __init__(
        self, limits: Limits, book: Book | None = None, signals: Signals | None = None, topic: str = "limits"
    ) -> None:
        self.limits = limits
        self.book: Book = book or LocalBook()
        self.signals = signals or Signals()
        self.topic = topic
        """What a freed slot or a new budget is signalled on (`signals.limits_topic(provider)`)."""
        self.recheck = SLOT_RECHECK_SECONDS
        self._taken, self._counted_at = 0, -SLOTS_COUNTED_EVERY
        self._followed = 0
        self._stepping = 0
        """This process's jobs being followed, and those of them past their planned looks (`following`)."""
        self._locks: dict[str, anyio.Lock] = {}

    async def acquire(self, kind: str) -> Ticket:
        """Wait until a request of `kind` may go: windows, Retry-After and header budget all allow it."""
        windows = self.limits.windows.get(kind, ())
        ticket = Ticket(kind, uuid.uuid4().hex)
        async with self._locks.setdefault(kind, anyio.Lock()):  # FIFO: anyio locks wake waiters in order
            with self.signals.watch([self.topic]) as changed:
                while True:
                    wait, ticket.seq = await self.book.admit(ticket, windows, self.limits.rate_headers)
                    if wait <= 0:
                        return ticket
                    await changed.wait(wait)

    async def answered(self, ticket: Ticket, headers: httpx.Headers | None = None) -> None:
        """The request is over (answered, or failed on the way).

        It counts in the windows from now, the latest moment it can have arrived: the provider
        counts a request when it arrives, and counting from the answer keeps the window honest when
        one request travels slower than the ones after it. Its answer's rate headers, if any, update
        the budget.
        """
        numbers = rate_limit_headers(headers) if headers is not None else None
        await self.book.answered(ticket, numbers, headers is not None)
        if numbers is not None and numbers[0] <= 0:
            await self.block(ticket.kind, numbers[1])  # nothing left until the reset, whatever else we know
        elif self.limits.rate_headers:
            await self.signals.notify(self.topic)  # the budget moved: requests held by it may go

    async def block(self, kind: str, seconds: float, ticket: Ticket | None = None) -> None:
        """The provider said Retry-After (or that nothing is left): hold every request of this kind."""
        seq = ticket.seq if ticket is not None and self.limits.rate_headers else None
        await self.book.block(kind, seconds, seq)
        await self.signals.notify(self.topic)

    async def take(self, job_id: str, *, ttl: float, wait: bool = True) -> None:
        """Take an in-flight slot for a job about to run at the provider, waiting for one when full;
        `free` gives it back. `wait=False` takes it at once even when full: for jobs resumed after a
        restart, which already run at the provider and must be polled regardless. The slot lasts `ttl`
        seconds unless renewed (`renew`), as the job's lease does."""
        limit = self.limits.max_in_flight if wait else None
        with self.signals.watch([self.topic]) as changed:
            while True:
                if await self.book.take_slot(job_id, limit, ttl):
                    self._taken += 1  # counted again from the store now and then (other replicas' slots)
                    return
                await changed.wait(self.recheck)

    async def free(self, job_ids: list[str]) -> None:
        """Give these jobs' slots back, and wake whoever waits for one (here or on other replicas)."""
        await self.book.free_slots(job_ids)
        self._taken = max(0, self._taken - len(job_ids))
        await self.signals.notify(self.topic)

    async def renew(self, job_ids: list[str], ttl: float) -> None:
        await self.book.renew_slots(job_ids, ttl)

    @contextmanager
    def following(self) -> Iterator[Follow]:
        """While the engine follows a job of this provider: counted for `poll_interval`'s share."""
        follow = Follow(self)
        self._followed += 1
        try:
            yield follow
        finally:
            self._followed -= 1
            self._stepping -= follow.stepping

    async def poll_interval(self) -> float:
        """The shortest interval between two polls of one job now (`Limits.poll_interval`).

        The status budget is shared by the jobs that step through their tail: a job's planned looks
        are few (four over its typical duration) and the windows admit them when they come. How many
        step is the jobs in flight (slots taken, other replicas' too) times the share of this
        process's followed jobs that step (one at least). Slots this process takes and frees are
        counted as they happen, and the store's count is read at most every `SLOTS_COUNTED_EVERY`."""
        now = time.monotonic()
        if self.limits.windows.get(self.limits.poll_kind) and now - self._counted_at >= SLOTS_COUNTED_EVERY:
            self._taken, self._counted_at = await self.book.slots_taken(), now
        share = min(max(self._stepping, 1) / max(self._followed, 1), 1.0)
        return self.limits.poll_interval(self._taken * share)


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
