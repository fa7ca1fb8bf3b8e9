"""Every provider's sandbox emulator served once, for replicas that must share one emulated account.

In sandbox mode each callsheet process normally runs the emulators in process. Several replicas
(README, "Several replicas") would then each have an account of their own, with their own limits;
to rehearse a deployment, serve the emulators once and point every replica at them:

    python -m server.sandbox_server --port 9100          # CALLSHEET_SANDBOX_TIME_SCALE applies
    CALLSHEET_SANDBOX_URL=http://127.0.0.1:9100 callsheet serve --http ...

Each emulator answers under `/<provider>` followed by its provider's own base path (FASHN's
`/fashn/v1/run`, say), with the same endpoints, limits and failures as in process.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from starlette.applications import Starlette
from starlette.routing import Mount

from server.config import Settings
from server.providers import REGISTRY
from server.sandbox.kit import Emulator


def sandbox_app(time_scale: float, state_dir: Path | None = None) -> tuple[Starlette, dict[str, Emulator]]:
    """The emulators of every registered provider, mounted at `/<provider>`, and the emulators."""
    emulators: dict[str, Emulator] = {
        name: provider.emulator_class()(time_scale=time_scale, state_dir=state_dir)
        for name, provider in REGISTRY.items()
    }
    return Starlette(routes=[Mount(f"/{name}", app=e.app) for name, e in emulators.items()]), emulators


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m server.sandbox_server", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9100)
    args = parser.parse_args(argv)
    import uvicorn

    settings = Settings.from_env()
    app, _ = sandbox_app(settings.sandbox_time_scale, settings.home / "sandbox")
    print(
        f"callsheet sandbox: {', '.join(sorted(REGISTRY))} at http://{args.host}:{args.port}/<provider> "
        f"(time scale {settings.sandbox_time_scale:g}); set CALLSHEET_SANDBOX_URL=http://{args.host}:{args.port}",
        file=sys.stderr,
    )
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0


if __name__ == "__main__":
    sys.exit(main())
