"""TOML files the harness reads (registries, project configs, corpora, policies): one parser import for every
Python the matrix runs on, and one reader whose errors are a single line naming the file."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Dict, Optional, Type

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised in old matrix cells (tomli is a dependency there)
    import tomli as tomllib

__all__ = ["tomllib", "read_toml"]


def read_toml(path: Path, error: Type[Exception], missing: str, shown: Optional[str] = None) -> Dict[str, Any]:
    """Parse ``path``. A missing file raises ``error("<shown>: <missing>")``; bad TOML or bytes that are not
    UTF-8 raise ``error("<shown>: invalid TOML (...)")``. ``shown`` defaults to the path as given."""
    where = str(path) if shown is None else shown
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise error(f"{where}: {missing}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
        raise error(f"{where}: invalid TOML ({err})") from None
