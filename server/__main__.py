"""Where every start of the `callsheet` command begins: the console script, `python -m server` and
the MCP bundle all call `run`.

A start makes about 160,000 objects that the cyclic garbage collector tracks, nearly all of them for
the life of the process (the SDK's and callsheet's classes, their validators, one argument model per
tool), and the collector would walk them over and over while they are made: about 70 ms of each
start. So it is off until the command has built what it runs on (`server.cli.started`), and what
exists then is frozen out of its reach for good.

rich is kept out of the process: callsheet logs through the standard library to stderr with keys
redacted (`server.cli`), but the SDK builds a rich log handler whenever rich can be imported, and
leaves it unused when logging is already set up: 25 ms and 4 MiB of each start where rich happens to
be installed (a development tool brings it).
"""

import gc
import sys
from collections.abc import Sequence


def run(argv: Sequence[str] | None = None) -> int:
    gc.disable()
    sys.modules.setdefault("rich", None)  # type: ignore[arg-type]  # None: "cannot be imported"
    from server.cli import main

    return main(argv)


if __name__ == "__main__":
    sys.exit(run())
