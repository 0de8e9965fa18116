"""Where a matrix cell finds its models' files, as one JSON line: ``python -m harness.run.model_dirs CONFIG ID...``.

A server cell serves the directories the *cell* sees, so it asks the cell's own Python; the matrix never imports
the runner, so it runs this module by subprocess. Bad input is one ``error: ...`` line and exit code 2.
"""

from __future__ import annotations

import json
import sys
from typing import Dict, List, Optional, Sequence

from harness.config.project import project_registry
from harness.errors import ExitCode, HarnessError
from harness.run.resolve import resolve_model_dir

__all__ = ["model_directories", "main"]


def model_directories(config: Optional[str], model_ids: Sequence[str]) -> Dict[str, str]:
    """Each selected model id and the directory of its files in this environment (never the network)."""
    registry = project_registry(config or None)
    return {spec.id: str(resolve_model_dir(spec, registry=registry)[0]) for spec in registry.select(list(model_ids))}


def main(argv: Optional[List[str]] = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args:
        print("error: usage: python -m harness.run.model_dirs CONFIG [MODEL_ID ...]", file=sys.stderr)
        return int(ExitCode.BAD_INPUT)
    try:
        found = model_directories(args[0], args[1:])
    except HarnessError as err:
        print(f"error: {err}", file=sys.stderr)
        return int(ExitCode.BAD_INPUT)
    except KeyboardInterrupt:
        return int(ExitCode.INTERRUPTED)
    print(json.dumps(found))
    return int(ExitCode.OK)


if __name__ == "__main__":
    sys.exit(main())
