"""Client-side rate limiting: callsheet queues its own requests instead of provoking 429s.

One `Limiter` per provider. `acquire(kind)` waits until every sliding window of that endpoint
kind has room (and any Retry-After the provider asked for has passed), then records the call.
`slot()` bounds the jobs in flight at the provider (FASHN: 6).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import anyio

from server.policy import Limits


class Limiter:
    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self._calls: dict[str, deque[list[float]]] = {}
        self._locks: dict[str, anyio.Lock] = {}
        self._blocked_until: dict[str, float] = {}
        self.in_flight = 0
        """Jobs holding a slot: being submitted or followed at the provider."""
        self._slot_freed = anyio.Event()

    async def acquire(self, kind: str) -> list[float]:
        """Wait for room in every window of `kind`; returns the request's stamp for `settle`."""
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
                if wait <= 0:
                    break
                await anyio.sleep(wait)
            stamp = [time.monotonic()]
            calls.append(stamp)
            longest = max((w.period for w in windows), default=0.0)
            while calls and calls[0][0] <= time.monotonic() - longest:
                calls.popleft()
        return stamp

    @staticmethod
    def settle(stamp: list[float]) -> None:
        """The answer came back: count the request from now, the latest moment it can have arrived.

        The provider counts a request when it arrives, after the network delay; counting from the
        answer keeps the window honest when one request travels slower than the ones after it.
        """
        stamp[0] = time.monotonic()

    def block(self, kind: str, seconds: float) -> None:
        """The provider said Retry-After: hold every request of this kind until then."""
        until = time.monotonic() + seconds
        self._blocked_until[kind] = max(self._blocked_until.get(kind, 0.0), until)

    @asynccontextmanager
    async def slot(self, *, wait: bool = True) -> AsyncIterator[Callable[[], None]]:
        """Hold one in-flight slot while a job runs at the provider; yields a function that frees it early.

        `wait=False` takes the slot at once even when full: for jobs resumed after a restart,
        which are already running at the provider and must be polled regardless.
        """
        limit = self.limits.max_in_flight
        while wait and limit is not None and self.in_flight >= limit:
            await self._slot_freed.wait()
        self.in_flight += 1
        released = False

        def release() -> None:
            nonlocal released
            if not released:
                released = True
                self.in_flight -= 1
                self._slot_freed.set()
                self._slot_freed = anyio.Event()

        try:
            yield release
        finally:
            release()
