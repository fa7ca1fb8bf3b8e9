"""autotoon: adapter, operations and prices, sandbox emulator."""

from server.providers.autotoon.adapter import AutoToon as PROVIDER

__all__ = ["PROVIDER"]
