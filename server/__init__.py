"""callsheet: durable generation jobs for fashion shoots, served over MCP.

Everything below the MCP surface lives here; only `server.app` imports `mcp`.
"""

import sys
import types

__version__ = "0.1.0"


def _without_httpx_cli() -> None:
    """Keep httpx's command line out of every start.

    httpx imports `httpx._main` when it is imported and click is installed (uvicorn brings click), and
    that pulls in rich and pygments: about 40 ms and 3.4 MB at every start, for a command line callsheet
    never runs. A stand-in takes its place before httpx is first imported; `httpx.main` then says so.
    """
    if "httpx" in sys.modules or "httpx._main" in sys.modules:
        return

    def main(*_: object, **__: object) -> None:
        raise SystemExit("httpx's command line is not loaded inside callsheet: run it from its own process.")

    stand_in = types.ModuleType("httpx._main", "Stand-in for httpx's command line (see server/__init__.py).")
    stand_in.main = main  # type: ignore[attr-defined]
    sys.modules["httpx._main"] = stand_in


_without_httpx_cli()
