"""callsheet as an MCP bundle: the file a host (Claude Desktop) runs, as manifest.json tells it.

The bundle carries callsheet and every dependency in `lib/`, so nothing is downloaded when it starts.
The host passes the settings form through the environment (`${user_config.*}` in manifest.json) and
the input folders as arguments (a list expands to one argument per folder). A setting left empty can
reach us as the unreplaced `${user_config.name}` text: it is treated as unset.
"""

import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def unset(value: str) -> bool:
    return not value.strip() or (value.startswith("${") and value.endswith("}"))


def main() -> int:
    for name, value in list(os.environ.items()):
        if unset(value):
            del os.environ[name]
    folders = [folder for folder in sys.argv[1:] if not unset(folder)]
    if folders:
        os.environ["CALLSHEET_INPUT_ROOTS"] = os.pathsep.join(folders)
    sys.path.insert(0, os.path.join(HERE, "lib"))
    from server.__main__ import run

    return run(["serve"])


if __name__ == "__main__":
    sys.exit(main())
