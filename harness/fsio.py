"""Every file the harness writes goes through here: atomic replacement, one writer at a time per file.

``atomic_output`` renames ``.<name>.<random>.tmp`` into place, so a reader never sees a partial file. Writers of
one target hold an exclusive ``flock`` on ``.<name>.lock`` (the kernel drops a killed writer's lock), so the
holder knows every other temp file belongs to a dead writer and removes it; without ``fcntl`` it is a no-op.

An output never replaces what it should not: ``check_output`` refuses, before any work, a directory, a path
under a file, an unwritable one, a symbolic link, a non-regular file (device node, pipe) or one of the
command's own inputs (same inode); ``atomic_output`` refuses the last three again at the rename.

Stdlib only: imported by the runner inside old matrix environments.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import tempfile
import time
from pathlib import Path
from typing import Iterable, Iterator, List, Optional, Tuple

from harness.errors import HarnessError

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

__all__ = ["atomic_output", "atomic_directory", "output_lock", "stale_temp_files", "locked_output", "write_text",
           "OutputRefused", "check_output"]


class OutputRefused(HarnessError):
    """An output path that must not be written: it would replace an input, a link, a device, or cannot be written."""


def _replaceable(target: Path, what: str) -> None:
    """Refuse a target that exists as a symbolic link or as anything but a regular file."""
    try:
        info = os.lstat(target)
    except (FileNotFoundError, NotADirectoryError):  # nothing there to replace (a parent that is a file: see below)
        return
    except OSError as err:
        raise OutputRefused(f"{what} {target}: cannot be checked ({err.strerror or err})") from None
    if stat.S_ISLNK(info.st_mode):
        raise OutputRefused(f"{what} {target}: is a symbolic link; refusing to replace it (name its target, "
                            f"{os.path.realpath(target)}, to write there)")
    if stat.S_ISDIR(info.st_mode):
        raise OutputRefused(f"{what} {target}: is a directory; name a file")
    if not stat.S_ISREG(info.st_mode):
        raise OutputRefused(f"{what} {target}: is not a regular file (a device, pipe or socket); refusing to replace "
                            "it (use '-' where an option writes to stdout)")


def check_output(path: str | os.PathLike[str], what: str, inputs: Iterable[Tuple[str, str | os.PathLike[str] | None]] = ()) -> Path:
    """Refuse, before any work, an output ``path`` (named ``what`` in messages, e.g. ``--json``) that could not
    be written or must not be replaced; ``inputs`` are ``(name, path)`` pairs of the same command's inputs."""
    target = Path(path)
    _replaceable(target, what)
    for name, given in inputs:
        if given is None or "://" in str(given):
            continue
        try:
            same = os.path.samefile(target, given)
        except OSError:  # one of them does not exist (yet)
            same = os.path.abspath(target) == os.path.abspath(given)
        if same:
            raise OutputRefused(f"{what} {target}: is also the {name} of this command; refusing to overwrite an input")
    parent = target.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise OutputRefused(f"{what} {target}: {parent} is not a directory")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputRefused(f"{what} {target}: {parent} is not writable")
    return target


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success rename it onto ``path``, on any error remove it."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=str(target.parent))
    os.close(fd)
    tmp = Path(tmp_name)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; a results file should be as readable as any other
    try:
        yield tmp
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        _replaceable(target, "output")  # a rename onto a link or a device node would replace it
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


@contextlib.contextmanager
def atomic_directory(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield an empty temporary directory beside ``path``; on success rename it onto ``path`` (when another
    process renamed its own copy first, that one is kept); on error ``path`` is left as it was."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmpdir", dir=str(target.parent)))
    try:
        yield tmp
        try:
            os.rename(tmp, target)
        except OSError:  # another process built it first: same content by construction
            if not target.is_dir():
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _lock_path(target: Path) -> Path:
    return target.parent / f".{target.name}.lock"


def stale_temp_files(target: str | os.PathLike[str]) -> List[Path]:
    """Temp files ``atomic_output`` makes for ``target`` (``.<name>.*.tmp``) that exist now."""
    target = Path(target)
    if not target.parent.is_dir():
        return []
    prefix = f".{target.name}."
    return sorted(p for p in target.parent.iterdir() if p.name.startswith(prefix) and p.name.endswith(".tmp"))


#: how long a writer waits for another writer of the same file before it gives up (every wait has a deadline)
LOCK_TIMEOUT_S = 900.0


def _lock_within(fd: int, target: Path, deadline: float) -> None:
    """``flock(LOCK_EX)`` that gives up at ``deadline`` (a writer that hangs must not hang every other one)."""
    pause = 0.01
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() >= deadline:
                raise OutputRefused(f"{target}: another process has been writing it for longer than the "
                                    f"{LOCK_TIMEOUT_S:g} s a writer waits; try again when it has finished") from None
            time.sleep(pause)
            pause = min(pause * 2, 0.25)


@contextlib.contextmanager
def output_lock(target: str | os.PathLike[str], timeout_s: Optional[float] = None) -> Iterator[None]:
    """Hold the exclusive write lock of ``target`` (at most ``timeout_s``); on entry, remove dead writers' temp
    files. The lock file is removed while still locked: a waiter then sees a new inode and locks that one."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    if fcntl is None:  # pragma: no cover - Windows
        yield
        return
    deadline = time.monotonic() + (LOCK_TIMEOUT_S if timeout_s is None else timeout_s)
    path = _lock_path(target)
    while True:
        fd = os.open(str(path), os.O_RDWR | os.O_CREAT, 0o666)
        try:
            _lock_within(fd, target, deadline)
            current = os.stat(str(path))
        except FileNotFoundError:
            os.close(fd)
            continue
        except BaseException:
            os.close(fd)
            raise
        if current.st_ino == os.fstat(fd).st_ino and current.st_dev == os.fstat(fd).st_dev:
            break
        os.close(fd)  # we locked a lock file that its previous holder removed: start again
    try:
        for stale in stale_temp_files(target):  # every live writer of this target would hold the lock
            with contextlib.suppress(FileNotFoundError):
                stale.unlink()
        yield
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(str(path))
        os.close(fd)


@contextlib.contextmanager
def locked_output(target: str | os.PathLike[str]) -> Iterator[Path]:
    """``atomic_output`` under ``output_lock``: yields the temp path to write."""

    with output_lock(target), atomic_output(target) as tmp:
        yield tmp


def write_text(path: str | os.PathLike[str], text: str) -> Path:
    """Write a text file (JSON, HTML, Markdown, cell.json) atomically under the target's lock, as UTF-8."""
    return write_bytes(path, text.encode("utf-8"))


def write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write a binary file (a report table) atomically under the target's lock."""
    with locked_output(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def append_line(path: str | os.PathLike[str], line: str) -> Path:
    """Add ``line`` to a log of lines (the matrix history) under its lock: read, add, rename, so concurrent writers
    never lose or interleave a line and a kill leaves the old log whole. A torn last line (a writer killed mid-append
    by an older version, which appended in place) is dropped."""
    target = Path(path)
    with output_lock(target):
        old = target.read_text(encoding="utf-8", errors="replace") if target.is_file() else ""
        kept = old if not old or old.endswith("\n") else old[: old.rfind("\n") + 1]
        with atomic_output(target) as tmp:
            tmp.write_text(kept + line + "\n", encoding="utf-8")
    return target
