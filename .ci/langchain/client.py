"""An agent-framework client of the older protocol era against `callsheet serve` over stdio.

Runs in its own virtual environment (.ci/.venv-langchain: langchain-mcp-adapters pins mcp<2), no LLM:
loads callsheet's tools as LangChain tools, runs one sandbox generation to the end (the generation
tool, then job_wait until the job has succeeded), checks the job resource and, when the server has
them, a prompt and argument completion. Exits non-zero on any failure.

usage: python client.py CALLSHEET_EXECUTABLE   (CALLSHEET_HOME etc. come from the environment)
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from typing import Any

from langchain_core.messages import ToolMessage
from langchain_core.tools import BaseTool
from langchain_mcp_adapters.client import MultiServerMCPClient
from langchain_mcp_adapters.prompts import load_mcp_prompt
from langchain_mcp_adapters.resources import get_mcp_resource
from langchain_mcp_adapters.tools import load_mcp_tools
from mcp import ClientSession
from mcp.types import PromptReference

GENERATION_TOOL = "fashn_model_create"
JOB_TOOLS = {"job_status", "job_wait", "job_cancel", "jobs_list"}
OVERALL_TIMEOUT = 240


class Failure(Exception):
    pass


def check(condition: bool, message: str) -> None:
    if not condition:
        raise Failure(message)


def ok(message: str) -> None:
    print(f"  ok  langchain: {message}", flush=True)


_calls = 0


async def call(tool: BaseTool, args: dict[str, Any]) -> dict[str, Any]:
    """Invoke a tool the way an agent does (a tool call) and return its structured content."""
    global _calls
    _calls += 1
    message = await tool.ainvoke(
        {"type": "tool_call", "id": f"call-{_calls}", "name": tool.name, "args": args}
    )
    check(
        isinstance(message, ToolMessage), f"{tool.name}: expected a ToolMessage, got {type(message).__name__}"
    )
    check(message.status != "error", f"{tool.name}({args}) returned a tool error: {message.content}")
    artifact = message.artifact or {}
    structured = artifact.get("structured_content") if isinstance(artifact, dict) else None
    check(isinstance(structured, dict), f"{tool.name}: no structured content in the result: {message!r}")
    assert isinstance(structured, dict)
    return structured


async def run(executable: str) -> None:
    client = MultiServerMCPClient(
        {
            "callsheet": {
                "transport": "stdio",
                "command": executable,
                "args": ["serve"],
                # The SDK's stdio client passes only a few variables unless told: hand over ours.
                "env": dict(os.environ),
            }
        }
    )
    async with client.session("callsheet", auto_initialize=False) as session:
        init = await session.initialize()
        check(init.serverInfo.name == "callsheet", f"unexpected server: {init.serverInfo}")
        server = f"{init.serverInfo.name} {init.serverInfo.version}"
        ok(f"initialize: protocol {init.protocolVersion}, server {server}")

        tools = {t.name: t for t in await load_mcp_tools(session, server_name="callsheet")}
        missing = ({GENERATION_TOOL} | JOB_TOOLS) - tools.keys()
        check(not missing, f"tools missing from the LangChain tool list: {sorted(missing)}")
        schema = tools[GENERATION_TOOL].args_schema
        check(
            isinstance(schema, dict) and "prompt" in schema.get("properties", {}),
            f"{GENERATION_TOOL}: no 'prompt' argument in {schema}",
        )
        ok(f"{len(tools)} tools loaded as LangChain tools")

        job = await call(
            tools[GENERATION_TOOL], {"prompt": "langchain ci: editorial model", "wait_seconds": 0}
        )
        job_id = job.get("job_id")
        check(isinstance(job_id, str) and job.get("sandbox") is True, f"not a sandbox job: {job}")
        ok(f"{GENERATION_TOOL} -> job {job_id} ({job['status']})")

        status = job["status"]
        for _ in range(8):
            if status in {"succeeded", "failed", "canceled"}:
                break
            waited = await call(tools["job_wait"], {"job_ids": [job_id], "wait_seconds": 30})
            jobs = {j["job_id"]: j for j in waited.get("jobs", [])}
            check(job_id in jobs, f"job_wait did not return job {job_id}: {waited}")
            job, status = jobs[job_id], jobs[job_id]["status"]
            ok(f"job_wait -> {status}")
        check(status == "succeeded", f"job {job_id} ended as {status}: {job.get('error')}")
        check(len(job.get("outputs") or []) >= 1, f"job {job_id} succeeded without outputs")

        job = await call(tools["job_status"], {"job_id": job_id})
        check(job["status"] == "succeeded", f"job_status says {job['status']}")
        ok(f"job_status -> succeeded, {len(job['outputs'])} output(s), {job.get('credits_used')} credit(s)")

        blobs = await get_mcp_resource(session, f"callsheet://jobs/{job_id}")
        check(len(blobs) == 1, f"callsheet://jobs/{job_id}: expected one content, got {len(blobs)}")
        record = json.loads(blobs[0].as_string())
        check(
            record.get("job_id") == job_id and record.get("status") == "succeeded",
            f"job resource: {record}",
        )
        ok(f"resource callsheet://jobs/{job_id} read as a LangChain Blob")

        await prompts_and_completion(session, init.capabilities.completions is not None)


async def prompts_and_completion(session: ClientSession, completions: bool) -> None:
    prompts = (await session.list_prompts()).prompts
    if not prompts:
        ok("prompts/list answers: the server has no prompts yet")
        return
    prompt = prompts[0]
    args = {a.name: f"ci-{a.name}" for a in prompt.arguments or [] if a.required}
    messages = await load_mcp_prompt(session, prompt.name, arguments=args)
    check(len(messages) > 0, f"prompt {prompt.name} has no messages")
    ok(f"prompt {prompt.name} loaded as {len(messages)} LangChain message(s)")
    if not completions:
        ok("no completions capability declared: completion not checked")
        return
    for p in prompts:
        for argument in p.arguments or []:
            result = await session.complete(
                PromptReference(type="ref/prompt", name=p.name),
                {
                    "name": argument.name,
                    "value": "",
                },
            )
            if result.completion.values:
                ok(f"completion {p.name}.{argument.name} -> {result.completion.values[:3]}")
                return
    raise Failure("the server declares completions but no prompt argument completes to anything")


def failure_in(exc: BaseException) -> Failure | None:
    if isinstance(exc, Failure):
        return exc
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            if (found := failure_in(inner)) is not None:
                return found
    return None


def main() -> int:
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    try:
        asyncio.run(asyncio.wait_for(run(sys.argv[1]), OVERALL_TIMEOUT))
    except TimeoutError:
        print(f"FAIL langchain: did not finish within {OVERALL_TIMEOUT} s", file=sys.stderr)
        return 1
    except Exception as exc:
        failure = failure_in(exc)  # the MCP client's task groups wrap it in exception groups
        if failure is None:
            raise
        print(f"FAIL langchain: {failure}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
