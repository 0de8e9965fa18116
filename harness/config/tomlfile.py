"""TOML files the harness reads: one parser import for every Python the matrix runs on, and one reader whose
errors are a single line naming the file, never a traceback (CI reads a traceback's exit code as drift).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Dict, Optional, Type

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised in old matrix cells (tomli is a dependency there)
    import tomli as tomllib

__all__ = ["tomllib", "read_toml", "MAX_DEPTH"]

#: Deepest nesting of tables and arrays a config may have (real ones stay under 8); deeper documents would make
#: every recursive walk over them (validation, merging, printing) a RecursionError.
MAX_DEPTH = 64


def read_toml(path: Path, error: Type[Exception], missing: str, shown: Optional[str] = None,
              invalid: str = "invalid TOML") -> Dict[str, Any]:
    """Parse ``path``. A missing file raises ``error("<shown>: <missing>")``; anything else that stops it from
    being a TOML document raises ``error("<shown>: <why>")`` (``invalid`` words a parse failure). ``shown``
    defaults to the path as given."""
    where = str(path) if shown is None else shown
    try:
        text = Path(path).read_bytes().decode("utf-8")
        data = tomllib.loads(text)
    except FileNotFoundError:
        raise error(f"{where}: {missing}") from None
    except IsADirectoryError:
        raise error(f"{where}: is a directory, not a TOML file") from None
    except OSError as err:
        raise error(f"{where}: cannot read ({err.strerror or type(err).__name__})") from None
    except UnicodeDecodeError as err:
        raise error(f"{where}: {invalid} (not UTF-8: byte {err.start})") from None
    except tomllib.TOMLDecodeError as err:
        raise error(f"{where}: {invalid} ({' '.join(str(err).split())})") from None
    except ValueError as err:  # a path with a NUL byte
        raise error(f"{where}: cannot read ({err})") from None
    except (RecursionError, MemoryError):
        raise error(f"{where}: {invalid} (nested too deeply)") from None
    if _too_deep(data):
        raise error(f"{where}: {invalid} (nested too deeply: more than {MAX_DEPTH} levels of tables and arrays)")
    return data


def _too_deep(data: Any) -> bool:
    """Whether tables/arrays nest deeper than ``MAX_DEPTH`` (iterative: no recursion on hostile input)."""
    stack = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        if depth > MAX_DEPTH:
            return True
        children = value.values() if isinstance(value, dict) else value if isinstance(value, list) else ()
        stack.extend((child, depth + 1) for child in children if isinstance(child, (dict, list)))
    return False
