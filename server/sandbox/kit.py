"""The kit every sandbox emulator is built on.

An emulator answers a provider's documented HTTP API in process (or under uvicorn) so the real
adapter runs against it unchanged. What they all need is here, once: `Emulator` (the clock and
time scale, the key check, numbered requests, rendering placeholder files with a cache, the state
file that lets a restarted server find what it left running, read again only when another process
changed it and written off the event loop, many changes in one write), `Refusal` (an error answer, which
each emulator writes in its provider's own shape), `next_fault` (the injected failures tests ask
for), the rate window, the dropped connection, and a few helpers.
"""

from __future__ import annotations

import logging
import os
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import anyio
import anyio.to_thread
import httpx
from pydantic import BaseModel, ValidationError
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from server import paths

log = logging.getLogger("callsheet.sandbox")

StateT = TypeVar("StateT", bound=BaseModel)

RENDERED_KEPT = 32
"""Placeholder files kept rendered per emulator (they are drawn again from their seed on demand)."""


class Refusal(Exception):
    """A request the emulated provider answers with an error status. `code` is the provider's own
    name for the error, `extra` more fields of its error body, `headers` what the answer carries."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        code: str | None = None,
        headers: dict[str, str] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.headers = headers
        self.extra = extra or {}


def next_fault(statuses: list[int]) -> int | None:
    """The next injected status a test asked for (consumed), or None."""
    return statuses.pop(0) if statuses else None


class Emulator:
    """What every emulator shares. A subclass names its `title` and `state_file`, and builds `app`."""

    title: ClassVar[str]
    state_file: ClassVar[str]
    app: ASGIApp
    """The emulated HTTP API."""

    def __init__(
        self,
        *,
        time_scale: float = 0.05,
        api_key: str | None = None,
        seed: int = 0,
        clock: Callable[[], float] | None = None,
        state_dir: Path | None = None,
        pace: float = 1.0,
    ) -> None:
        """`time_scale` scales every duration and rate window, `pace` only the durations of jobs (2:
        twice as slow as documented, as a provider on a busy day); `api_key=None` accepts any key; `clock`
        is for tests that step time by hand; with `state_dir`, state is kept in `state_file` there
        (and the clock is wall-clock time, since monotonic times mean nothing to the next process)."""
        if time_scale <= 0:
            raise ValueError("time_scale must be positive")
        if pace <= 0:
            raise ValueError("pace must be positive")
        self.time_scale = time_scale
        self.pace = pace
        self.api_key = api_key
        self.seed = seed
        self.state_dir = state_dir
        self.clock = clock or (time.time if state_dir is not None else time.monotonic)
        self.next_number = 0
        self.reads = self.writes = 0
        """State files read and written, for tests: a file is read again only after another process
        wrote it, and the changes made while a write is on its way share the next one."""
        self._rendered: OrderedDict[object, tuple[bytes, str]] = OrderedDict()
        self._on_disk: Signature | None = None
        """The state file as this emulator last read or wrote it: while it is so, it holds nothing new."""
        self._asked = self._landed = 0
        """Saves asked for, and how many of them the latest write covered."""
        self._writing: anyio.Event | None = None

    def seconds(self, documented: float) -> float:
        """How long a job documented to take `documented` seconds takes here."""
        return max(documented * self.pace * self.time_scale, 1e-6)

    def number(self) -> int:
        """A new request number (seeds what it draws, so a run is repeatable)."""
        number = self.next_number
        self.next_number += 1
        return number

    def check_key(
        self,
        request: Request,
        *,
        header: str = "authorization",
        code: str = "UNAUTHORIZED",
        message: str = "Unauthorized: the API key is missing or invalid.",
    ) -> None:
        """The provider's key check: a bearer token, or the key in `header` when that is not
        Authorization. Raises a 401 Refusal with the provider's own `code` and `message` for it."""
        value = request.headers.get(header, "").strip()
        if header == "authorization":
            scheme, _, value = value.partition(" ")
            value = value.strip() if scheme.lower() == "bearer" else ""
        if not value or (self.api_key is not None and value != self.api_key):
            raise Refusal(401, message, code=code)

    async def render(
        self, key: object, kind: str, width: int, height: int, lines: list[str], seed: int
    ) -> tuple[bytes, str]:
        """A labelled placeholder file (`kind`: png, jpg, webp or video) and its MIME type, drawn in a
        worker thread and kept for the next request for it."""
        cached = self._rendered.get(key)
        if cached is not None:
            self._rendered.move_to_end(key)
            return cached
        from server.sandbox import images  # Pillow is loaded by the first placeholder, not by a start

        if kind == "video":
            media = await anyio.to_thread.run_sync(images.placeholder_video, width, height, lines, seed)
        else:
            draw, mime = images.STILLS[kind]
            media = (await anyio.to_thread.run_sync(draw, width, height, lines, seed), mime)
        self._rendered[key] = media
        while len(self._rendered) > RENDERED_KEPT:
            self._rendered.popitem(last=False)
        return media

    def forget_rendered(self, key: object) -> None:
        self._rendered.pop(key, None)

    def load(self, model: type[StateT]) -> StateT | None:
        """The saved state (None without a state folder or before the first save)."""
        if self.state_dir is None:
            return None
        self.reads += 1
        state, self._on_disk = load_state(self.state_dir / self.state_file, model, self.title)
        return state

    def changed_on_disk(self) -> bool:
        """Whether the state file may hold what this emulator has not taken in, because another process
        on the same folder wrote it since this one last read or wrote it: a `stat`, not a read. False
        while a write of this emulator's is on its way (the writer took the file in just before)."""
        if self.state_dir is None or self._writing is not None:
            return False
        try:
            now: Signature | None = signature(os.stat(self.state_dir / self.state_file))
        except FileNotFoundError:
            now = None
        except OSError:
            return True  # `load` says what is wrong
        return now != self._on_disk

    def save(self, state: BaseModel) -> None:
        """Replace the state file now (without a state folder, nothing)."""
        if self.state_dir is not None:
            self._wrote(save_state(self.state_dir / self.state_file, state.model_dump_json(), self.title))

    async def persist(self, render: Callable[[], BaseModel]) -> None:
        """Save the state, returning once a write that covers every change made so far is on disk (so a
        restarted server finds what it was answered). The file is written in a worker thread, and
        requests go on meanwhile; changes made while a write is on its way wait for it and are written
        together by the next. `render` gives the state at the write's turn, on the event loop."""
        if self.state_dir is None:
            return
        self._asked += 1
        mine = self._asked
        while self._landed < mine:
            if self._writing is not None:
                await self._writing.wait()
                continue
            covered = self._asked
            text = render().model_dump_json()  # no await since `covered`: it holds every change asked for
            self._writing = writing = anyio.Event()
            try:
                path = self.state_dir / self.state_file
                self._wrote(await anyio.to_thread.run_sync(save_state, path, text, self.title))
                self._landed = covered
            finally:
                self._writing = None
                writing.set()

    def _wrote(self, written: Signature | None) -> None:
        self.writes += 1
        if written is not None:  # a failed write left the file as it was
            self._on_disk = written


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


Signature = tuple[int, int, int]
"""A file's inode, size and modification time: another write gives another signature."""


def signature(status: os.stat_result) -> Signature:
    return status.st_ino, status.st_size, status.st_mtime_ns


def load_state(path: Path, model: type[StateT], what: str) -> tuple[StateT | None, Signature | None]:
    """The saved state and the signature of the file it was read from: (None, None) when there is none
    yet; an unreadable file is logged, and its state ignored."""
    try:
        with path.open("rb") as fh:
            read = signature(os.fstat(fh.fileno()))
            data = fh.read()
    except FileNotFoundError:
        return None, None
    except OSError as exc:
        log.warning("ignoring the %s sandbox state in %s: %s", what, path, exc)
        return None, None
    try:
        return model.model_validate_json(data), read
    except ValidationError as exc:
        log.warning("ignoring the %s sandbox state in %s: %s", what, path, exc)
        return None, read


def save_state(path: Path, text: str, what: str) -> Signature | None:
    """Replace the file atomically (a reader sees the old state or the new one, never half) and return
    its signature; a disk problem is logged (None) and the emulator goes on in memory."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        folder = path.parent.resolve()
        return signature(paths.write_atomic(folder, folder / path.name, text.encode()))
    except OSError as exc:
        log.warning("could not save the %s sandbox state to %s: %s", what, path, exc)
        return None
