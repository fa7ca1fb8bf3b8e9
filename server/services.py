"""Build everything a running callsheet needs, once, and tear it down again.

The MCP app's lifespan and the command line both use `open_services`: HTTP clients, the store,
the provider adapters (live against their base URLs, or sandbox against in-process emulators)
and the engine with its own task group are created here and passed in; nothing does I/O at
import time.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import anyio
import httpx
from starlette.types import ASGIApp

from server import __version__
from server.config import Mode, Settings
from server.engine import Engine
from server.http import HttpCaller
from server.limiter import Limiter
from server.media import Media
from server.policy import HTTP, PollPolicy, RetryPolicy
from server.providers import REGISTRY
from server.providers.base import OperationSpec, Provider
from server.redact import Redactor
from server.shoots import ShootRunner, ShootStore
from server.store import DiskStore


@runtime_checkable
class Background(Protocol):
    """An adapter with upkeep to do while the server runs (the Generation API refreshes its tools)."""

    async def background(self, settings: Settings) -> None: ...


@runtime_checkable
class DiscoveredOperations(Protocol):
    """An adapter whose operations' input models follow what the provider reports at run time.

    The MCP app rebuilds those tools' schemas when `on_operations_changed` fires and tells clients.
    """

    def current_operations(self) -> list[OperationSpec]: ...

    def on_operations_changed(self, listener: Callable[[], Awaitable[None]]) -> None: ...

    async def rediscover(self, operation: str, args: dict[str, Any]) -> bool:
        """The call names something not discovered yet: look again (once); True if it is known now."""
        ...


@dataclass
class Services:
    settings: Settings
    store: DiskStore
    media: Media
    engine: Engine
    providers: dict[str, Provider]
    shoots: ShootRunner


def operation_specs(providers: dict[str, Provider]) -> dict[str, tuple[str, OperationSpec]]:
    """Every generation tool available now: name -> (provider, spec); discovered ones as last seen."""
    out: dict[str, tuple[str, OperationSpec]] = {}
    for name, adapter in providers.items():
        ops = (
            adapter.current_operations()
            if isinstance(adapter, DiscoveredOperations)
            else adapter.operations()
        )
        out.update({f"{name}_{op.operation}": (name, op) for op in ops})
    return out


def check_store(settings: Settings) -> None:
    """Open and close the stores once: a damaged file raises StorageError saying what to do, a damaged
    index is rebuilt, a damaged record is set aside."""
    settings.home.mkdir(parents=True, exist_ok=True)
    DiskStore(settings.store_dir).close()
    ShootStore(settings.store_dir / "shoots").close()


@asynccontextmanager
async def open_services(
    settings: Settings,
    *,
    sandbox_apps: dict[str, ASGIApp] | None = None,
    live_transport: httpx.AsyncBaseTransport | None = None,
    retry: RetryPolicy | None = None,
    poll: PollPolicy | None = None,
    lease_ttl: float = 30.0,
    start_engine: bool = True,
) -> AsyncIterator[Services]:
    """`sandbox_apps` and `live_transport` let tests put their own fakes behind the real adapters."""
    settings.home.mkdir(parents=True, exist_ok=True)
    store = DiskStore(settings.store_dir)
    media = Media(settings, store)
    try:
        async with AsyncExitStack() as stack:
            headers = {"User-Agent": f"callsheet/{__version__}"}
            live = await stack.enter_async_context(
                httpx.AsyncClient(timeout=HTTP.timeout, headers=headers, transport=live_transport)
            )
            providers: dict[str, Provider] = {}
            redactor = Redactor(settings.secrets())
            for name, conf in settings.providers.items():
                registration = REGISTRY.get(name)
                if registration is None or conf.mode is Mode.OFF:
                    continue
                sandbox = conf.mode is Mode.SANDBOX
                scale = settings.sandbox_time_scale if sandbox else 1.0
                if sandbox:
                    app = (sandbox_apps or {}).get(name) or registration.sandbox_app(
                        scale, settings.home / "sandbox"
                    )
                    client = await stack.enter_async_context(
                        httpx.AsyncClient(
                            transport=httpx.ASGITransport(app=app), timeout=HTTP.timeout, headers=headers
                        )
                    )
                else:
                    client = live
                http = HttpCaller(
                    client,
                    provider=name,
                    base_url=conf.base_url,
                    limiter=Limiter(registration.limits(settings).scaled(scale)),
                    headers=registration.auth_headers("sandbox" if sandbox else conf.api_key or ""),
                    key_var=conf.key_var,
                    error_message=registration.error_message,
                    time_scale=scale,
                    redactor=redactor,
                )
                providers[name] = registration.adapter(http, sandbox=sandbox, time_scale=scale)
            engine = Engine(
                store=store, media=media, providers=providers, retry=retry, poll=poll, lease_ttl=lease_ttl
            )
            shoot_store = ShootStore(settings.store_dir / "shoots")
            stack.callback(shoot_store.close)
            shoots = ShootRunner(
                engine=engine, store=shoot_store, settings=settings, tools=lambda: operation_specs(providers)
            )
            services = Services(settings, store, media, engine, providers, shoots)
            if not start_engine:  # the command line reading or canceling jobs: drive nothing
                yield services
                return
            async with engine.running(), shoots.running(), anyio.create_task_group() as upkeep:
                for adapter in providers.values():
                    if isinstance(adapter, Background):
                        upkeep.start_soon(adapter.background, settings)
                try:
                    yield services
                finally:
                    upkeep.cancel_scope.cancel()
    finally:
        store.close()
