"""Shared test setup. Async test modules set `pytestmark = pytest.mark.anyio` (asyncio backend)."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

from server.config import Settings
from server.http import HttpCaller
from server.limiter import Limiter
from server.policy import PollPolicy, RetryPolicy
from server.providers.base import Mode, Provider, ProviderSettings
from server.providers.fashn.emulator import FashnEmulator, FashnFaults
from server.services import Services, open_services
from tests.redis_server import RedisServer


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """One real redis-server for the session (tests that stop or restart Redis start their own)."""
    server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """The session's Redis, emptied for this test."""
    redis_server.flush()
    return redis_server.url


# -- shared fixtures: settings in a temporary folder, sample images, fast sandbox services ----------


FIXED_RESOURCES = {"callsheet://conventions", "ui://callsheet/shoot-board.html", "ui://callsheet/job.html"}
"""Resources every caller is offered; the rest of `resources/list` is the caller's own jobs and shoots."""
TIME_SCALE = 0.002
FAST_RETRY = RetryPolicy(attempts=4, base=0.005, cap=0.05)
FAST_POLL = PollPolicy(floor=0.01)


def make_settings(home: Path, roots: Path, **env: str) -> Settings:
    return Settings.from_env(
        {
            "CALLSHEET_HOME": str(home),
            "CALLSHEET_INPUT_ROOTS": str(roots),
            "CALLSHEET_SANDBOX": "1",
            "CALLSHEET_SANDBOX_TIME_SCALE": str(TIME_SCALE),
            **env,
        }
    )


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    (tmp_path / "inputs").mkdir()
    return make_settings(tmp_path / "home", tmp_path / "inputs")


def png_bytes(width: int = 64, height: int = 96, color: tuple[int, int, int] = (200, 80, 40)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (width, height), color).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture
def garment(settings: Settings) -> Path:
    path = settings.input_roots[0] / "dress.png"
    path.write_bytes(png_bytes(color=(10, 120, 200)))
    return path


@pytest.fixture
def model_photo(settings: Settings) -> Path:
    path = settings.input_roots[0] / "model.png"
    path.write_bytes(png_bytes(color=(220, 180, 160)))
    return path


@pytest.fixture
def emulator() -> FashnEmulator:
    return FashnEmulator(time_scale=TIME_SCALE, faults=FashnFaults())


@asynccontextmanager
async def sandbox_services(
    settings: Settings, emulator: FashnEmulator, **options: Any
) -> AsyncIterator[Services]:
    """The real services, with the FASHN emulator behind the real adapter and fast policies."""
    options.setdefault("retry", FAST_RETRY)
    options.setdefault("poll", FAST_POLL)
    options.setdefault("sandbox_apps", {"fashn": emulator.app})
    async with open_services(settings, **options) as svc:
        yield svc


def connected(
    adapter_class: type[Provider], client: httpx.AsyncClient, base_url: str, key: str = "key"
) -> Any:
    """A live adapter over `client` (a fake provider behind httpx.MockTransport, say), as services
    builds it."""
    settings = ProviderSettings(adapter_class.name, Mode.LIVE, base_url, adapter_class.key_var, key)
    adapter = adapter_class(settings)
    adapter.connect(
        HttpCaller(
            client,
            provider=adapter.name,
            base_url=base_url,
            limiter=Limiter(adapter.limits()),
            headers=adapter.auth_headers(key),
            key_var=adapter.key_var,
            describe_error=adapter.describe_error,
        )
    )
    return adapter


def tools_of(
    *adapter_classes: type[Provider], settings: Settings | None = None
) -> dict[str, tuple[str, Any]]:
    """Generation tools of these providers (name -> (provider, spec)), as the shoot runner sees them."""
    tools: dict[str, tuple[str, Any]] = {}
    for cls in adapter_classes:
        conf = ProviderSettings(cls.name, Mode.SANDBOX, "", "")
        tools.update({f"{cls.name}_{op.operation}": (cls.name, op) for op in cls(conf).operations()})
    return tools
