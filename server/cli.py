"""The `callsheet` command line: serve, demo, jobs, shoots, doctor.

In stdio mode stdout is the protocol channel: logs go to stderr, and nothing here prints to
stdout before or while `serve` runs.
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import os
import sys
from collections.abc import Sequence

import anyio

from server import __version__
from server.config import Settings
from server.errors import CallsheetError
from server.models import JobStatus, ShootStatus, credits_text
from server.providers.base import Mode
from server.redact import RedactingFilter, Redactor
from server.services import check_store, open_services
from server.store import damaged_records

LOOPBACK = {"127.0.0.1", "localhost", "::1"}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="callsheet", description="MCP server for fashion shoots.")
    parser.add_argument("--version", action="version", version=f"callsheet {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the MCP server (stdio by default)")
    serve.add_argument("--http", action="store_true", help="serve Streamable HTTP at /mcp instead of stdio")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8765)

    sub.add_parser("demo", help="run a sample shoot end to end in sandbox mode")
    sub.add_parser("doctor", help="show configuration, provider modes and connectivity")

    jobs = sub.add_parser("jobs", help="list, show or cancel jobs")
    jobs.add_argument("action", nargs="?", choices=["list", "show", "cancel"], default="list")
    jobs.add_argument("job_id", nargs="?")
    jobs.add_argument("--status", choices=[s.value for s in JobStatus])
    jobs.add_argument("--limit", type=int, default=20)

    shoots = sub.add_parser("shoots", help="list, show or cancel shoots")
    shoots.add_argument("action", nargs="?", choices=["list", "show", "cancel"], default="list")
    shoots.add_argument("shoot_id", nargs="?")
    shoots.add_argument("--status", choices=[s.value for s in ShootStatus])
    shoots.add_argument("--limit", type=int, default=20)

    args = parser.parse_args(argv)
    try:
        settings = Settings.from_env()
        logging.basicConfig(
            stream=sys.stderr,
            level=settings.log_level,
            format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        )
        for handler in logging.getLogger().handlers:
            handler.addFilter(RedactingFilter(Redactor(settings.secrets())))
        if args.command == "serve":
            return serve_command(settings, http=args.http, host=args.host, port=args.port)
        started()
        if args.command == "demo":
            from server.demo import run_demo

            return int(anyio.run(run_demo))
        if args.command == "doctor":
            return int(anyio.run(doctor, settings))
        if args.command == "shoots":
            shoot_args = (settings, args.action, args.shoot_id, args.status, args.limit)
            return int(anyio.run(shoots_command, *shoot_args))
        return int(anyio.run(jobs_command, settings, args.action, args.job_id, args.status, args.limit))
    except (CallsheetError, BaseExceptionGroup) as exc:
        # A task group wraps what its tasks raise: report callsheet's own errors as one line each.
        errors = _callsheet_errors(exc)
        if errors is None:
            raise
        for error in errors:
            print(f"callsheet: {error.message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def started() -> None:
    """The command has built what it runs on: what exists now lives as long as the process, so the
    garbage collector, off while it was built (server/__main__.py), comes back without it."""
    if not gc.isenabled():  # main() called from elsewhere (tests) leaves the collector as it was
        gc.freeze()
        gc.enable()


def _callsheet_errors(exc: BaseException) -> list[CallsheetError] | None:
    """The CallsheetErrors in `exc` (a group's too), or None if anything else is in it."""
    if isinstance(exc, CallsheetError):
        return [exc]
    if isinstance(exc, BaseExceptionGroup):
        found: list[CallsheetError] = []
        for inner in exc.exceptions:
            errors = _callsheet_errors(inner)
            if errors is None:
                return None
            found += errors
        return found
    return None


def serve_command(settings: Settings, *, http: bool, host: str, port: int) -> int:
    from server.app import create_app

    if http:  # a damaged data folder is one clear line now, not uvicorn's traceback of a failed start
        check_store(settings)  # (over stdio, opening the services says it in the same line)
    app = create_app(settings)
    started()
    if not http:
        anyio.run(app.run_stdio_async)
        return 0
    # One token, or several separated by commas: one per caller, each seeing only its own jobs.
    tokens = settings.http_tokens
    if host not in LOOPBACK and not tokens and settings.oauth_issuer is None:
        print(
            f"callsheet: refusing to serve on {host} without a bearer token. Set CALLSHEET_HTTP_TOKEN "
            "(clients then send 'Authorization: Bearer <token>') or CALLSHEET_OAUTH_ISSUER (README, "
            '"Hosted deployments"), or bind 127.0.0.1.',
            file=sys.stderr,
        )
        return 2
    import uvicorn

    from server.app import http_app

    print(f"callsheet: serving MCP at http://{host}:{port}/mcp (health: /health)", file=sys.stderr)
    # With a shared store (replicas behind a balancer), handshake-era requests are served statelessly
    # too, so that any replica can answer any request (README, "Several replicas").
    asgi = http_app(app, settings, host=host, stateless=settings.store_url is not None)
    uvicorn.run(asgi, host=host, port=port, log_level="warning")
    return 0


async def doctor(settings: Settings) -> int:
    """Configuration (never the keys), each provider's mode and whether it answers, the data folder."""
    info = settings.describe()
    print(f"callsheet {__version__}")
    print(f"data folder: {info['home']}")
    writable = os.access(settings.home, os.W_OK) if settings.home.exists() else True
    print(f"  writable: {'yes' if writable else 'NO - set CALLSHEET_HOME to a folder you can write'}")
    print(f"input roots: {', '.join(str(r) for r in settings.input_roots)}")
    print(f"private input URLs allowed: {'yes' if settings.allow_private_urls else 'no'}")
    print(f"store: {settings.store_where}")
    try:
        check_store(settings)
        if settings.store_url is not None:
            from server.store.redis import check_redis

            print(f"  {await check_redis(settings.store_url)}")
    except CallsheetError as exc:
        print(f"  NOT usable: {exc.message}")
        return 1
    damaged = damaged_records(settings.store_dir)
    if damaged:
        print(f"  {len(damaged)} damaged record(s) set aside in {damaged[0].parent}:")
        for path in damaged[:20]:
            print(f"    {path.name}")
    print("providers:")
    problems = 0
    async with open_services(settings, start_engine=False) as svc:
        for name, conf in settings.providers.items():
            line = f"  {name:<11} {conf.mode.value:<8} {conf.base_url}"
            adapter = svc.providers.get(name)
            if conf.mode is Mode.OFF:
                print(f"{line}  (set {conf.key_var} or CALLSHEET_SANDBOX=1)")
                continue
            if adapter is None:
                print(f"{line}  (adapter not available in this version)")
                continue
            try:
                with anyio.fail_after(15):
                    balance = await adapter.balance()
                status = (
                    f"reachable, {credits_text(balance.credits)}"
                    if balance.credits is not None
                    else "reachable"
                )
            except (CallsheetError, TimeoutError) as exc:
                problems += 1
                status = f"NOT reachable: {getattr(exc, 'message', 'timed out')}"
            print(f"{line}  {status}")
        # Who spent what today (every caller's day; the local user is "local").
        ledger = svc.engine.ledger
        if ledger is not None:
            limit = credits_text(ledger.limit) if ledger.limit is not None else "no limit"
            day = await ledger.usage(None)
            spent = await svc.engine.store.spending(day.day)
            print(f"credits today ({day.day}, per caller {limit}; resets {day.resets_at:%H:%M} UTC):")
            for who, used in sorted(spent.items(), key=lambda item: -item[1]) or [("local", 0.0)]:
                print(f"  {who:<30} {credits_text(used)}")
            print(f"audit trail: {ledger.audit_log}")
    return 1 if problems else 0


async def jobs_command(
    settings: Settings, action: str, job_id: str | None, status: str | None, limit: int
) -> int:
    async with open_services(settings, start_engine=False) as svc:
        if action == "list":
            records, _ = await svc.engine.list_jobs(status=JobStatus(status) if status else None, limit=limit)
            if not records:
                print("no jobs")
            for r in records:
                tool = f"{r.provider}_{r.operation}"
                print(f"{r.job_id}  {r.status.value:<9}  {tool:<26}  {r.created_at:%Y-%m-%d %H:%M}")
            return 0
        if not job_id:
            print(f"callsheet jobs {action} needs a job id", file=sys.stderr)
            return 2
        if action == "show":
            record = await svc.engine.get(job_id)
            print(json.dumps(record.public().model_dump(mode="json"), indent=2))
            return 0
        record, note = await svc.engine.cancel(job_id)
        print(f"{record.job_id}: {record.status.value}. {note}")
        return 0


async def shoots_command(
    settings: Settings, action: str, shoot_id: str | None, status: str | None, limit: int
) -> int:
    async with open_services(settings, start_engine=False) as svc:
        if action == "list":
            wanted = ShootStatus(status) if status else None
            records, _ = await svc.shoots.list(status=wanted, limit=limit)
            if not records:
                print("no shoots")
            for r in records:
                print(f"{r.shoot_id}  {r.status.value:<11}  {r.name[:40]:<40}  {r.created_at:%Y-%m-%d %H:%M}")
            return 0
        if not shoot_id:
            print(f"callsheet shoots {action} needs a shoot id", file=sys.stderr)
            return 2
        if action == "show":
            view = await svc.shoots.view(await svc.shoots.get(shoot_id))
            print(json.dumps(view.model_dump(mode="json"), indent=2))
            return 0
        record = await svc.shoots.cancel(shoot_id)
        note = record.note or "it had already ended; nothing to cancel."
        print(f"{record.shoot_id}: {record.status.value}. {note}")
        return 0
