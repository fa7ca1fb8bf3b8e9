"""OAuth 2.1 resource server: who an access token from the authorization server stands for.

`serve --http` with `CALLSHEET_OAUTH_ISSUER` accepts JWT access tokens (RFC 9068) issued by that
authorization server for this server (RFC 8707 audience). The issuer's metadata (RFC 8414, else
OpenID discovery) names its keys (`jwks_uri`); the keys are fetched once, kept, and fetched again when a
token names a key not seen yet (the issuer rotated its keys), at most every `REFETCH_SECONDS`. A token
is checked with PyJWT for its signature, `iss` (exactly the issuer), `aud` (this server's resource URL),
`exp` and `nbf`, and `sub`; its scopes (`scope`, or `scp`) decide what the caller may do
(`server.access.SCOPES`). The caller is the issuer and subject: the same person through any client.
Tokens are never sent anywhere else (provider requests carry the provider's key, never a caller's).
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import anyio
import httpx
import jwt

from server.access import AuthUnavailable, Caller

log = logging.getLogger(__name__)

ALGORITHMS = ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"]
"""Asymmetric algorithms only: a token signed with a shared secret (HS*) or `none` is refused."""
LEEWAY_SECONDS = 30
"""Clock skew allowed between the authorization server and this one, for `exp` and `nbf`."""
REFETCH_SECONDS = 30.0
"""Least time between two fetches of the issuer's keys for a key id not seen yet."""
FETCH_TIMEOUT = 10.0


class OAuthTokens:
    """A `server.access.Verifier` for the access tokens of one authorization server."""

    def __init__(
        self,
        issuer: str,
        audience: str,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.issuer = issuer
        self.audience = audience
        self._transport = transport
        self._clock = clock
        self._keys: dict[str, jwt.PyJWK] = {}
        self._jwks_uri: str | None = None
        self._fetched_at: float | None = None
        self._lock = anyio.Lock()

    async def verify(self, token: str) -> Caller | None:
        if token.count(".") != 2:
            return None  # not a JWT: another verifier's token (a static one), or nothing
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            return None
        key = await self._key(str(header.get("kid") or ""))
        if key is None:
            return None
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key=key,
                algorithms=ALGORITHMS,
                audience=self.audience,
                issuer=self.issuer,
                leeway=LEEWAY_SECONDS,
                options={"require": ["exp", "iss", "aud", "sub"]},
            )
        except jwt.PyJWTError as exc:
            log.info("access token refused: %s", exc)
            return None
        subject = str(claims["sub"])
        digest = hashlib.sha256(f"{self.issuer}\n{subject}".encode()).hexdigest()[:24]
        label = f"{subject[:64]}@{urlsplit(self.issuer).netloc}"
        return Caller(id=f"oauth-{digest}", label=label, scopes=_scopes(claims))

    async def _key(self, kid: str) -> jwt.PyJWK | None:
        """The issuer's key `kid` (the only key, when the token names none); None if it has no such key."""
        async with self._lock:
            if not self._knows(kid) and self._may_fetch():
                await self._fetch()
            if not kid and len(self._keys) == 1:
                return next(iter(self._keys.values()))
            return self._keys.get(kid)

    def _knows(self, kid: str) -> bool:
        return kid in self._keys or (not kid and len(self._keys) == 1)

    def _may_fetch(self) -> bool:
        return self._fetched_at is None or self._clock() - self._fetched_at >= REFETCH_SECONDS

    async def _fetch(self) -> None:
        self._fetched_at = self._clock()
        async with httpx.AsyncClient(transport=self._transport, timeout=FETCH_TIMEOUT) as http:
            if self._jwks_uri is None:
                self._jwks_uri = await self._discover(http)
            try:
                response = await http.get(self._jwks_uri)
                response.raise_for_status()
                keys = jwt.PyJWKSet.from_dict(response.json()).keys
            except (httpx.HTTPError, ValueError, jwt.PyJWTError) as exc:
                where = f"{self.issuer} ({self._jwks_uri})"
                raise AuthUnavailable(f"the keys of {where} cannot be read: {exc}") from None
        self._keys = {str(k.key_id or ""): k for k in keys if k.public_key_use in (None, "sig")}

    async def _discover(self, http: httpx.AsyncClient) -> str:
        """`jwks_uri` from the issuer's metadata: RFC 8414's well-known path, else OpenID discovery."""
        parts = urlsplit(self.issuer)
        path = parts.path.rstrip("/")
        for url in (
            f"{parts.scheme}://{parts.netloc}/.well-known/oauth-authorization-server{path}",
            f"{self.issuer.rstrip('/')}/.well-known/openid-configuration",
        ):
            try:
                response = await http.get(url)
            except httpx.HTTPError as exc:
                raise AuthUnavailable(f"{self.issuer} cannot be reached: {exc}") from None
            if response.status_code != 200:
                continue
            try:
                metadata = response.json()
            except ValueError:
                continue
            if metadata.get("issuer") != self.issuer:
                raise AuthUnavailable(
                    f"{url} names the issuer {metadata.get('issuer')!r}, not {self.issuer!r}: "
                    "set CALLSHEET_OAUTH_ISSUER to the issuer exactly as it names itself."
                )
            if isinstance(metadata.get("jwks_uri"), str):
                return str(metadata["jwks_uri"])
        raise AuthUnavailable(f"{self.issuer} publishes no metadata with a jwks_uri (RFC 8414 or OpenID).")


def _scopes(claims: dict[str, Any]) -> frozenset[str]:
    scope = claims.get("scope")
    if isinstance(scope, str):
        return frozenset(scope.split())
    scp = claims.get("scp")
    if isinstance(scp, list):
        return frozenset(str(s) for s in scp)
    return frozenset()
