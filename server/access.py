"""Who is calling: the one place where an HTTP request becomes a `Caller`.

`AccessGate` sits in front of everything `serve --http` serves. It refuses a request that carries
more than one `Authorization` header (two values could be read two ways: one for the check and
another for the identity), checks the one bearer token it may carry, and stores the caller it
stands for in the request's scope. Tools, resources and completions read that answer back
(`tools.common.caller`); nothing else parses a header. A request that did not pass the gate has no
caller and is refused there, never treated as the local user.

Without tokens (stdio, or HTTP on loopback with no token set) there is one local user, who sees
everything. With tokens, each token is one caller that sees only its own jobs and shoots; with OAuth
(`server.oauth`) each issuer and subject is one. An OAuth caller holds scopes: `callsheet:read` for
status, lists, resources and prompts, `callsheet:generate` for anything that spends or cancels. The gate
reads which one a request needs (`needs`, given by the app: a tool's annotations tell) and refuses it
with 403 `insufficient_scope`, naming the scope, before anything runs.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from starlette.types import ASGIApp, Message, Receive, Scope, Send

CALLER_KEY = "callsheet.caller"
"""Where `AccessGate` leaves the caller in the ASGI scope's `state`."""
READ, GENERATE = "callsheet:read", "callsheet:generate"
"""The scopes an OAuth token carries: reading, and anything that spends or cancels."""
OPEN_PREFIXES = ("/files/", "/hooks/")
"""Served without a token: signed links and providers' webhooks carry their own proof (server/links.py)."""
OWN_SCOPES = frozenset({"/uploads"})
"""Routes that check a caller's scope themselves (their bodies are not JSON-RPC, and may be larger)."""
MAX_BODY = 4 * 1024 * 1024
"""The largest request body the gate reads to learn what a request needs (the SDK's own cap)."""


class AuthUnavailable(Exception):
    """The authorization server's metadata or keys cannot be had: tokens cannot be checked now."""


@dataclass(frozen=True)
class Caller:
    """Whose jobs, shoots and files a request may see."""

    id: str | None
    """The caller's id, stored on their jobs and shoots; None for the local user, who sees everything."""
    label: str
    """How the caller is named in logs and the audit trail (never a secret)."""
    scopes: frozenset[str] | None = None
    """What an OAuth caller may do (`READ`, `GENERATE`); None: everything (local user, static tokens)."""

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


class Verifiers:
    """Several verifiers side by side (static tokens beside OAuth): the first that knows the token."""

    def __init__(self, *verifiers: Verifier) -> None:
        self.verifiers = verifiers

    async def verify(self, token: str) -> Caller | None:
        for verifier in self.verifiers:
            caller = await verifier.verify(token)
            if caller is not None:
                return caller
        return None


Needs = Callable[[str, dict[str, Any]], str | None]
"""The scope a JSON-RPC request (method, params) needs, or None when any valid token will do."""


class AccessGate:
    """ASGI middleware: one `Authorization` header at most, a valid bearer token when tokens are set.

    `open_paths` (e.g. /health) are served without a token but still get no caller but the gate's.
    """

    def __init__(
        self,
        app: ASGIApp,
        verifier: Verifier | None,
        *,
        open_paths: Iterable[str] = (),
        needs: Needs | None = None,
        resource_metadata: str | None = None,
    ) -> None:
        """`resource_metadata`: the RFC 9728 metadata URL that a 401 names (OAuth); `needs`: see `Needs`."""
        self.app = app
        self.verifier = verifier
        self.open_paths = frozenset(open_paths)
        self.needs = needs
        self.resource_metadata = resource_metadata

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
                try:
                    caller = await self.verifier.verify(token)
                except AuthUnavailable as exc:
                    await _refuse(
                        send, 503, "temporarily_unavailable", f"Tokens cannot be checked now: {exc}"
                    )
                    return
        path = str(scope.get("path") or "")
        if caller is None and path not in self.open_paths and not path.startswith(OPEN_PREFIXES):
            how = "a token from CALLSHEET_HTTP_TOKEN"
            if self.resource_metadata:
                how += f" or an access token from the authorization server in {self.resource_metadata}"
            await _refuse(
                send,
                401,
                "invalid_token",
                f"Send 'Authorization: Bearer <token>' with {how}.",
                self.resource_metadata,
            )
            return
        if (
            caller is not None
            and caller.scopes is not None
            and self.needs is not None
            and path not in OWN_SCOPES
        ):
            body, receive = await _read_body(receive)
            if body is None:
                await _refuse(send, 413, "invalid_request", f"The request body is over {MAX_BODY:,} bytes.")
                return
            needed = _needed(self.needs, body)
            if needed is not None and needed not in caller.scopes:
                held = " ".join(sorted(caller.scopes)) or "none"
                why = f"This needs the scope {needed}; the token carries {held}."
                await _refuse(send, 403, "insufficient_scope", why, self.resource_metadata, scope=needed)
                return
        state = scope.setdefault("state", {})
        state[CALLER_KEY] = caller
        await self.app(scope, receive, send)


async def _read_body(receive: Receive) -> tuple[bytes | None, Receive]:
    """The whole request body (None when it is over `MAX_BODY`), and a `receive` that gives it again."""
    chunks: list[bytes] = []
    size = 0
    more = True
    while more:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY:
            return None, receive
        chunks.append(chunk)
        more = message.get("more_body", False)
    body = b"".join(chunks)
    given = False

    async def replay() -> Message:
        nonlocal given
        if not given:
            given = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return body, replay


def _needed(needs: Needs, body: bytes) -> str | None:
    """The scope a JSON-RPC body needs (the strictest, for a batch); None for what is not JSON-RPC."""
    try:
        parsed = json.loads(body) if body else None
    except ValueError:
        return None  # the SDK answers a malformed body itself
    messages = parsed if isinstance(parsed, list) else [parsed]
    found = []
    for message in messages:
        if isinstance(message, dict) and "method" in message:
            params = message.get("params")
            found.append(needs(str(message["method"]), params if isinstance(params, dict) else {}))
    return GENERATE if GENERATE in found else (READ if READ in found else None)


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


async def _refuse(
    send: Send,
    status: int,
    error: str,
    description: str,
    resource_metadata: str | None = None,
    *,
    scope: str | None = None,
) -> None:
    body = json.dumps({"error": error, "error_description": description}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if status in (401, 403):
        challenge = f'Bearer error="{error}"'
        if scope:
            challenge += f', scope="{scope}"'
        if resource_metadata:
            challenge += f', resource_metadata="{resource_metadata}"'
        headers.append((b"www-authenticate", challenge.encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
