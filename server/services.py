"""Build everything a running callsheet needs, once, and tear it down again.

The MCP app's lifespan and the command line both use `open_services`: HTTP clients, the store,
the provider adapters' connections (live against their base URLs, or sandbox against in-process
emulators) and the engine with its own task group are created here and passed in; nothing does
I/O at import time. `make_providers` makes the adapters themselves: the app does that when it is
built, since their operations become its tools.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from urllib.parse import urlsplit

import anyio
import httpx
from starlette.types import ASGIApp, Receive, Scope, Send

from server import __version__
from server.config import Settings
from server.engine import Engine
from server.http import HttpCaller
from server.ledger import Ledger
from server.limiter import Limiter
from server.links import Links
from server.media import Media
from server.policy import HTTP, PollPolicy, RetryPolicy
from server.providers import REGISTRY
from server.providers.base import Mode, OperationSpec, Provider
from server.redact import Redactor
from server.shoots import ShootRunner
from server.signals import limits_topic
from server.store import DiskShoots, DiskStore, open_backend


@dataclass
class Services:
    settings: Settings
    media: Media
    engine: Engine
    providers: dict[str, Provider]
    shoots: ShootRunner


def make_providers(settings: Settings) -> dict[str, Provider]:
    """An adapter for every provider that is live or sandbox (not connected yet)."""
    return {
        name: REGISTRY[name](conf)
        for name, conf in settings.providers.items()
        if name in REGISTRY and conf.mode is not Mode.OFF
    }


def operation_specs(providers: dict[str, Provider]) -> dict[str, tuple[str, OperationSpec]]:
    """Every generation tool available now: name -> (provider, spec)."""
    return {
        f"{name}_{op.operation}": (name, op)
        for name, adapter in providers.items()
        for op in adapter.operations()
    }


def check_store(settings: Settings) -> None:
    """Open and close the embedded stores once: a damaged file raises StorageError saying what to do, a
    damaged index is rebuilt, a damaged record is set aside. (Redis is checked when services open.)"""
    settings.home.mkdir(parents=True, exist_ok=True)
    if settings.store_url is None:
        DiskStore(settings.store_dir).close()
        DiskShoots(settings.store_dir / "shoots").close()


def built_on_first_request(build: Callable[[], ASGIApp]) -> ASGIApp:
    """An app made by `build` when the first request arrives: a sandbox emulator costs nothing at
    start-up (a server answers `initialize` and `tools/list` sooner) until a tool needs it."""
    built: list[ASGIApp] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if not built:
            built.append(build())
        await built[0](scope, receive, send)

    return app


@asynccontextmanager
async def open_services(
    settings: Settings,
    *,
    providers: dict[str, Provider] | None = None,
    sandbox_apps: dict[str, ASGIApp] | None = None,
    live_transport: httpx.AsyncBaseTransport | None = None,
    retry: RetryPolicy | None = None,
    poll: PollPolicy | None = None,
    lease_ttl: float | None = None,
    start_engine: bool = True,
) -> AsyncIterator[Services]:
    """`providers` are the app's adapters (made here when not given); `sandbox_apps` and
    `live_transport` let tests put their own fakes behind the real adapters."""
    settings.home.mkdir(parents=True, exist_ok=True)
    providers = make_providers(settings) if providers is None else providers
    async with open_backend(settings.store_url, settings.store_dir) as backend, AsyncExitStack() as stack:
        links = (
            Links(settings.public_url, settings.signing_key)
            if settings.public_url and settings.signing_key
            else None
        )
        media = Media(settings, backend.jobs, links)
        headers = {"User-Agent": f"callsheet/{__version__}"}
        live: httpx.AsyncClient | None = None  # made for the first provider reached over the network
        redactor = Redactor(settings.secrets())
        for name, adapter in providers.items():
            conf = adapter.settings
            scale = settings.sandbox_time_scale if adapter.sandbox else 1.0
            base_url = conf.base_url
            if adapter.sandbox and not (settings.sandbox_url and name not in (sandbox_apps or {})):
                app = (sandbox_apps or {}).get(name) or built_on_first_request(
                    functools.partial(adapter.emulator, scale, settings.home / "sandbox")
                )
                client = await stack.enter_async_context(
                    httpx.AsyncClient(
                        transport=httpx.ASGITransport(app=app), timeout=HTTP.timeout, headers=headers
                    )
                )
            else:
                if adapter.sandbox:
                    # The emulators served once for every replica (python -m server.sandbox_server).
                    base_url = f"{settings.sandbox_url}/{name}{urlsplit(conf.base_url).path}"
                if live is None:
                    live = await stack.enter_async_context(
                        httpx.AsyncClient(timeout=HTTP.timeout, headers=headers, transport=live_transport)
                    )
                client = live
            limiter = Limiter(
                adapter.limits().scaled(scale), backend.book(name), backend.signals, limits_topic(name)
            )
            adapter.connect(
                HttpCaller(
                    client,
                    provider=name,
                    base_url=base_url,
                    limiter=limiter,
                    headers=adapter.auth_headers("sandbox" if adapter.sandbox else conf.api_key or ""),
                    key_var=conf.key_var,
                    describe_error=adapter.describe_error,
                    time_scale=scale,
                    redactor=redactor,
                )
            )
        ledger = Ledger(backend.jobs, settings.caller_credits_per_day, settings.audit_file)
        engine = Engine(
            store=backend.jobs,
            media=media,
            providers=providers,
            signals=backend.signals,
            retry=retry,
            poll=poll,
            lease_ttl=settings.lease_seconds if lease_ttl is None else lease_ttl,
            ledger=ledger,
            links=links,
        )
        shoots = ShootRunner(
            engine=engine,
            store=backend.shoots,
            leases=backend.jobs,
            signals=backend.signals,
            settings=settings,
            tools=lambda: operation_specs(providers),
        )
        services = Services(settings, media, engine, providers, shoots)
        if not start_engine:  # the command line reading or canceling jobs: drive nothing
            yield services
            return
        async with engine.running(), shoots.running(), anyio.create_task_group() as upkeep:
            for adapter in providers.values():
                upkeep.start_soon(adapter.background)
            try:
                yield services
            finally:
                upkeep.cancel_scope.cancel()
