"""The provider registry: one line per provider, the name of its folder under `server/providers/`.

Each folder's `__init__` exports its adapter class as `PROVIDER`; see `base.py` for what a folder
holds and the README's "Add a provider" for the walk-through.
"""

from __future__ import annotations

import importlib

from server.providers.base import Provider

PROVIDERS = (
    "fashn",
    "autotoon",
    "neofashion",
    "genapi",
)


def _load() -> dict[str, type[Provider]]:
    found: dict[str, type[Provider]] = {}
    for folder in PROVIDERS:
        adapter: type[Provider] = importlib.import_module(f"server.providers.{folder}").PROVIDER
        found[adapter.name] = adapter
    return found


REGISTRY: dict[str, type[Provider]] = _load()
"""Provider name (the prefix of its tools) -> its adapter class."""
