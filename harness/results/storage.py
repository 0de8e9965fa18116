"""Where results live: local paths, or URIs of object stores, so that matrix cells run on many machines can be
compared where they were gathered without copying them first. pyarrow's filesystems first, then fsspec; pyarrow
is imported only when a URI is used (``harness.matrix.spec`` imports this module in the Python that runs nox).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Optional, Tuple, Union

from harness.errors import StorageError, first_line

__all__ = ["Location", "is_file", "is_uri", "join", "locate", "read_text"]

_URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*://")

#: a local ``Path``, or a URI string kept as given (what messages and reports show)
Location = Union[Path, str]


def is_uri(path: str | os.PathLike[str]) -> bool:
    return isinstance(path, str) and bool(_URI.match(path))


def locate(path: str | os.PathLike[str]) -> Tuple[Location, Any, str]:
    """``(shown location, pyarrow filesystem or None, path inside it)``. ``file://`` URIs become local Paths."""
    if not is_uri(path):
        return Path(path), None, str(path)
    import pyarrow as pa
    import pyarrow.fs as pafs

    uri = str(path)
    try:
        filesystem, inner = pafs.FileSystem.from_uri(uri)
    except (pa.ArrowException, OSError, ValueError) as err:
        filesystem, inner = _fsspec(uri, first_line(err))
    if isinstance(filesystem, pafs.LocalFileSystem):
        return Path(inner), None, inner
    return uri, filesystem, inner


def _fsspec(uri: str, pyarrow_says: str) -> Tuple[Any, str]:
    """A scheme pyarrow does not know, through fsspec wrapped as a pyarrow filesystem."""
    try:
        import fsspec
        import pyarrow.fs as pafs
    except ImportError:
        raise StorageError(f"{uri}: cannot open ({pyarrow_says}; fsspec is not installed)") from None
    try:
        filesystem, inner = fsspec.core.url_to_fs(uri)
    except (ImportError, ValueError) as err:  # unknown protocol, or its package (s3fs, adlfs, ...) missing
        raise StorageError(f"{uri}: cannot open ({pyarrow_says}; fsspec: {first_line(err)})") from None
    return pafs.PyFileSystem(pafs.FSSpecHandler(filesystem)), inner


def join(base: str | os.PathLike[str], *parts: str) -> Location:
    """``base / part / ...`` for a Path, ``base/part/...`` for a URI (kept a URI)."""
    if is_uri(base):
        return "/".join([str(base).rstrip("/"), *parts])
    return Path(base).joinpath(*parts)


def read_text(path: str | os.PathLike[str]) -> Optional[str]:
    """The file's text (UTF-8), or None when there is no such file."""
    shown, filesystem, inner = locate(path)
    if filesystem is None:
        local = Path(inner)
        return local.read_text(encoding="utf-8") if local.is_file() else None
    import pyarrow as pa
    import pyarrow.fs as pafs

    try:
        if filesystem.get_file_info(inner).type != pafs.FileType.File:
            return None
        with filesystem.open_input_stream(inner) as stream:
            return stream.read().decode("utf-8")
    except (pa.ArrowException, OSError) as err:
        raise StorageError(f"{shown}: cannot read ({first_line(err)})") from None


def is_file(path: str | os.PathLike[str]) -> bool:
    shown, filesystem, inner = locate(path)
    if filesystem is None:
        return Path(inner).is_file()
    import pyarrow as pa
    import pyarrow.fs as pafs

    try:
        return filesystem.get_file_info(inner).type == pafs.FileType.File
    except (pa.ArrowException, OSError) as err:
        raise StorageError(f"{shown}: cannot read ({first_line(err)})") from None
