"""genapi: adapter, operations and prices, sandbox emulator."""
