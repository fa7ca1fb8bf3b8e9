"""genapi: adapter, operations and prices, sandbox emulator."""

from server.providers.genapi.adapter import GenApi as PROVIDER

__all__ = ["PROVIDER"]
