"""neofashion: adapter, operations and prices, sandbox emulator."""

from server.providers.neofashion.adapter import NeoFashion as PROVIDER

__all__ = ["PROVIDER"]
