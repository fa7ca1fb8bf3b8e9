"""The MCP app factory: the one module of `server/` that imports `mcp`.

`create_app` wires the lifespan (which opens the services: store, providers, engine), the tools
of every provider that is live or sandbox, the job and account tools, the resources, and a
middleware that refuses unknown or invalid generation arguments with a message naming the field.
"""

from __future__ import annotations

import hmac
import json
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ResourceError
from mcp_types import CallToolResult, TextContent
from pydantic import BaseModel, ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from server import __version__
from server.config import Mode, Settings
from server.errors import CallsheetError
from server.providers import REGISTRY
from server.providers.base import OperationSpec, QuerySpec, input_error_from
from server.services import Services, open_services
from tools.account import register_account_tools
from tools.common import public_job, services
from tools.generation import register_generation_tools, register_query_tools
from tools.jobs import register_job_tools

INSTRUCTIONS = """\
callsheet runs fashion photo and video generation as durable jobs. Every generation tool returns a
Job; if it is still running when the call returns, call job_wait with its job_id (nothing is lost
on a timeout, and repeating an identical call never pays twice). Image arguments take an http(s)
URL, a data: URI, a local file path, or an earlier output as callsheet://jobs/{job_id}/outputs/{n}.
Check `providers` for prices and `credits` for balances before large batches.
"""

_OUTPUT_URI = re.compile(r"^callsheet://jobs/([^/]+)/outputs/(\d+)$")


def create_app(settings: Settings | None = None, **service_options: Any) -> MCPServer:
    """Build the server. `service_options` go to `open_services` (tests pass emulators and policies)."""
    settings = settings or Settings.from_env()

    @asynccontextmanager
    async def lifespan(_: MCPServer) -> AsyncIterator[Services]:
        async with open_services(settings, **service_options) as svc:
            yield svc

    app: MCPServer = MCPServer(
        "callsheet",
        version=__version__,
        instructions=INSTRUCTIONS,
        lifespan=lifespan,
        log_level=settings.log_level,
    )
    inputs: dict[str, type[BaseModel]] = {}
    specs: list[tuple[str, OperationSpec]] = []
    queries: list[tuple[str, QuerySpec]] = []
    for name, conf in settings.providers.items():
        registration = REGISTRY.get(name)
        if registration is None or conf.mode is Mode.OFF:
            continue
        for op in registration.adapter.operations():
            inputs[f"{name}_{op.operation}"] = op.inputs
            specs.append((name, op))
        queries += [(name, q) for q in registration.adapter.queries()]
    register_generation_tools(app, specs)
    register_query_tools(app, queries)
    register_job_tools(app)
    register_account_tools(app)
    _register_resources(app)
    app.middleware.append(_ArgumentCheck(inputs))

    @app.custom_route("/health", methods=["GET"])  # type: ignore[untyped-decorator]  # SDK decorator is untyped
    async def health(_: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    return app


class _ArgumentCheck:
    """Refuse unknown or invalid generation arguments before anything runs, naming field and fix.

    The SDK ignores unknown arguments and reports invalid ones in pydantic's words; the provider's
    own input model (extra fields forbidden) says it in the assistant's terms instead.
    """

    def __init__(self, inputs: dict[str, type[BaseModel]]) -> None:
        self.inputs = inputs

    async def __call__(self, ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
        params = ctx.params or {}
        if ctx.method == "tools/call" and params.get("name") in self.inputs:
            tool = str(params["name"])
            args = dict(params.get("arguments") or {})
            args.pop("wait_seconds", None)
            args.pop("force", None)
            try:
                self.inputs[tool].model_validate(args)
            except ValidationError as exc:
                error = input_error_from(exc, tool)
                return CallToolResult(
                    content=[TextContent(type="text", text=f"{error.message} [{error.code}]")], is_error=True
                )
        result = await call_next(ctx)
        if ctx.method == "resources/read" and isinstance(result, dict):
            await _fix_output_mime(ctx, result)
        return result


async def _fix_output_mime(ctx: ServerRequestContext[Any, Any], result: dict[str, Any]) -> None:
    """Serve an output with the file's own MIME type (a resource template fixes one type for all)."""
    svc = ctx.lifespan_context
    for content in result.get("contents") or []:
        match = _OUTPUT_URI.match(str(content.get("uri")))
        if match and isinstance(svc, Services):
            record = await svc.store.get(match.group(1))
            n = int(match.group(2))
            if record is not None and n < len(record.outputs):
                content["mimeType"] = record.outputs[n].mime_type


def _register_resources(app: MCPServer) -> None:
    @app.resource(
        "callsheet://jobs/{job_id}",
        name="job",
        description="A job as JSON: status, progress, outputs, credits, error.",
        mime_type="application/json",
    )
    async def job_resource(job_id: str, ctx: Context) -> str:
        svc = services(ctx)
        try:
            record = await svc.engine.get(job_id)
        except CallsheetError as exc:
            raise ResourceError(exc.message) from None
        return json.dumps(public_job(svc, record).model_dump(mode="json"), indent=2)

    @app.resource(
        "callsheet://jobs/{job_id}/outputs/{n}",
        name="job-output",
        description="An output file of a job (image or video), full size.",
        mime_type="application/octet-stream",
    )
    async def output_resource(job_id: str, n: str, ctx: Context) -> bytes:
        svc = services(ctx)
        try:
            record = await svc.engine.get(job_id)
            path, _ = svc.media.output_file(record, int(n))
        except (CallsheetError, ValueError) as exc:
            raise ResourceError(f"No output {n} for job {job_id}: {exc}") from None
        return path.read_bytes()


def http_app(app: MCPServer, *, host: str, token: str | None) -> ASGIApp:
    """Streamable HTTP at /mcp plus GET /health; a bearer token guards everything but /health."""
    starlette_app = app.streamable_http_app(host=host)
    if not token:
        return starlette_app
    expected = f"Bearer {token}"

    async def guarded(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] != "/health":
            headers = dict(scope.get("headers") or [])
            if not hmac.compare_digest(headers.get(b"authorization", b""), expected.encode()):
                response = JSONResponse({"error": "missing or wrong bearer token"}, status_code=401)
                await response(scope, receive, send)
                return
        await starlette_app(scope, receive, send)

    return guarded
