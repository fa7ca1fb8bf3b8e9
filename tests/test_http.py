"""`callsheet serve --http` as a real subprocess: Streamable HTTP at /mcp, /health, the bearer token."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import httpx
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client
from mcp_types import CallToolResult, TextContent

from server.models import Job
from tests.conftest import FIXED_RESOURCES
from tests.servers import free_port, server_env, serving, wait_healthy

pytestmark = pytest.mark.anyio

CALL_TIMEOUT = 30.0
TOKEN = "http-token-5c4b3a"


def text(result: CallToolResult) -> str:
    return " ".join(c.text for c in result.content if isinstance(c, TextContent))


async def test_streamable_http_runs_a_job(tmp_path: Path) -> None:
    port = free_port()
    with serving(tmp_path, "--port", str(port), env=server_env(tmp_path)) as proc:
        await wait_healthy(proc, port)
        with anyio.fail_after(CALL_TIMEOUT):
            async with Client(f"http://127.0.0.1:{port}/mcp") as client:
                tools = {t.name for t in (await client.list_tools()).tools}
                assert {"fashn_model_create", "job_status"} <= tools
                result = await client.call_tool(
                    "fashn_model_create", {"prompt": "a model in a linen suit", "wait_seconds": 20}
                )
                assert not result.is_error, text(result)
                assert result.structured_content is not None
                job = Job.model_validate(result.structured_content)
                assert job.status == "succeeded" and job.sandbox and job.operation == "model_create"
                assert Path(job.outputs[0].path).is_file()

            # A second connection, in the handshake era, sees the same job.
            async with Client(f"http://127.0.0.1:{port}/mcp", mode="legacy") as client:
                status = await client.call_tool("job_status", {"job_id": job.job_id})
                assert not status.is_error, text(status)
                assert status.structured_content is not None
                assert Job.model_validate(status.structured_content).status == "succeeded"


def test_non_loopback_host_without_token_is_refused(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "server", "serve", "--http", "--host", "0.0.0.0", "--port", str(free_port())],
        env=server_env(tmp_path),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
    )
    assert done.returncode != 0
    assert "CALLSHEET_HTTP_TOKEN" in done.stderr, done.stderr
    assert done.stdout == ""


async def test_token_guards_mcp_but_not_health(tmp_path: Path) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = server_env(tmp_path, CALLSHEET_HTTP_TOKEN=TOKEN)
    with serving(tmp_path, "--host", "127.0.0.1", "--port", str(port), env=env) as proc:
        await wait_healthy(proc, port)  # /health answers without a token
        list_tools = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}
        accept = {"Accept": "application/json, text/event-stream"}
        async with httpx.AsyncClient(timeout=5.0) as http:
            anonymous = await http.post(f"{base}/mcp", json=list_tools, headers=accept)
            assert anonymous.status_code == 401
            wrong = await http.post(
                f"{base}/mcp", json=list_tools, headers={**accept, "Authorization": "Bearer nope"}
            )
            assert wrong.status_code == 401
            assert TOKEN not in wrong.text
            assert (await http.get(f"{base}/health")).status_code == 200

        with anyio.fail_after(CALL_TIMEOUT):
            async with (
                create_mcp_http_client(headers={"Authorization": f"Bearer {TOKEN}"}) as http_client,
                Client(streamable_http_client(f"{base}/mcp", http_client=http_client)) as client,
            ):
                tools = {t.name for t in (await client.list_tools()).tools}
        assert "fashn_tryon_max" in tools


async def test_each_token_is_a_caller_that_sees_only_its_own_jobs_and_shoots(tmp_path: Path) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}/mcp"
    env = server_env(tmp_path, CALLSHEET_HTTP_TOKEN="alice-token-1, bob-token-2")
    # The default roots include the data folder: its files must not be a side door between callers.
    env["CALLSHEET_INPUT_ROOTS"] += os.pathsep + env["CALLSHEET_HOME"]

    @asynccontextmanager
    async def as_caller(token: str) -> AsyncIterator[Client]:
        async with (
            create_mcp_http_client(headers={"Authorization": f"Bearer {token}"}) as http_client,
            Client(streamable_http_client(base, http_client=http_client)) as client,
        ):
            yield client

    cast = {"prompt": "a model in a linen suit", "wait_seconds": 20}
    with serving(tmp_path, "--port", str(port), env=env) as proc:
        await wait_healthy(proc, port)
        with anyio.fail_after(CALL_TIMEOUT):
            async with as_caller("alice-token-1") as alice:
                made = await alice.call_tool("fashn_model_create", cast)
                assert not made.is_error, text(made)
                job = Job.model_validate(made.structured_content)
                assert job.status == "succeeded"
                step = {"id": "cast", "tool": "fashn_model_create", "args": {"prompt": "a model in wool"}}
                shoot_plan = {"name": "alice's casting", "steps": [step]}
                started = await alice.call_tool("shoot_start", {"plan": shoot_plan})
                assert not started.is_error, text(started)
                shoot_id = (started.structured_content or {})["shoot_id"]

            async with as_caller("bob-token-2") as bob:
                for tool, args in [
                    ("job_status", {"job_id": job.job_id}),
                    ("job_cancel", {"job_id": job.job_id}),
                    ("job_wait", {"job_ids": [job.job_id], "wait_seconds": 0}),
                    ("shoot_status", {"shoot_id": shoot_id}),
                    ("shoot_cancel", {"shoot_id": shoot_id}),
                ]:
                    refused = await bob.call_tool(tool, args)
                    assert refused.is_error and "Unknown" in text(refused), (tool, text(refused))
                listed = await bob.call_tool("jobs_list", {})
                assert (listed.structured_content or {})["jobs"] == []
                shoots = await bob.call_tool("shoots_list", {})
                assert (shoots.structured_content or {})["shoots"] == []
                offered = [str(r.uri) for r in (await bob.list_resources()).resources]
                assert not any(job.job_id in uri or shoot_id in uri for uri in offered), offered
                for uri in (f"callsheet://jobs/{job.job_id}", job.outputs[0].uri):
                    with pytest.raises(Exception, match=job.job_id):
                        await bob.read_resource(uri)
                # Alice's output is not Bob's to build on ...
                chained = await bob.call_tool(
                    "fashn_model_swap", {"model_image": job.outputs[0].uri, "wait_seconds": 0}
                )
                assert chained.is_error and "unknown job" in text(chained), text(chained)
                by_path = await bob.call_tool(
                    "fashn_model_swap", {"model_image": job.outputs[0].path, "wait_seconds": 0}
                )
                assert by_path.is_error and "not one of your files" in text(by_path), text(by_path)
                # ... and the same call as Alice's is Bob's own job, not hers.
                own = await bob.call_tool("fashn_model_create", cast)
                assert Job.model_validate(own.structured_content).job_id != job.job_id

            async with as_caller("alice-token-1") as alice:
                mine = await alice.call_tool("job_status", {"job_id": job.job_id})
                assert not mine.is_error, text(mine)
                listed = await alice.call_tool("jobs_list", {})
                ids = [j["job_id"] for j in (listed.structured_content or {})["jobs"]]
                assert job.job_id in ids and len(ids) == 2  # her job and her shoot's, not Bob's
                offered = {str(r.uri) for r in (await alice.list_resources()).resources} - FIXED_RESOURCES
                assert {f"callsheet://jobs/{i}" for i in ids} | {f"callsheet://shoots/{shoot_id}"} == offered
                assert (await alice.read_resource(job.outputs[0].uri)).contents


BASIC = ("Authorization", "Basic eA==")
BOB = ("Authorization", "Bearer bob")
AUTH_FORMS: list[tuple[str, list[tuple[str, str]], int]] = [
    # (what, the Authorization headers sent, the status callsheet answers)
    ("a Basic value before Bob's token", [BASIC, BOB], 400),
    ("Bob's token before a Basic value", [BOB, BASIC], 400),
    ("two valid tokens", [BOB, ("Authorization", "Bearer alice")], 400),
    ("the same token twice", [BOB, ("authorization", "Bearer bob")], 400),
    ("a Basic value alone", [("Authorization", "Basic eA==")], 401),
    ("a bearer scheme with spaces only", [("Authorization", "Bearer  x y")], 401),
    ("two tokens in one value", [("Authorization", "Bearer bob, Bearer alice")], 401),
    ("the scheme alone", [("Authorization", "Bearer")], 401),
    ("no header", [], 401),
]


async def test_a_request_is_one_caller_or_refused(tmp_path: Path) -> None:
    """One place turns a request into a caller: several Authorization headers are refused (400), any
    value that is not one valid bearer token is refused (401), never served as the local user."""
    port = free_port()
    base = f"http://127.0.0.1:{port}/mcp"
    env = server_env(tmp_path, CALLSHEET_HTTP_TOKEN="alice, bob")
    list_tools = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}
    accept = [("Accept", "application/json, text/event-stream"), ("Content-Type", "application/json")]
    with serving(tmp_path, "--port", str(port), env=env) as proc:
        await wait_healthy(proc, port)
        with anyio.fail_after(CALL_TIMEOUT):
            async with (
                create_mcp_http_client(headers={"Authorization": "Bearer alice"}) as http_client,
                Client(streamable_http_client(base, http_client=http_client)) as alice,
            ):
                made = await alice.call_tool("fashn_model_create", {"prompt": "a model", "wait_seconds": 20})
                job = Job.model_validate(made.structured_content)

            async with httpx.AsyncClient(timeout=5.0) as http:
                for what, auth, status in AUTH_FORMS:
                    response = await http.post(base, json=list_tools, headers=[*accept, *auth])
                    assert response.status_code == status, (what, response.status_code, response.text)
                    assert "alice" not in response.text and "bob" not in response.text.replace("Bob", "")

            # An MCP client that adds a second header to each request gets nowhere, in both eras.
            async def second_header(request: httpx.Request) -> None:
                request.headers = httpx.Headers([BASIC, *request.headers.multi_items()])

            for mode in ("auto", "legacy"):
                async with create_mcp_http_client(headers={"Authorization": "Bearer bob"}) as http_client:
                    http_client.event_hooks["request"].append(second_header)
                    with pytest.raises(Exception):  # noqa: B017 - the transport's error type varies by era
                        transport = streamable_http_client(base, http_client=http_client)
                        async with Client(transport, mode=mode) as bob:
                            await bob.call_tool("job_cancel", {"job_id": job.job_id})

            # A handshake-era session answers only the credential that opened it.
            init = {
                "jsonrpc": "2.0",
                "id": 1,
                "method": "initialize",
                "params": {
                    "protocolVersion": "2025-11-25",
                    "capabilities": {},
                    "clientInfo": {"name": "t", "version": "1"},
                },
            }
            async with httpx.AsyncClient(timeout=5.0) as http:
                alice_auth = ("Authorization", "Bearer alice")
                opened = await http.post(base, json=init, headers=[*accept, alice_auth])
                assert opened.status_code == 200, opened.text
                session = [("Mcp-Session-Id", opened.headers["mcp-session-id"])]
                versions = [("Mcp-Protocol-Version", "2025-11-25")]
                cancel = {
                    "jsonrpc": "2.0",
                    "id": 2,
                    "method": "tools/call",
                    "params": {"name": "job_cancel", "arguments": {"job_id": job.job_id}},
                }
                hijack = await http.post(
                    base, json=cancel, headers=[*accept, *session, *versions, ("Authorization", "Bearer bob")]
                )
                assert hijack.status_code == 404, hijack.text

            async with (
                create_mcp_http_client(headers={"Authorization": "Bearer alice"}) as http_client,
                Client(streamable_http_client(base, http_client=http_client)) as alice,
            ):
                still = await alice.call_tool("job_status", {"job_id": job.job_id})
                assert Job.model_validate(still.structured_content).status == "succeeded"
                listed = await alice.call_tool("jobs_list", {})
                assert [j["job_id"] for j in (listed.structured_content or {})["jobs"]] == [job.job_id]
