"""fashn: adapter, operations and prices, sandbox emulator."""
