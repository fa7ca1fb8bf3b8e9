"""Pieces every sandbox emulator shares: its rate window, its fault of a dropped connection, and
saving its state so a restarted server finds the jobs it left running."""

from __future__ import annotations

import logging
from collections import deque
from pathlib import Path

import httpx
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from server.media import write_atomic

log = logging.getLogger("callsheet.sandbox")


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


class DroppedConnection(Response):
    """Starts a 200 answer, then fails: uvicorn cuts the socket, ASGITransport re-raises the error."""

    def __init__(self) -> None:
        super().__init__(status_code=200, headers={"content-length": "64"}, media_type="application/json")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
        raise httpx.RemoteProtocolError("Server disconnected without sending a response.")


def save_state(path: Path, text: str, what: str) -> None:
    """Replace the file atomically (a reader sees the old state or the new one, never half);
    a disk problem is logged and the emulator goes on in memory."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, text.encode())
    except OSError as exc:
        log.warning("could not save the %s sandbox state to %s: %s", what, path, exc)
