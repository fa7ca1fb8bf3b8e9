"""Drive the MCP Inspector's CLI (`mcp-inspector --cli`) against callsheet and check every answer.

One flow per transport and protocol era: tools/list; prompts/list (and prompts/get of a prompt when
the server has any); a sandbox generation (tools/call), then job_wait until the job has succeeded and
job_status; resources/read of the job and of its first output; the identical call again, which must
return the same job; an unknown job id, which must be a tool error. --short leaves out prompts and
everything after the job resource. Every Inspector run is one process with its own timeout and its
exit code checked; over stdio each run starts its own `callsheet serve`, so a job started with wait_seconds=0
is finished by a later server process (the job survives the restart).

usage: inspector_flow.py --inspector PATH --label NAME [--era legacy|modern] [--wait-seconds N] [--short]
                         [-e KEY=VALUE ...] (--url URL | --stdio COMMAND ...)
"""

from __future__ import annotations

import argparse
import base64
import json
import subprocess
import sys
import time
from typing import Any

GENERATION_TOOL = "fashn_model_create"
REQUIRED_TOOLS = {GENERATION_TOOL, "job_status", "job_wait", "job_cancel", "jobs_list"}
CALL_TIMEOUT = 120


class Failure(Exception):
    pass


class Inspector:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.target = [args.url] if args.url else args.stdio
        self.env = [x for pair in args.e for x in ("-e", pair)] if args.stdio else []
        self.elapsed: list[float] = []

    def run(self, method: str, *options: str, expect_exit: int = 0) -> dict[str, Any]:
        cmd = [
            self.args.inspector,
            "--cli",
            "--format",
            "json",
            "--protocol-era",
            self.args.era,
            *self.env,
            "--method",
            method,
            *options,
            "--",  # ends variadic options such as --prompt-args: the server's URL or command follows
            *self.target,
        ]
        started = time.monotonic()
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=CALL_TIMEOUT, check=False)
        except subprocess.TimeoutExpired as exc:
            raise Failure(f"{method}: no answer within {CALL_TIMEOUT} s ({exc.cmd})") from None
        elapsed = time.monotonic() - started
        if proc.returncode != expect_exit:
            raise Failure(
                f"{method} {' '.join(options)}: exit code {proc.returncode}, expected {expect_exit}\n"
                f"stdout: {proc.stdout[-3000:]}\nstderr: {proc.stderr[-3000:]}"
            )
        try:
            answer = json.loads(proc.stdout)
        except json.JSONDecodeError:
            raise Failure(f"{method}: output is not JSON: {proc.stdout[-2000:]!r}") from None
        if "result" not in answer:
            raise Failure(f"{method}: no result in {str(answer)[:2000]}")
        self.elapsed.append(elapsed)
        return dict(answer["result"]) if expect_exit == 0 else dict(answer)

    def tool(self, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
        result = self.run("tools/call", "--tool-name", name, "--tool-args-json", json.dumps(arguments))
        check(result.get("isError") is not True, f"{name}: isError in {result}")
        structured = result.get("structuredContent")
        check(isinstance(structured, dict), f"{name}: no structuredContent in {str(result)[:2000]}")
        check(bool(result.get("content")), f"{name}: no content blocks")
        return dict(structured)

    def say(self, message: str) -> None:
        print(f"  ok  inspector {self.args.label}: {message}", flush=True)


def check(condition: bool, message: str) -> None:
    if not condition:
        raise Failure(message)


def flow(inspector: Inspector, wait_seconds: int, short: bool) -> None:
    tools = inspector.run("tools/list")["tools"]
    names = {t["name"] for t in tools}
    check(names >= REQUIRED_TOOLS, f"tools/list lacks {sorted(REQUIRED_TOOLS - names)}")
    for t in tools:
        check(bool(t.get("description")) and isinstance(t.get("inputSchema"), dict), f"tool {t['name']}: {t}")
    generation = next(t for t in tools if t["name"] == GENERATION_TOOL)
    check(
        "prompt" in generation["inputSchema"].get("properties", {}), f"{GENERATION_TOOL}: no prompt argument"
    )
    inspector.say(f"{len(tools)} tools")

    if not short:
        check_prompts(inspector)
    generation_to_the_end(inspector, wait_seconds, short)


def check_prompts(inspector: Inspector) -> None:
    prompts = inspector.run("prompts/list")["prompts"]
    check(isinstance(prompts, list), f"prompts/list: {prompts}")
    if prompts:
        prompt = prompts[0]
        values = {a["name"]: f"ci-{a['name']}" for a in prompt.get("arguments") or [] if a.get("required")}
        pairs = [f"{k}={v}" for k, v in values.items()]
        got = inspector.run(
            "prompts/get", "--prompt-name", prompt["name"], *(["--prompt-args", *pairs] if pairs else [])
        )
        messages = got.get("messages") or []
        check(bool(messages), f"prompts/get {prompt['name']}: no messages")
        text = json.dumps(messages)
        check(
            not values or any(v in text for v in values.values()),
            f"prompt {prompt['name']} ignores its arguments",
        )
        inspector.say(f"prompt {prompt['name']}: {len(messages)} message(s)")
    else:
        inspector.say("prompts/list answers: the server has no prompts yet")


def generation_to_the_end(inspector: Inspector, wait_seconds: int, short: bool) -> None:
    arguments = {
        "prompt": f"inspector ci {inspector.args.label}: editorial model",
        "wait_seconds": wait_seconds,
    }
    job = inspector.tool(GENERATION_TOOL, arguments)
    job_id = job.get("job_id")
    check(isinstance(job_id, str) and job.get("sandbox") is True, f"not a sandbox job: {job}")
    check(job.get("provider") == "fashn" and job.get("operation") == "model_create", f"job fields: {job}")
    inspector.say(f"{GENERATION_TOOL} -> job {job_id} ({job['status']})")

    for _ in range(8):
        if job["status"] in {"succeeded", "failed", "canceled"}:
            break
        waited = inspector.tool("job_wait", {"job_ids": [job_id], "wait_seconds": 30})
        jobs = {j["job_id"]: j for j in waited.get("jobs") or []}
        check(job_id in jobs, f"job_wait did not return {job_id}: {waited}")
        job = jobs[job_id]
        inspector.say(f"job_wait -> {job['status']}")
    check(job["status"] == "succeeded", f"job {job_id} ended as {job['status']}: {job.get('error')}")

    job = inspector.tool("job_status", {"job_id": job_id})
    check(job["status"] == "succeeded", f"job_status: {job['status']}")
    outputs = job.get("outputs") or []
    check(len(outputs) >= 1, f"job {job_id} has no outputs")
    check(outputs[0]["uri"] == f"callsheet://jobs/{job_id}/outputs/0", f"output uri: {outputs[0]['uri']}")
    inspector.say(f"job_status -> succeeded, {len(outputs)} output(s)")

    contents = inspector.run("resources/read", "--uri", f"callsheet://jobs/{job_id}")["contents"]
    check(
        len(contents) == 1 and contents[0].get("mimeType") == "application/json", f"job resource: {contents}"
    )
    record = json.loads(contents[0]["text"])
    check(record["job_id"] == job_id and record["status"] == "succeeded", f"job resource: {record}")
    inspector.say(f"resource callsheet://jobs/{job_id}")
    if short:
        return

    contents = inspector.run("resources/read", "--uri", outputs[0]["uri"])["contents"]
    check(len(contents) == 1 and "blob" in contents[0], f"output resource: {str(contents)[:500]}")
    data = base64.b64decode(contents[0]["blob"])
    check(
        contents[0].get("mimeType") == outputs[0]["mime_type"],
        f"output MIME type: {contents[0].get('mimeType')}",
    )
    check(len(data) == outputs[0]["bytes"], f"output size {len(data)} != {outputs[0]['bytes']}")
    inspector.say(f"resource {outputs[0]['uri']}: {contents[0]['mimeType']}, {len(data)} bytes")

    again = inspector.tool(GENERATION_TOOL, arguments)
    check(again["job_id"] == job_id and again["status"] == "succeeded", f"repeat gave {again['job_id']}")
    inspector.say("the identical call returns the same job")

    error = inspector.run(
        "tools/call", "--tool-name", "job_status", "--tool-args-json", '{"job_id": "nope"}', expect_exit=5
    )
    result = error.get("result") or {}
    check(result.get("isError") is True and "nope" in json.dumps(result), f"unknown job id: {error}")
    inspector.say("an unknown job id is a tool error (exit code 5)")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--inspector", required=True)
    parser.add_argument("--label", required=True)
    parser.add_argument("--era", choices=["legacy", "modern"], default="legacy")
    parser.add_argument("--wait-seconds", type=int, default=30)
    parser.add_argument("--short", action="store_true", help="skip prompts, output file, repeat, error case")
    parser.add_argument("-e", action="append", default=[], metavar="KEY=VALUE", help="env for a stdio server")
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--url")
    group.add_argument("--stdio", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    try:
        inspector = Inspector(args)
        flow(inspector, args.wait_seconds, args.short)
    except Failure as exc:
        print(f"FAIL inspector {args.label}: {exc}", file=sys.stderr)
        return 1
    runs = inspector.elapsed
    inspector.say(f"{len(runs)} Inspector runs, {sum(runs) / len(runs):.1f} s each on average")
    return 0


if __name__ == "__main__":
    sys.exit(main())
