"""The MCP app factory: the one module of `server/` that imports `mcp`.

`create_app` wires the lifespan (which opens the services: store, providers, engine), the tools
of every provider that is live or sandbox, the job and account tools, the resources, and a
middleware that refuses unknown or invalid generation arguments with a message naming the field.
Tools whose inputs a provider discovers at run time (the Generation API's tool list) are rebuilt
when the provider reports a change, and clients are told (`_ToolListChanged`).
"""

from __future__ import annotations

import functools
import html
import json
import mimetypes
import re
from collections import deque
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

import anyio
from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser
from mcp.server.auth.provider import AccessToken
from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ResourceError, ResourceNotFoundError
from mcp.server.session import ServerSession
from mcp.server.subscriptions import InMemorySubscriptionBus, SubscriptionBus, ToolsListChanged
from mcp.shared.exceptions import MCPError
from mcp_types import INVALID_PARAMS, CallToolResult, TextContent
from pydantic import AnyHttpUrl, ValidationError
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from prompts import register_prompts
from server import __version__
from server.access import CALLER_KEY, GENERATE, READ, AccessGate, Caller, StaticTokens, Verifier, Verifiers
from server.config import Settings
from server.errors import CallsheetError, InputError, NotFound
from server.links import PATHS, Links
from server.models import JobRecord
from server.policy import MAX_INPUT_IMAGE_BYTES, MAX_TEXT_CHARS
from server.providers.base import OperationSpec, Provider, input_error_from
from server.services import Services, make_providers, open_services, operation_specs
from tools.account import register_account_tools
from tools.common import caller, caller_of, services
from tools.generation import register_generation_tools, register_query_tools, replace_generation_tool
from tools.jobs import register_job_tools
from tools.shoots import register_shoot_tools
from tools.surface import lazy_tools, server_icons, views

CONVENTIONS = f"""\
callsheet runs fashion photo and video generation as durable jobs. What every generation tool shares:
- Image references: an image argument takes an http(s) URL, a data:image/...;base64 URI, a local file
  path inside CALLSHEET_INPUT_ROOTS, or an earlier output as callsheet://jobs/{{job_id}}/outputs/{{n}}.
  Auto Toon and neo-fashion take URLs only ("Image URL"): a public http(s) URL, or an earlier output
  of a provider that returns URLs (FASHN, Auto Toon); local files and data: URIs are refused there.
  The Generation API takes files, not URLs.
- wait_seconds (0-50, default 40): how long the call waits for the job, with progress. A job still
  running comes back with its job_id, status and next step: call job_wait with its id. Nothing is
  lost when a call times out.
- Identical calls are one job: repeating a call returns the existing job (running or succeeded) and
  spends nothing. force: true pays for a fresh generation. A failed or canceled job is tried again.
- Costs: each tool's description gives its price in credits; a field mentions cost only when it
  changes it. Check `providers` for prices and `credits` for balances before large batches; shoots
  (shoot_validate, shoot_start) price a whole shot list first.
- Text arguments take up to {MAX_TEXT_CHARS:,} characters. Results are a Job: status, progress,
  outputs (a small thumbnail and a link to each full file), credits used, error.
"""
"""Said once, for every tool: the server's instructions, and the resource callsheet://conventions."""

T = TypeVar("T")
_OUTPUT_URI = re.compile(r"^callsheet://jobs/([^/]+)/outputs/(\d+)$")


def create_app(settings: Settings | None = None, **service_options: Any) -> MCPServer:
    """Build the server. `service_options` go to `open_services` (tests pass emulators and policies)."""
    settings = settings or Settings.from_env()
    bus = InMemorySubscriptionBus()
    tool_list = _ToolListChanged(bus)
    providers = make_providers(settings)

    running: dict[str, Services] = {}
    """The services while the server runs, for the routes outside MCP (signed links)."""

    @asynccontextmanager
    async def lifespan(_: MCPServer) -> AsyncIterator[Services]:
        async with open_services(settings, providers=providers, **service_options) as svc:
            running["services"] = svc
            try:
                yield svc
            finally:
                running.pop("services", None)

    app: MCPServer = MCPServer(
        "callsheet",
        title="callsheet: fashion photo and video shoots",
        icons=server_icons(),
        extensions=[views()],
        version=__version__,
        instructions=CONVENTIONS,
        lifespan=lifespan,
        log_level=settings.log_level,
        subscriptions=bus,
    )
    built = lazy_tools(app, settings.home / "cache")
    tools = {
        name: (provider, spec)
        for name, (provider, spec) in operation_specs(providers).items()
        if settings.lists(provider)
    }
    specs = list(tools.values())
    queries = [
        (name, q) for name, adapter in providers.items() if settings.lists(name) for q in adapter.queries()
    ]
    for name, adapter in providers.items():
        if not settings.lists(name):
            continue
        adapter.on_operations_changed(
            functools.partial(_operations_changed, app, name, adapter, tools, tool_list)
        )
    register_generation_tools(app, specs)
    register_query_tools(app, queries)
    for group, register in (
        ("jobs", register_job_tools),
        ("account", register_account_tools),
        ("shoots", register_shoot_tools),
    ):
        if settings.lists(group):
            register(app)
    register_prompts(app)
    _register_resources(app)
    built.schemas.save()  # what this start had to build, for the next
    app.middleware.append(_ArgumentCheck(app, tools))
    app.middleware.append(tool_list)

    @app.custom_route("/health", methods=["GET"])  # type: ignore[untyped-decorator]  # SDK decorator is untyped
    async def health(_: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    @app.custom_route("/files/{path:path}", methods=["GET"])  # type: ignore[untyped-decorator]
    async def files(request: Request) -> Response:
        return await _signed_file(running.get("services"), request)

    @app.custom_route("/uploads", methods=["POST"])  # type: ignore[untyped-decorator]
    async def uploads(request: Request) -> Response:
        """An image a remote client cannot name on this disk: its bytes in, a reference out."""
        svc, who = running.get("services"), (request.scope.get("state") or {}).get(CALLER_KEY)
        if svc is None or not isinstance(who, Caller):
            return _refused(401, "invalid_token", "Send 'Authorization: Bearer <token>'.")
        if who.scopes is not None and GENERATE not in who.scopes:
            return _refused(403, "insufficient_scope", f"Uploading needs the scope {GENERATE}.")
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_INPUT_IMAGE_BYTES:
                return _refused(413, "too_large", f"An upload is at most {MAX_INPUT_IMAGE_BYTES:,} bytes.")
        try:
            return JSONResponse(await svc.media.upload(bytes(body), who.id), status_code=201)
        except CallsheetError as exc:
            return _refused(400, exc.code, exc.message)

    @app.custom_route("/hooks/{job_id}/{token}", methods=["POST"])  # type: ignore[untyped-decorator]
    async def hooks(request: Request) -> Response:
        """A provider's webhook (FASHN): the path is the secret; the job's driver confirms the state."""
        svc = running.get("services")
        job_id, token = str(request.path_params["job_id"]), str(request.path_params["token"])
        links = svc.engine.links if svc is not None else None
        if svc is None or links is None or not links.hook_ok(job_id, token):
            return _refused(404, "not_found", "No such webhook.")
        try:
            return JSONResponse({"status": await svc.engine.called_back(job_id)})
        except CallsheetError as exc:
            return _refused(404, "not_found", exc.message)

    return app


async def _signed_file(svc: Services | None, request: Request) -> Response:
    """A file a signed link names (server/links.py): no token, nothing but what the link names."""
    links = svc.engine.links if svc is not None else None
    if svc is None or links is None:
        off = "Signed links are off: set CALLSHEET_PUBLIC_URL and CALLSHEET_SIGNING_KEY."
        return _refused(404, "not_found", off)
    path = str(request.path_params["path"])
    problem = links.problem(path, request.query_params.get("exp", ""), request.query_params.get("sig", ""))
    if problem is not None:
        return _refused(410 if "expired" in problem else 403, "invalid_link", problem)
    found = PATHS.fullmatch(path)
    assert found is not None  # `problem` checked it
    headers = {"Cache-Control": "private, max-age=300", "X-Content-Type-Options": "nosniff"}
    try:
        if found["job"]:
            record = await svc.engine.find(found["job"])
            if record is None:
                raise NotFound(f"Job {found['job']} is gone.")
            file, mime = svc.media.output_file(record, int(found["n"]))
            return FileResponse(file, media_type=mime, headers=headers)
        if found["sha"]:
            kept = svc.media.input_file(f"{found['sha']}.{found['ext']}")
            if kept is None:
                raise NotFound("The input is no longer kept.")
            return FileResponse(kept, media_type=mimetypes.guess_type(kept.name)[0], headers=headers)
        shoot = await svc.shoots.get(found["shoot"])
        folder = Path(shoot.folder)
        headers["Content-Security-Policy"] = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"
        if not found["name"]:
            return HTMLResponse(_listing(shoot.name, folder, found["shoot"], links), headers=headers)
        file = folder / found["name"]
        if found["name"].startswith(".") or file.is_symlink() or not file.is_file():
            raise NotFound(f"The shoot folder has no file {found['name']!r}.")
        return FileResponse(file, media_type=mimetypes.guess_type(file.name)[0], headers=headers)
    except CallsheetError as exc:
        return _refused(404, "not_found", exc.message)


def _listing(name: str, folder: Path, shoot_id: str, links: Links) -> str:
    entries = sorted(
        p for p in folder.iterdir() if p.is_file() and not p.is_symlink() and not p.name.startswith(".")
    )
    rows = "".join(
        f'<li><a href="{html.escape(links.sign(f"shoots/{shoot_id}/{p.name}"))}">{html.escape(p.name)}</a> '
        f"({p.stat().st_size:,} bytes)</li>"
        for p in entries
    )
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(name)}</title></head><body><h1>{html.escape(name)}</h1><ul>{rows}</ul></body></html>"
    )


def _refused(status: int, error: str, description: str) -> JSONResponse:
    return JSONResponse({"error": error, "error_description": description}, status_code=status)


class _ArgumentCheck:
    """Refuse a call with unknown, missing or invalid arguments before anything runs, naming each
    field and the fix, for every tool; and a prompt request that names no prompt or leaves out a
    required argument, as the protocol's invalid-params error (-32602) naming them.

    The SDK ignores unknown arguments and reports invalid ones in pydantic's words (with links); for
    a generation tool the provider's own input model (extra fields forbidden) is the check. For a
    provider that discovers its inputs (the Generation API's tools), a refused call first lets the
    adapter look again, once: a tool added since the last refresh is then accepted.
    """

    def __init__(self, app: MCPServer, tools: dict[str, tuple[str, OperationSpec]]) -> None:
        self.app = app
        self.tools = tools
        """Generation tool name -> (provider, operation spec); rebuilt specs replace the old ones."""

    async def __call__(self, ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
        params = ctx.params or {}
        if ctx.method == "tools/call":
            error = await self._tool_problem(
                ctx, str(params.get("name")), dict(params.get("arguments") or {})
            )
            if error is not None:
                return CallToolResult(
                    content=[TextContent(type="text", text=f"{error.message} [{error.code}]")], is_error=True
                )
        elif ctx.method == "prompts/get":
            await self._check_prompt(str(params.get("name")), dict(params.get("arguments") or {}))
        result = await call_next(ctx)
        if ctx.method == "resources/read" and isinstance(result, dict):
            await _fix_output_mime(ctx, result)
        elif ctx.method == "resources/list" and isinstance(result, dict) and not params.get("cursor"):
            result["resources"] = [*result.get("resources", []), *await _recent(ctx)]
        return result

    async def _tool_problem(
        self, ctx: ServerRequestContext[Any, Any], name: str, args: dict[str, Any]
    ) -> InputError | None:
        if name in self.tools:
            given = {k: v for k, v in args.items() if k not in ("wait_seconds", "force")}
            error = self._problem(name, given)
            if error is not None and await self._rediscovered(ctx, name, given):
                error = self._problem(name, given)  # checked again against the rebuilt model
            if error is not None:
                return error
        # The SDK's own model of the tool's parameters (mcp 2.3.0 keeps it on the registered tool),
        # looked up after a rediscovery may have rebuilt the tool.
        tool = self.app._tool_manager.get_tool(name)
        if tool is None:
            return None  # the SDK answers an unknown tool itself
        model = tool.fn_metadata.arg_model
        known = {field.alias or field_name for field_name, field in model.model_fields.items()}
        unknown = sorted(set(args) - known)
        if unknown:
            return InputError(
                ", ".join(unknown),
                f"unknown argument{'s' if len(unknown) > 1 else ''}.",
                f"{name} takes {', '.join(sorted(known)) or 'no arguments'}.",
            )
        try:
            tool.fn_metadata.validate_arguments(args)
        except ValidationError as exc:
            return input_error_from(exc, name)
        return None

    async def _check_prompt(self, name: str, args: dict[str, Any]) -> None:
        prompts = {p.name: p for p in await self.app.list_prompts()}
        prompt = prompts.get(name)
        if prompt is None:
            raise MCPError(
                INVALID_PARAMS, f"Unknown prompt {name!r}. The prompts are: {', '.join(sorted(prompts))}."
            )
        known = [a.name for a in prompt.arguments or []]
        unknown = sorted(set(args) - set(known))
        if unknown:
            nameless = ", ".join(unknown)
            raise MCPError(
                INVALID_PARAMS,
                f"The prompt {name} has no argument {nameless}; its arguments are {', '.join(known)}.",
            )
        missing = [a.name for a in prompt.arguments or [] if a.required and not str(args.get(a.name) or "")]
        if missing:
            plural = "s" if len(missing) > 1 else ""
            raise MCPError(
                INVALID_PARAMS, f"The prompt {name} needs the argument{plural} {', '.join(missing)}."
            )

    def _problem(self, tool: str, args: dict[str, Any]) -> InputError | None:
        try:
            self.tools[tool][1].inputs.model_validate(args)
        except ValidationError as exc:
            return input_error_from(exc, tool)
        return None

    async def _rediscovered(
        self, ctx: ServerRequestContext[Any, Any], tool: str, args: dict[str, Any]
    ) -> bool:
        svc = ctx.lifespan_context
        provider, spec = self.tools[tool]
        adapter = svc.providers.get(provider) if isinstance(svc, Services) else None
        return adapter is not None and await adapter.rediscover(spec.operation, args)


async def _operations_changed(
    app: MCPServer,
    provider: str,
    adapter: Provider,
    tools: dict[str, tuple[str, OperationSpec]],
    tool_list: _ToolListChanged,
) -> None:
    """A provider discovered other inputs: rebuild its tools (schema and argument check), tell clients."""
    for op in adapter.operations():
        tools[f"{provider}_{op.operation}"] = (provider, op)
        replace_generation_tool(app, provider, op)
    await tool_list.send()


_MAX_LEGACY_SESSIONS = 256


class _ToolListChanged:
    """Tells clients that the tool list changed, in both protocol eras.

    2026-07-28 clients learn it on a `subscriptions/listen` stream: the event goes on the server's
    subscription bus, and the SDK advertises `tools.listChanged` at that era by itself.
    Handshake-era clients get `notifications/tools/list_changed` on their connection's standalone
    channel: this middleware keeps the session of each connection that completed the handshake
    and adds `tools.listChanged` to the capabilities the handshake announces. The SDK gives no
    signal when a connection closes (a send to a closed one is dropped quietly), so only the most
    recent `_MAX_LEGACY_SESSIONS` connections are kept.
    """

    def __init__(self, bus: SubscriptionBus) -> None:
        self.bus = bus
        self.sessions: deque[ServerSession] = deque(maxlen=_MAX_LEGACY_SESSIONS)

    async def __call__(self, ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
        result = await call_next(ctx)
        if ctx.method == "notifications/initialized":
            self.sessions.append(ctx.session)
        elif ctx.method == "initialize" and isinstance(result, dict):
            tools = (result.get("capabilities") or {}).get("tools")
            if isinstance(tools, dict):
                tools["listChanged"] = True
        return result

    async def send(self) -> None:
        await self.bus.publish(ToolsListChanged())
        for session in list(self.sessions):
            await session.send_tool_list_changed()


RECENT_JOBS, RECENT_SHOOTS = 20, 10
"""How many of the caller's newest jobs and shoots `resources/list` offers (resource pickers)."""


async def _recent(ctx: ServerRequestContext[Any, Any]) -> list[dict[str, Any]]:
    """The caller's newest shoots and jobs as resources, as clients' resource pickers expect."""
    svc = ctx.lifespan_context
    if not isinstance(svc, Services):
        return []
    who = caller_of(ctx).id
    shoots, _ = await svc.shoots.list(caller=who, limit=RECENT_SHOOTS)
    jobs, _ = await svc.engine.list_jobs(caller=who, limit=RECENT_JOBS)
    return [
        *(
            {
                "uri": f"callsheet://shoots/{s.shoot_id}",
                "name": f"shoot-{s.shoot_id}",
                "title": f"Shoot {s.name} ({s.status.value})",
                "description": f"Started {s.created_at:%Y-%m-%d %H:%M} UTC: plan, steps, jobs, outputs.",
                "mimeType": "application/json",
            }
            for s in shoots
        ),
        *(
            {
                "uri": f"callsheet://jobs/{j.job_id}",
                "name": f"job-{j.job_id}",
                "title": f"{j.provider} {j.operation} ({j.status.value})",
                "description": f"Created {j.created_at:%Y-%m-%d %H:%M} UTC: status, outputs, credits.",
                "mimeType": "application/json",
            }
            for j in jobs
        ),
    ]


async def _fix_output_mime(ctx: ServerRequestContext[Any, Any], result: dict[str, Any]) -> None:
    """Serve an output with the file's own MIME type (a resource template fixes one type for all)."""
    svc = ctx.lifespan_context
    for content in result.get("contents") or []:
        match = _OUTPUT_URI.match(str(content.get("uri")))
        if match and isinstance(svc, Services):
            record = await svc.engine.find(match.group(1))
            n = int(match.group(2))
            if record is not None and n < len(record.outputs):
                content["mimeType"] = record.outputs[n].mime_type


async def _found(lookup: Awaitable[T]) -> T:
    """A job or shoot for a resource read; an unknown id is the protocol's not-found error naming it."""
    try:
        return await lookup
    except NotFound as exc:
        raise ResourceNotFoundError(exc.message) from None
    except CallsheetError as exc:
        raise ResourceError(exc.message) from None


def _register_resources(app: MCPServer) -> None:
    @app.resource(
        "callsheet://conventions",
        name="conventions",
        title="What every generation tool shares",
        description="Image references, wait_seconds, force, costs: said once here, not on every tool.",
        mime_type="text/markdown",
    )
    async def conventions() -> str:
        return CONVENTIONS

    @app.resource(
        "callsheet://jobs/{job_id}",
        name="job",
        description="A job as JSON: status, progress, outputs, credits, error.",
        mime_type="application/json",
    )
    async def job_resource(job_id: str, ctx: Context) -> str:
        svc = services(ctx)
        record = await _found(svc.engine.get(job_id, caller=caller(ctx).id))
        return json.dumps(svc.engine.public(record).model_dump(mode="json"), indent=2)

    @app.resource(
        "callsheet://shoots/{shoot_id}",
        name="shoot",
        description="A shoot's manifest as JSON: plan, steps, jobs, outputs, credits.",
        mime_type="application/json",
    )
    async def shoot_resource(shoot_id: str, ctx: Context) -> str:
        svc = services(ctx)
        record = await _found(svc.shoots.get(shoot_id, caller=caller(ctx).id))
        view = await svc.shoots.view(record)
        return json.dumps({"shoot": view.model_dump(mode="json"), "plan": record.plan}, indent=2)

    @app.resource(
        "callsheet://shoots/{shoot_id}/contact-sheet",
        name="shoot-contact-sheet",
        description="The shoot's contact sheet: a PNG grid of every output with step names.",
        mime_type="image/png",
    )
    async def contact_sheet_resource(shoot_id: str, ctx: Context) -> bytes:
        svc = services(ctx)
        record = await _found(svc.shoots.get(shoot_id, caller=caller(ctx).id))
        path = Path(record.folder) / "contact-sheet.png"
        if not path.exists():
            raise ResourceNotFoundError(
                f"Shoot {shoot_id} has no contact sheet yet; it is written when the shoot ends."
            )
        return await anyio.Path(path).read_bytes()

    @app.resource(
        "callsheet://jobs/{job_id}/outputs/{n}/thumbnail",
        name="job-output-thumbnail",
        description="A small JPEG of an image output (at most 512 px, under 100 KB), for previews.",
        mime_type="image/jpeg",
    )
    async def thumbnail_resource(job_id: str, n: str, ctx: Context) -> bytes:
        svc = services(ctx)
        record, index, _ = await _output(ctx, job_id, n)
        thumb = await anyio.to_thread.run_sync(svc.media.thumbnail, record.outputs[index])
        if thumb is None:
            raise ResourceNotFoundError(
                f"Output {n} of job {job_id} is not an image: read callsheet://jobs/{job_id}/outputs/{n}."
            )
        return thumb[0]

    @app.resource(
        "callsheet://jobs/{job_id}/outputs/{n}",
        name="job-output",
        description="An output file of a job (image or video), full size.",
        mime_type="application/octet-stream",
    )
    async def output_resource(job_id: str, n: str, ctx: Context) -> bytes:
        _, _, path = await _output(ctx, job_id, n)
        return await anyio.Path(path).read_bytes()


async def _output(ctx: Context, job_id: str, n: str) -> tuple[JobRecord, int, Path]:
    """The caller's job, the output's index and its file, for a resource read; else the protocol's
    not-found error naming them."""
    svc = services(ctx)
    try:
        record = await svc.engine.get(job_id, caller=caller(ctx).id)
        path, _ = svc.media.output_file(record, int(n))
    except (NotFound, ValueError) as exc:
        raise ResourceNotFoundError(f"No output {n} for job {job_id}: {exc}") from None
    except CallsheetError as exc:
        raise ResourceError(exc.message) from None
    return record, int(n), path


def http_app(app: MCPServer, settings: Settings, *, host: str, stateless: bool = False) -> ASGIApp:
    """Streamable HTTP at /mcp plus GET /health, behind the `AccessGate` (server/access.py).

    Each static token (`CALLSHEET_HTTP_TOKEN`) is one caller, and with `CALLSHEET_OAUTH_ISSUER` each
    issuer and subject of an access token is one (server/oauth.py), the two side by side: a caller sees
    only the jobs and shoots it made (`tools.common.caller`). With OAuth the RFC 9728 metadata is served
    (the SDK's route) and named in every 401; a request needing a scope the token lacks gets 403
    (`_needs`). The SDK is told the caller too (`scope["user"]`), so a handshake-era session answers
    only the credential that opened it. `stateless`: handshake-era requests carry no session either (as
    the 2026-07-28 era's never do), so replicas behind a balancer that does not stick can answer any of
    them; those clients then get no notifications outside a request (a changed tool list).
    """
    # Imported here: the OAuth pieces (PyJWT, cryptography, the SDK's auth routes) cost stdio nothing.
    from mcp.server.auth.routes import build_resource_metadata_url, create_protected_resource_routes

    from server.oauth import OAuthTokens

    starlette_app = app.streamable_http_app(host=host, stateless_http=stateless)
    verifiers: list[Verifier] = [StaticTokens(settings.http_tokens)] if settings.http_tokens else []
    open_paths, metadata = ["/health"], None
    if settings.oauth_issuer is not None and settings.oauth_audience and settings.public_url:
        verifiers.append(OAuthTokens(settings.oauth_issuer, settings.oauth_audience))
        resource = AnyHttpUrl(f"{settings.public_url}/mcp")
        routes = create_protected_resource_routes(
            resource_url=resource,
            authorization_servers=[settings.oauth_issuer],  # type: ignore[list-item]  # kept as written
            scopes_supported=[READ, GENERATE],
            resource_name="callsheet",
        )
        starlette_app.router.routes[0:0] = routes
        open_paths += [route.path for route in routes if isinstance(route, Route)]
        metadata = str(build_resource_metadata_url(resource))

    async def with_sdk_user(scope: Scope, receive: Receive, send: Send) -> None:
        found = (scope.get("state") or {}).get(CALLER_KEY)
        if isinstance(found, Caller) and found.id is not None:
            token = AccessToken(
                token="-", client_id=found.id, scopes=sorted(found.scopes or ()), subject=found.id
            )
            scope["user"] = AuthenticatedUser(token)
        await starlette_app(scope, receive, send)

    return AccessGate(
        with_sdk_user,
        Verifiers(*verifiers) if verifiers else None,
        open_paths=open_paths,
        needs=functools.partial(_needs, app),
        resource_metadata=metadata,
    )


def _needs(app: MCPServer, method: str, params: dict[str, Any]) -> str | None:
    """The scope an MCP request needs: `GENERATE` for a tool that is not read-only (it spends or
    cancels), `READ` for other tools, lists, resources, prompts and completions; none to start a
    session, ping or notify."""
    if method in ("initialize", "ping", "subscriptions/listen") or method.startswith("notifications/"):
        return None
    if method == "tools/call":
        tool = app._tool_manager.get_tool(str(params.get("name")))
        if tool is not None and tool.annotations is not None and tool.annotations.read_only_hint is False:
            return GENERATE
    return READ
