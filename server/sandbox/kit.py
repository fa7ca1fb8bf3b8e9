"""Pieces every sandbox emulator shares: its rate window, its fault of a dropped connection, a few
small helpers, and saving its state so a restarted server finds the jobs it left running."""

from __future__ import annotations

import logging
from collections import deque
from pathlib import Path
from typing import TypeVar

import httpx
from pydantic import BaseModel, ValidationError
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from server import paths

log = logging.getLogger("callsheet.sandbox")

StateT = TypeVar("StateT", bound=BaseModel)


class SlidingWindow:
    """At most `limit` requests per `seconds`; a refused request does not use up the window."""

    def __init__(self, limit: int, seconds: float) -> None:
        self.limit = limit
        self.seconds = seconds
        self._times: deque[float] = deque()

    def admit(self, now: float) -> float | None:
        """Record the call and return None, or return how long to wait before the next one fits."""
        self._trim(now)
        if len(self._times) >= self.limit:
            return self._times[0] + self.seconds - now
        self._times.append(now)
        return None

    def wait(self, now: float) -> float:
        """Seconds until the oldest request leaves the window (0 when the window is empty)."""
        self._trim(now)
        return max(self._times[0] + self.seconds - now, 0.0) if self._times else 0.0

    def count(self, now: float) -> int:
        """How many requests the window holds at `now`."""
        self._trim(now)
        return len(self._times)

    def _trim(self, now: float) -> None:
        while self._times and self._times[0] <= now - self.seconds:
            self._times.popleft()


class DroppedConnection(Response):
    """Starts a 200 answer, then fails: uvicorn cuts the socket, ASGITransport re-raises the error."""

    def __init__(self) -> None:
        super().__init__(status_code=200, headers={"content-length": "64"}, media_type="application/json")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
        raise httpx.RemoteProtocolError("Server disconnected without sending a response.")


def retry_after(wait: float) -> dict[str, str]:
    """The `Retry-After` header for a 429: fractional seconds, never zero."""
    return {"retry-after": f"{max(wait, 0.001):.3f}"}


def fit(long_side: int, ratio: tuple[int, int]) -> tuple[int, int]:
    """The size with `long_side` on the longer side and the other side from `ratio` (at least 1)."""
    w, h = ratio
    if w >= h:
        return long_side, max(1, round(long_side * h / w))
    return max(1, round(long_side * w / h)), long_side


def public_base(request: Request) -> str:
    """Scheme, host and mount prefix of the incoming request, so output URLs work wherever we are served."""
    root_path = str(request.scope.get("root_path", "")).rstrip("/")
    return f"{request.url.scheme}://{request.url.netloc}{root_path}"


def load_state(path: Path, model: type[StateT], what: str) -> StateT | None:
    """The saved state, or None when there is none yet; an unreadable file is logged and ignored."""
    try:
        return model.model_validate_json(path.read_bytes())
    except FileNotFoundError:
        return None
    except (OSError, ValidationError) as exc:
        log.warning("ignoring the %s sandbox state in %s: %s", what, path, exc)
        return None


def save_state(path: Path, text: str, what: str) -> None:
    """Replace the file atomically (a reader sees the old state or the new one, never half);
    a disk problem is logged and the emulator goes on in memory."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        paths.write_atomic(path.parent.resolve(), path.parent.resolve() / path.name, text.encode())
    except OSError as exc:
        log.warning("could not save the %s sandbox state to %s: %s", what, path, exc)
