"""`serve --http` as an OAuth 2.1 resource server, against a real authorization server.

The authorization server is panva's oidc-provider (npm, pinned in tests/oauth), started by the test
with signing keys the test made: it issues JWT access tokens for callsheet's resource to two clients
(alice: read and generate; bob: read only). Tokens it would never issue (expired, another issuer, a
key it does not publish) are signed by the test, with the issuer's own key where that matters.
The key cache's rules (rotation, how often keys are fetched again, a lying issuer) are checked on
`OAuthTokens` against an `httpx.MockTransport` issuer with a controlled clock.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import httpx
import httpx2
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm
from mcp import Client
from mcp.client.auth import OAuthClientProvider
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.auth import (
    AuthorizationCodeResult,
    OAuthClientInformationFull,
    OAuthClientMetadata,
    OAuthToken,
)
from pydantic import AnyUrl

from server.access import AuthUnavailable
from server.oauth import OAuthTokens
from tests.servers import free_port, server_env, serving, wait_healthy

pytestmark = pytest.mark.anyio
needs_node = pytest.mark.skipif(shutil.which("node") is None, reason="the authorization server needs Node.js")

HERE = Path(__file__).with_name("oauth")
OTHER = "https://other.example/mcp"
STATIC = "static-token-beside-oauth"


def rsa_key(kid: str) -> tuple[rsa.RSAPrivateKey, dict[str, Any]]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = json.loads(RSAAlgorithm.to_jwk(key))
    return key, {**jwk, "kid": kid, "use": "sig", "alg": "RS256"}


def public(jwk: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in jwk.items() if k in ("kty", "n", "e", "kid", "use", "alg")}


@dataclass
class Deployment:
    issuer: str
    resource: str
    url: str
    key: rsa.RSAPrivateKey
    log: Path

    async def token(self, client: str, scope: str, resource: str | None = None) -> str:
        async with httpx.AsyncClient() as http:
            response = await http.post(
                f"{self.issuer}/token",
                auth=(client, f"{client}-secret"),
                data={
                    "grant_type": "client_credentials",
                    "scope": scope,
                    "resource": resource or self.resource,
                },
            )
        assert response.status_code == 200, response.text
        return str(response.json()["access_token"])

    def forged(self, key: rsa.RSAPrivateKey | None = None, kid: str = "k1", **claims: Any) -> str:
        """A token the authorization server never issued: callsheet's claims, changed by `claims`."""
        now = int(time.time())
        body = {
            "iss": self.issuer,
            "aud": self.resource,
            "sub": "mallory",
            "scope": "callsheet:read callsheet:generate",
            "iat": now,
            "exp": now + 600,
            **claims,
        }
        return jwt.encode(body, key or self.key, algorithm="RS256", headers={"kid": kid, "typ": "at+jwt"})

    @asynccontextmanager
    async def client(self, token: str) -> AsyncIterator[Client]:
        headers = {"Authorization": f"Bearer {token}"}
        async with (
            httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(30.0, read=120.0)) as http,
            Client(streamable_http_client(f"{self.url}/mcp", http_client=http)) as client,
        ):
            yield client

    async def post(self, token: str | None, method: str, params: dict[str, Any]) -> httpx.Response:
        """One raw JSON-RPC request, as the gate sees it before the SDK does."""
        headers = {"Accept": "application/json, text/event-stream"}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        async with httpx.AsyncClient() as http:
            return await http.post(
                f"{self.url}/mcp",
                json={"jsonrpc": "2.0", "id": 1, "method": method, "params": params},
                headers=headers,
            )


@contextmanager
def authorization_server(tmp_path: Path, port: int, resource: str, jwk: dict[str, Any]) -> Iterator[str]:
    if not (HERE / "node_modules").exists():
        subprocess.run(["npm", "ci", "--silent", "--no-audit", "--no-fund"], cwd=HERE, check=True)
    keys = tmp_path / "jwks.json"
    keys.write_text(json.dumps({"keys": [jwk]}))
    with (tmp_path / "oidc.log").open("wb") as log:
        proc = subprocess.Popen(
            ["node", "server.mjs", str(port), resource, str(keys)],
            cwd=HERE,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            yield f"http://127.0.0.1:{port}"
        finally:
            proc.terminate()
            proc.wait(timeout=10)


async def wait_for(url: str) -> None:
    async with httpx.AsyncClient() as http:
        with anyio.fail_after(30):
            while True:
                try:
                    if (await http.get(url)).status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                await anyio.sleep(0.05)


@asynccontextmanager
async def deployment(tmp_path: Path) -> AsyncIterator[Deployment]:
    as_port, port = free_port(), free_port()
    url, key_and_jwk = f"http://127.0.0.1:{port}", rsa_key("k1")
    resource = f"{url}/mcp"
    with authorization_server(tmp_path, as_port, resource, key_and_jwk[1]) as issuer:
        await wait_for(f"{issuer}/.well-known/openid-configuration")
        env = server_env(
            tmp_path,
            CALLSHEET_OAUTH_ISSUER=issuer,
            CALLSHEET_PUBLIC_URL=url,
            CALLSHEET_SIGNING_KEY="a-long-random-signing-key-for-the-tests",
            CALLSHEET_HTTP_TOKEN=STATIC,
        )
        with serving(tmp_path, "--port", str(port), env=env) as proc:
            await wait_healthy(proc, port)
            yield Deployment(issuer, resource, url, key_and_jwk[0], tmp_path / "server.log")


@needs_node
async def test_each_token_is_a_caller_with_the_scopes_it_was_granted(tmp_path: Path) -> None:
    async with deployment(tmp_path) as d:
        async with httpx.AsyncClient() as http:
            metadata = (await http.get(f"{d.url}/.well-known/oauth-protected-resource/mcp")).json()
        assert metadata["resource"] == d.resource and metadata["authorization_servers"] == [d.issuer]
        assert metadata["scopes_supported"] == ["callsheet:read", "callsheet:generate"]

        missing = await d.post(None, "tools/list", {})
        assert missing.status_code == 401
        expected = f'resource_metadata="{d.url}/.well-known/oauth-protected-resource/mcp"'
        assert expected in missing.headers["www-authenticate"]

        alice = await d.token("alice", "callsheet:read callsheet:generate")
        bob = await d.token("bob", "callsheet:read")
        async with d.client(alice) as client:
            made = await client.call_tool(
                "fashn_model_create", {"prompt": "editorial model", "wait_seconds": 50}
            )
            assert not made.is_error and (made.structured_content or {})["status"] == "succeeded"
            job_id = (made.structured_content or {})["job_id"]

        # Bob reads (his own things only) but may not spend: 403 naming the scope, before anything runs.
        async with d.client(bob) as client:
            assert {t.name for t in (await client.list_tools()).tools} >= {"fashn_model_create", "job_status"}
            theirs = await client.call_tool("job_status", {"job_id": job_id})
            assert theirs.is_error and job_id in str(theirs.content)
            assert (await client.call_tool("jobs_list", {})).structured_content == {
                "jobs": [],
                "next_cursor": None,
            }
        refused = await d.post(
            bob, "tools/call", {"name": "fashn_model_create", "arguments": {"prompt": "x"}}
        )
        assert refused.status_code == 403
        challenge = refused.headers["www-authenticate"]
        assert 'error="insufficient_scope"' in challenge and 'scope="callsheet:generate"' in challenge
        assert "callsheet:generate" in refused.json()["error_description"]
        for spending in ("job_cancel", "shoot_start", "shoot_cancel", "shoot_repeat_step"):
            assert (await d.post(bob, "tools/call", {"name": spending, "arguments": {}})).status_code == 403

        # A token with no callsheet scope (signed with the issuer's key) starts a session but reads nothing.
        bare = d.forged(scope="profile")
        assert (await d.post(bare, "tools/list", {})).status_code == 403
        assert (await d.post(bare, "initialize", {})).status_code != 403

        # Static tokens keep working beside OAuth; each is a caller of its own.
        async with d.client(STATIC) as client:
            assert (await client.call_tool("jobs_list", {})).structured_content == {
                "jobs": [],
                "next_cursor": None,
            }
    logged = d.log.read_text()
    assert alice not in logged and bob not in logged  # tokens are never logged (nor sent anywhere)


@needs_node
async def test_tokens_are_refused_as_the_specification_says(tmp_path: Path) -> None:
    async with deployment(tmp_path) as d:
        other_key, _ = rsa_key("k2")
        now = int(time.time())
        refused = {
            "for another resource": await d.token("alice", "callsheet:read", resource=OTHER),
            "expired": d.forged(exp=now - 120, iat=now - 720),
            "not yet valid": d.forged(nbf=now + 600),
            "from another issuer": d.forged(iss="http://127.0.0.1:1"),
            "signed by a key the issuer does not publish": d.forged(key=other_key, kid="k2"),
            "signed by another key under the issuer's key id": d.forged(key=other_key),
            "with no subject": d.forged(sub=None),
            "not a JWT": "not-a-jwt",
        }
        for why, token in refused.items():
            response = await d.post(token, "tools/list", {})
            assert response.status_code == 401, why
            assert 'error="invalid_token"' in response.headers["www-authenticate"], why
        # ... and the issuer's own key with callsheet's claims is a caller: the refusals were the claims.
        assert (await d.post(d.forged(), "tools/list", {})).status_code != 401


def issuer_transport(state: dict[str, Any]) -> httpx.MockTransport:
    """An authorization server: RFC 8414 metadata at the well-known path and its keys, counting fetches."""

    def handle(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/.well-known/oauth-authorization-server":
            return httpx.Response(
                200, json={"issuer": state["issuer"], "jwks_uri": "https://as.example/keys"}
            )
        if request.url.path == "/keys":
            state["fetches"] += 1
            return httpx.Response(200, json={"keys": [public(j) for j in state["published"]]})
        return httpx.Response(404)

    return httpx.MockTransport(handle)


async def test_keys_are_fetched_again_for_a_new_key_id_but_not_more_often_than_the_limit() -> None:
    (k1, j1), (k2, j2) = rsa_key("k1"), rsa_key("k2")
    state: dict[str, Any] = {"issuer": "https://as.example", "published": [j1], "fetches": 0}
    now = [0.0]
    tokens = OAuthTokens(
        "https://as.example",
        "https://cs.example/mcp",
        transport=issuer_transport(state),
        clock=lambda: now[0],
    )

    def signed(key: rsa.RSAPrivateKey, kid: str) -> str:
        claims = {
            "iss": "https://as.example",
            "aud": "https://cs.example/mcp",
            "sub": "ann",
            "exp": time.time() + 60,
        }
        return jwt.encode({**claims, "scope": "callsheet:read"}, key, algorithm="RS256", headers={"kid": kid})

    first = await tokens.verify(signed(k1, "k1"))
    assert first is not None and first.scopes == frozenset({"callsheet:read"}) and state["fetches"] == 1
    assert await tokens.verify(signed(k1, "k1")) == first and state["fetches"] == 1  # kept
    state["published"] = [j1, j2]  # the issuer rotates its keys
    assert await tokens.verify(signed(k2, "k2")) is None  # too soon to fetch again: refused, not fetched
    assert state["fetches"] == 1
    now[0] += 30
    assert await tokens.verify(signed(k2, "k2")) is not None and state["fetches"] == 2
    assert await tokens.verify(signed(k2, "k3")) is None and state["fetches"] == 2  # unknown id, too soon

    liar = OAuthTokens(
        "https://as.example",
        "https://cs.example/mcp",
        transport=issuer_transport({"issuer": "https://evil.example", "published": [j1], "fetches": 0}),
    )
    with pytest.raises(AuthUnavailable, match=r"names the issuer 'https://evil\.example'"):
        await liar.verify(signed(k1, "k1"))


class SignIn:
    """The person at the browser: opens the authorization URL, signs in on the authorization server's
    own pages as `login`, and hands the client what the server redirects back with."""

    def __init__(self, login: str, redirect_uri: str) -> None:
        self.login = login
        self.redirect_uri = redirect_uri
        self.url = ""
        self.pages: list[str] = []

    async def open(self, url: str) -> None:
        self.url = url

    async def come_back(self) -> AuthorizationCodeResult:
        async with httpx.AsyncClient(follow_redirects=False) as browser:
            response = await browser.get(self.url)
            for _ in range(12):
                if response.is_redirect:
                    target = str(response.url.join(response.headers["location"]))
                    if target.startswith(self.redirect_uri):
                        query = dict(httpx.URL(target).params)
                        return AuthorizationCodeResult(
                            code=query["code"], state=query.get("state"), iss=query.get("iss")
                        )
                    response = await browser.get(target)
                    continue
                self.pages.append(response.text)
                form = FORM.search(response.text)
                assert response.status_code == 200 and form is not None, response.text[:500]
                fields = dict(INPUT.findall(form.group(2)))
                fields.update({"login": self.login, "password": "any"} if "login" in form.group(2) else {})
                response = await browser.post(str(response.url.join(form.group(1))), data=fields)
        raise AssertionError(f"no redirect back after {len(self.pages)} pages")


FORM = re.compile(r'<form[^>]*action="([^"]+)"[^>]*>(.*?)</form>', re.S)
INPUT = re.compile(r'<input[^>]*name="([^"]+)"[^>]*value="([^"]*)"')


class Memory:
    """`TokenStorage` in memory: a fresh client with nothing registered yet."""

    def __init__(self) -> None:
        self.tokens: OAuthToken | None = None
        self.client: OAuthClientInformationFull | None = None

    async def get_tokens(self) -> OAuthToken | None:
        return self.tokens

    async def set_tokens(self, tokens: OAuthToken) -> None:
        self.tokens = tokens

    async def get_client_info(self) -> OAuthClientInformationFull | None:
        return self.client

    async def set_client_info(self, client_info: OAuthClientInformationFull) -> None:
        self.client = client_info


@needs_node
async def test_a_client_signs_in_through_the_mcp_authorization_flow_and_runs_a_shoot(tmp_path: Path) -> None:
    """The official Python SDK's OAuth client: the 401 names the metadata, the client discovers the
    authorization server, registers itself, sends the person to sign in (PKCE, resource indicator),
    gets a token for callsheet and runs a sandbox shoot with it."""
    async with deployment(tmp_path) as d:
        redirect_uri = f"http://127.0.0.1:{free_port()}/callback"
        person = SignIn("carol", redirect_uri)
        storage = Memory()
        auth = OAuthClientProvider(
            server_url=f"{d.url}/mcp",
            client_metadata=OAuthClientMetadata(
                redirect_uris=[AnyUrl(redirect_uri)],
                client_name="callsheet test client",
                grant_types=["authorization_code", "refresh_token"],
                token_endpoint_auth_method="none",
                scope="callsheet:read callsheet:generate",
            ),
            storage=storage,
            redirect_handler=person.open,
            callback_handler=person.come_back,
        )
        plan = {
            "name": "signed in",
            "steps": [
                {"id": "cast", "tool": "fashn_model_create", "args": {"prompt": "editorial model"}},
                {
                    "id": "crop",
                    "tool": "fashn_reframe",
                    "args": {"image": "@cast.outputs[0]", "aspect_ratio": "4:5"},
                },
            ],
        }
        async with (
            httpx2.AsyncClient(auth=auth, timeout=httpx2.Timeout(30.0, read=120.0)) as http,
            Client(streamable_http_client(f"{d.url}/mcp", http_client=http)) as client,
        ):
            started = await client.call_tool("shoot_start", {"plan": plan, "confirm": True})
            assert not started.is_error, started.content
            shoot_id = (started.structured_content or {})["shoot_id"]
            with anyio.fail_after(60):
                while True:
                    status = await client.call_tool(
                        "shoot_status", {"shoot_id": shoot_id, "wait_seconds": 30}
                    )
                    shoot = status.structured_content or {}
                    if shoot["status"] != "running":
                        break
        assert shoot["status"] == "succeeded", shoot.get("note")
        assert person.pages, "the person signed in on the authorization server's page"
        assert storage.tokens is not None and storage.client is not None
        claims = jwt.decode(storage.tokens.access_token, options={"verify_signature": False})
        assert claims["sub"] == "carol" and claims["aud"] == d.resource and claims["iss"] == d.issuer
        # The shoot is carol's: the same person through another client sees it, alice does not.
        async with d.client(d.forged(sub="carol")) as again:
            assert not (await again.call_tool("shoot_status", {"shoot_id": shoot_id})).is_error
        async with d.client(await d.token("alice", "callsheet:read")) as alice:
            assert (await alice.call_tool("shoot_status", {"shoot_id": shoot_id})).is_error
