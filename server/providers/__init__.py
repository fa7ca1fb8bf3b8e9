"""Provider registry: adding a provider touches its own folder (whose adapter module defines
`REGISTRATION`) plus its name in `PROVIDER_MODULES` here."""

from __future__ import annotations

import importlib

from server.providers.base import Registration

PROVIDER_MODULES = ("fashn", "autotoon", "neofashion", "genapi")


def _load() -> dict[str, Registration]:
    return {
        name: importlib.import_module(f"server.providers.{name}.adapter").REGISTRATION
        for name in PROVIDER_MODULES
    }


REGISTRY: dict[str, Registration] = _load()
