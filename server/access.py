"""Who is calling: the one place where an HTTP request becomes a `Caller`.

`AccessGate` sits in front of everything `serve --http` serves. It refuses a request that carries
more than one `Authorization` header (two values could be read two ways: one for the check and
another for the identity), checks the one bearer token it may carry, and stores the caller it
stands for in the request's scope. Tools, resources and completions read that answer back
(`tools.common.caller`); nothing else parses a header. A request that did not pass the gate has no
caller and is refused there, never treated as the local user.

Without tokens (stdio, or HTTP on loopback with no token set) there is one local user, who sees
everything. With tokens, each token is one caller that sees only its own jobs and shoots.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

from starlette.types import ASGIApp, Receive, Scope, Send

CALLER_KEY = "callsheet.caller"
"""Where `AccessGate` leaves the caller in the ASGI scope's `state`."""


@dataclass(frozen=True)
class Caller:
    """Whose jobs, shoots and files a request may see."""

    id: str | None
    """The caller's id, stored on their jobs and shoots; None for the local user, who sees everything."""
    label: str
    """How the caller is named in logs and the audit trail (never a secret)."""

    @property
    def local(self) -> bool:
        return self.id is None


LOCAL = Caller(id=None, label="local")


class Verifier(Protocol):
    async def verify(self, token: str) -> Caller | None:
        """The caller a bearer token stands for, or None when the token is not valid."""


class StaticTokens:
    """`CALLSHEET_HTTP_TOKEN`: each token is one caller, named by a hash of the token."""

    def __init__(self, tokens: Iterable[str]) -> None:
        self._expected = [token.encode() for token in tokens]

    async def verify(self, token: str) -> Caller | None:
        given = token.encode()
        # Every token compared, in constant time each: no early exit tells which one was close.
        if not sum(hmac.compare_digest(given, expected) for expected in self._expected):
            return None
        digest = hashlib.sha256(given).hexdigest()[:16]
        return Caller(id=f"token-{digest}", label=f"token-{digest[:8]}")


class AccessGate:
    """ASGI middleware: one `Authorization` header at most, a valid bearer token when tokens are set.

    `open_paths` (e.g. /health) are served without a token but still get no caller but the gate's.
    """

    def __init__(self, app: ASGIApp, verifier: Verifier | None, *, open_paths: Iterable[str] = ()) -> None:
        self.app = app
        self.verifier = verifier
        self.open_paths = frozenset(open_paths)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        values = [value for name, value in scope.get("headers") or [] if name.lower() == b"authorization"]
        if len(values) > 1:
            await _refuse(send, 400, "invalid_request", "Send one Authorization header, not several.")
            return
        caller = LOCAL if self.verifier is None else None
        if self.verifier is not None and values:
            token = _bearer_token(values[0])
            if token is not None:
                caller = await self.verifier.verify(token)
        if caller is None and scope.get("path") not in self.open_paths:
            await _refuse(
                send,
                401,
                "invalid_token",
                "Send 'Authorization: Bearer <token>' with a token from CALLSHEET_HTTP_TOKEN.",
            )
            return
        state = scope.setdefault("state", {})
        state[CALLER_KEY] = caller
        await self.app(scope, receive, send)


def _bearer_token(value: bytes) -> str | None:
    """The token of `Bearer <token>` (scheme case-insensitive), or None for any other form."""
    try:
        text = value.decode("ascii")
    except UnicodeDecodeError:
        return None
    scheme, _, token = text.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or " " in token:
        return None
    return token


async def _refuse(send: Send, status: int, error: str, description: str) -> None:
    body = json.dumps({"error": error, "error_description": description}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if status == 401:
        headers.append((b"www-authenticate", f'Bearer error="{error}"'.encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
