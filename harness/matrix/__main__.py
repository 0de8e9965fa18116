"""``python -m harness.matrix ARGS``: the same as ``harness matrix ARGS`` (kept for scripts written before it)."""

import sys

from harness.cli import main

if __name__ == "__main__":
    raise SystemExit(main(["matrix", *sys.argv[1:]]))
