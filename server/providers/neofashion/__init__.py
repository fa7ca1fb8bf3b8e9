"""neofashion: adapter, operations and prices, sandbox emulator."""
