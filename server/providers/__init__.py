"""Provider registry: adding a provider touches its own module (which defines `REGISTRATION`)
plus its name in `PROVIDER_MODULES` here."""

from __future__ import annotations

import importlib
import importlib.util

from server.providers.base import Registration

PROVIDER_MODULES = ("fashn", "autotoon", "neofashion", "genapi")


def _load() -> dict[str, Registration]:
    registry: dict[str, Registration] = {}
    for name in PROVIDER_MODULES:
        if importlib.util.find_spec(f"server.providers.{name}") is None:
            continue  # not built yet
        module = importlib.import_module(f"server.providers.{name}")
        registry[name] = module.REGISTRATION
    return registry


REGISTRY: dict[str, Registration] = _load()
