"""autotoon: adapter, operations and prices, sandbox emulator."""
