"""Small helpers for .ci/clients.sh (standard library only).

free-port                        print a free TCP port on 127.0.0.1
wait-health URL SECONDS          wait until GET URL answers {"status": "ok"}
capabilities URL                 initialize over Streamable HTTP and print the server's capabilities
verdict DIR SCENARIO RC          judge a conformance run: its exit code RC and the checks.json under DIR
"""

from __future__ import annotations

import json
import socket
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

# Checks that must be SUCCESS for a scenario to count: a scenario that only warns (e.g. "no session
# id, multiple streams not tested") or that has nothing to check has not proven anything.
REQUIRED = {
    "server-initialize": ["server-initialize"],
    "ping": ["ping"],
    "tools-list": ["tools-list"],
    "resources-list": ["resources-list"],
    "prompts-list": ["prompts-list"],
    "server-sse-multiple-streams": ["server-accepts-multiple-post-streams", "server-sse-streams-functional"],
    "dns-rebinding-protection": ["localhost-host-rebinding-rejected", "localhost-host-valid-accepted"],
    "logging-set-level": ["logging-set-level"],
    "completion-complete": ["completion-complete"],
    "server-session-lifecycle": [
        "server-session-initialized-accepted",
        "server-session-delete-accepted",
        "server-session-terminated-returns-404",
    ],
    "server-stateless": [
        "sep-2575-server-implements-discover",
        "sep-2575-discover-capabilities-match-handlers",
    ],
    "sep-2164-resource-not-found": ["sep-2164-no-empty-contents", "sep-2164-error-code"],
    "caching": ["sep-2549-tools-list-caching-hints", "sep-2549-resources-templates-list-caching-hints"],
    "http-header-validation": ["sep-2243-server-reject-invalid-headers", "sep-2243-server-reject-error-code"],
}

# Checks that only mean something against the suite's own fixture server: they call its diagnostic
# `test_*` tools, which callsheet does not carry. Whatever they report (a failure, a warning, or a
# success that only says "nothing happened after an unknown tool") is shown and not counted.
FIXTURE_ONLY = {
    "server-stateless": {
        "sep-2575-server-rejects-undeclared-capability",  # test_missing_capability
        "sep-2575-missing-capability-http-400",  # test_missing_capability
        "sep-2575-http-server-no-independent-requests-on-stream",  # test_streaming_elicitation
        "sep-2575-server-no-log-without-loglevel",  # test_logging_tool
        "sep-2575-server-honors-notification-filter",  # test_trigger_tool_change
        "sep-2575-server-sends-tools-list-changed-on-subscription",  # test_trigger_tool_change
        "sep-2575-server-sends-prompts-list-changed-on-subscription",  # test_trigger_prompt_change
    },
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_health(url: str, seconds: float) -> int:
    deadline = time.monotonic() + seconds
    last = ""
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if json.load(r).get("status") == "ok":
                    return 0
        except (OSError, ValueError) as exc:
            last = str(exc)
        time.sleep(0.2)
    print(f"no healthy answer from {url} within {seconds:g} s ({last})", file=sys.stderr)
    return 1


def capabilities(url: str) -> int:
    body = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {
            "protocolVersion": "2025-11-25",
            "capabilities": {},
            "clientInfo": {"name": "callsheet-ci", "version": "1"},
        },
    }
    request = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json", "Accept": "application/json, text/event-stream"},
    )
    with urllib.request.urlopen(request, timeout=15) as r:
        text = r.read().decode()
    if r.headers.get("content-type", "").startswith("text/event-stream"):
        text = next(line[5:] for line in text.splitlines() if line.startswith("data:"))
    print(json.dumps(json.loads(text)["result"]["capabilities"]))
    return 0


def verdict(directory: str, scenario: str, rc: int) -> int:
    if rc not in (0, 1):  # 1: some check failed (judged below); anything else: the suite did not run
        print(f"FAIL {scenario}: the suite exited with {rc}", file=sys.stderr)
        return 1
    files = sorted(Path(directory).glob("*/checks.json"))
    if not files:
        print(f"FAIL {scenario}: the suite wrote no checks.json under {directory}", file=sys.stderr)
        return 1
    everything = json.loads(files[-1].read_text())
    ignored = FIXTURE_ONLY.get(scenario, set())
    checks = [c for c in everything if c["id"] not in ignored]
    failed = [c for c in checks if c["status"] == "FAILURE"]
    succeeded = {c["id"] for c in checks if c["status"] == "SUCCESS"}
    missing = [i for i in REQUIRED.get(scenario, []) if i not in succeeded]
    warnings = [c for c in checks if c["status"] == "WARNING"]
    for c in failed + warnings:
        print(f"       {c['status']} {c['id']}: {c.get('errorMessage') or c.get('description')}")
    not_counted = sorted({f"{c['id']} ({c['status']})" for c in everything if c["id"] in ignored})
    if not_counted:
        print(f"       not counted (need the suite's test_* fixture tools): {', '.join(not_counted)}")
    if failed or missing or not succeeded:
        if missing:
            print(f"       required checks not successful: {', '.join(missing)}")
        print(f"FAIL {scenario}: details in {files[-1]}", file=sys.stderr)
        print(json.dumps([c for c in checks if c["status"] != "SUCCESS"], indent=1)[:6000], file=sys.stderr)
        return 1
    print(f"  ok  {scenario}: {len(succeeded)} check(s) passed, {len(warnings)} warning(s)")
    return 0


def main(argv: list[str]) -> int:
    match argv:
        case ["free-port"]:
            print(free_port())
            return 0
        case ["wait-health", url, seconds]:
            return wait_health(url, float(seconds))
        case ["capabilities", url]:
            return capabilities(url)
        case ["verdict", directory, scenario, rc]:
            return verdict(directory, scenario, int(rc))
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
