"""What the CLI does with a bug: the traceback goes to a crash file, the terminal gets one line, the exit is 3.

A bug must never look like drift (exit 1) to CI. The crash file and the line are scrubbed of what looks like a
secret: a URL's ``user:password@`` and the values of environment variables named like a token, key or password.
"""

from __future__ import annotations

import os
import platform
import re
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Iterable, List, Optional, Sequence

__all__ = ["CRASH_DIR_VARIABLE", "crash_dir", "scrub", "one_line", "write_crash_file", "internal_error_line"]

CRASH_DIR_VARIABLE = "HARNESS_CRASH_DIR"
_SECRET_NAME = re.compile(r"TOKEN|SECRET|PASSWORD|PASSWD|API_?KEY|ACCESS_?KEY|CREDENTIAL|AUTH", re.IGNORECASE)
_URL_CREDENTIALS = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)[^/@\s]*@")
_QUERY_SECRET = re.compile(r"(?P<key>(?<=[?&])(?:api[_-]?key|token|access[_-]?token|key|secret|password|sig|signature)=)[^&\s'\"]+",
                           re.IGNORECASE)


def crash_dir() -> Path:
    """Where crash files go: ``$HARNESS_CRASH_DIR``, else a folder of the system's temp directory."""
    given = os.environ.get(CRASH_DIR_VARIABLE, "").strip()
    return Path(given) if given else Path(tempfile.gettempdir()) / "embedding-harness-crashes"


def _secret_values() -> List[str]:
    """Values of environment variables whose names say they hold a secret (longest first, 4+ characters)."""
    values = {value.strip() for name, value in os.environ.items() if _SECRET_NAME.search(name)}
    return sorted((v for v in values if len(v) >= 4), key=len, reverse=True)


def scrub(text: str, secrets: Optional[Iterable[str]] = None) -> str:
    """``text`` without URL credentials, secret-looking query values and the values of secret variables, in
    every form the HTTP client scrubs too (``harness.config.http.secret_forms``: raw, percent-encoded, decoded,
    JSON-escaped; any case)."""
    from harness.config.http import secret_forms

    text = _URL_CREDENTIALS.sub(r"\g<scheme>***@", text)
    text = _QUERY_SECRET.sub(r"\g<key>***", text)
    forms = sorted({form for value in (_secret_values() if secrets is None else secrets) for form in secret_forms(value)},
                   key=len, reverse=True)
    if forms:
        text = re.sub("|".join(re.escape(form) for form in forms), "***", text, flags=re.IGNORECASE)
    return text


def one_line(text: str, limit: int = 0) -> str:
    """``text`` on one line (its lines joined with "; "), cut to ``limit`` characters when one is given."""
    flat = "; ".join(" ".join(line.split()) for line in text.splitlines() if line.strip())
    return flat if not limit or len(flat) <= limit else flat[: limit - 3] + "..."


def write_crash_file(err: BaseException, argv: Sequence[str]) -> Optional[Path]:
    """Write the traceback of ``err`` (scrubbed) to a new crash file; None when even that fails."""
    from harness import __version__

    body = "".join(traceback.format_exception(type(err), err, err.__traceback__))
    text = (f"embedding-harness {__version__} internal error\n"
            f"time: {time.strftime('%Y-%m-%dT%H:%M:%S%z')}\n"
            f"command: harness {' '.join(argv)}\n"
            f"python: {sys.version.split()[0]} on {platform.platform()}\n\n{body}")
    try:
        folder = crash_dir()
        folder.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=f"crash-{time.strftime('%Y%m%d-%H%M%S')}-", suffix=".txt", dir=str(folder))
        with os.fdopen(fd, "w", encoding="utf-8", errors="replace") as handle:
            handle.write(scrub(text))
        return Path(name)
    except OSError:
        return None


def internal_error_line(err: BaseException, crash_file: Optional[Path]) -> str:
    """The one line the terminal gets for a bug."""
    message = one_line(scrub(str(err)), 300) or "(no message)"
    where = f"details in {crash_file}" if crash_file else f"no crash file could be written to {crash_dir()}"
    return (f"internal error (a bug in embedding-harness, not drift): {type(err).__name__}: {message}; {where}; "
            "please report it with that file")
