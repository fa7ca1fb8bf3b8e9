"""The sliding-window rate limit the sandbox emulators enforce, as the real providers do."""

from __future__ import annotations

from collections import deque


class SlidingWindow:
    """At most `limit` requests per `seconds`; a refused request does not use up the window."""

    def __init__(self, limit: int, seconds: float) -> None:
        self.limit = limit
        self.seconds = seconds
        self._times: deque[float] = deque()

    def admit(self, now: float) -> float | None:
        """Record the call and return None, or return how long to wait before the next one fits."""
        while self._times and self._times[0] <= now - self.seconds:
            self._times.popleft()
        if len(self._times) >= self.limit:
            return self._times[0] + self.seconds - now
        self._times.append(now)
        return None
