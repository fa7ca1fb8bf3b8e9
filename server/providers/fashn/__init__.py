"""fashn: adapter, operations and prices, sandbox emulator."""

from server.providers.fashn.adapter import Fashn as PROVIDER

__all__ = ["PROVIDER"]
