"""Provider registry: adding a provider touches its own module plus one line here."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from starlette.types import ASGIApp

from server.policy import FASHN_LIMITS, Limits
from server.providers.base import Provider
from server.providers.fashn import Fashn, fashn_error_message


@dataclass(frozen=True)
class Registration:
    adapter: type[Provider]
    limits: Limits
    auth_headers: Callable[[str], dict[str, str]]
    error_message: Callable[..., str] | None
    sandbox_app: Callable[[float, Path], ASGIApp]
    """Builds the in-process emulator of the provider's HTTP API for sandbox mode, from the time
    scale and a folder where it keeps its state across restarts."""


def _fashn_sandbox(time_scale: float, state_dir: Path) -> ASGIApp:
    from server.sandbox.fashn import FashnEmulator

    app: ASGIApp = FashnEmulator(time_scale=time_scale, state_dir=state_dir).app
    return app


REGISTRY: dict[str, Registration] = {
    "fashn": Registration(
        Fashn,
        FASHN_LIMITS,
        lambda key: {"Authorization": f"Bearer {key}"},
        fashn_error_message,
        _fashn_sandbox,
    ),
}
