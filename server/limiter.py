"""Client-side rate limiting: callsheet queues its own requests instead of provoking 429s.

One `Limiter` per provider. `acquire(kind)` waits until every sliding window of that endpoint
kind has room (and any Retry-After the provider asked for has passed), then records the call.
`slot()` bounds the jobs in flight at the provider (FASHN: 6).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio

from server.policy import Limits


class Limiter:
    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self._calls: dict[str, deque[float]] = {}
        self._locks: dict[str, anyio.Lock] = {}
        self._blocked_until: dict[str, float] = {}
        self.in_flight = 0
        self._slot_freed = anyio.Event()

    async def acquire(self, kind: str) -> None:
        windows = self.limits.windows.get(kind, ())
        lock = self._locks.setdefault(kind, anyio.Lock())
        calls = self._calls.setdefault(kind, deque())
        async with lock:  # FIFO: anyio locks wake waiters in order
            while True:
                now = time.monotonic()
                wait = self._blocked_until.get(kind, 0.0) - now
                for w in windows:
                    recent = [t for t in calls if t > now - w.period]
                    if len(recent) >= w.limit:
                        wait = max(wait, recent[-w.limit] + w.period - now)
                if wait <= 0:
                    break
                await anyio.sleep(wait)
            calls.append(time.monotonic())
            longest = max((w.period for w in windows), default=0.0)
            while calls and calls[0] <= time.monotonic() - longest:
                calls.popleft()

    def block(self, kind: str, seconds: float) -> None:
        """The provider said Retry-After: hold every request of this kind until then."""
        until = time.monotonic() + seconds
        self._blocked_until[kind] = max(self._blocked_until.get(kind, 0.0), until)

    @asynccontextmanager
    async def slot(self, *, wait: bool = True) -> AsyncIterator[None]:
        """Hold one in-flight slot while a job runs at the provider.

        `wait=False` takes the slot at once even when full: for jobs resumed after a restart,
        which are already running at the provider and must be polled regardless.
        """
        limit = self.limits.max_in_flight
        while wait and limit is not None and self.in_flight >= limit:
            await self._slot_freed.wait()
        self.in_flight += 1
        try:
            yield
        finally:
            self.in_flight -= 1
            self._slot_freed.set()
            self._slot_freed = anyio.Event()
