"""How to reach one served model (``backend = "http"``): the ``http`` table of a registry or config entry.

This is configuration, read and validated when an entry is read (``harness.config.registry``); the client that
uses it is ``harness.run.http_backend`` (which re-exports these names). Stdlib only: no httpx, no numpy here.
"""

from __future__ import annotations

from collections import abc
from dataclasses import dataclass, field
from typing import Any, Dict, Mapping, Optional, Tuple
from urllib.parse import urlsplit, urlunsplit

from harness.errors import HarnessError

__all__ = ["APIS", "RESERVED_BODY_KEYS", "MAX_RETRIES", "HttpSettings", "HttpSettingsError", "settings_from_mapping",
           "shown_url", "join_path"]

APIS = ("openai", "infinity", "tei", "cohere")
#: Body fields the client sets itself; a configured ``body`` may not override them.
RESERVED_BODY_KEYS = frozenset({"input", "inputs", "query", "documents", "texts", "model", "raw_scores", "encoding_format"})
MAX_RETRIES = 10
_NUMBER = (int, float)
_FIELD_TYPES: Dict[str, Tuple[type, ...]] = {
    "url": (str,), "api": (str,), "model": (str, type(None)), "headers": (abc.Mapping,), "batch_size": (int,),
    "concurrency": (int,), "timeout_s": _NUMBER, "retries": (int,), "backoff_s": _NUMBER, "max_backoff_s": _NUMBER,
    "expected_dim": (int, type(None)), "raw_scores": (bool,), "check_model": (bool,), "body": (abc.Mapping,),
}


class HttpSettingsError(HarnessError):
    """A ``backend = "http"`` setting is invalid (unknown api, literal header value, unset variable...)."""


def join_path(base: str, route: str) -> str:
    """``base`` + ``route``, without a second ``/v1`` when the base URL already ends in one."""
    base = base.rstrip("/")
    if route.startswith("/v1/") and base.endswith("/v1"):
        route = route[3:]
    return base + route


def shown_url(url: str, route: str = "") -> str:
    """The URL as errors and records show it: no user, password, query or fragment."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = (f"[{host}]" if ":" in host else host) + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, join_path(parts.path, route), "", ""))


@dataclass(frozen=True)
class HttpSettings:
    """How to reach one served model. ``headers`` maps a name to ``"env:VAR"`` or ``"<prefix>env:VAR"``
    (``"Bearer env:TOKEN"``); ``body`` adds fields to every request (recorded); ``raw_scores`` asks
    Infinity/TEI for logits instead of sigmoid scores; ``expected_dim`` refuses vectors of another width;
    ``check_model`` refuses answers that echo another model name than ``model``."""

    url: str
    api: str = "openai"
    model: Optional[str] = None
    headers: Mapping[str, str] = field(default_factory=dict)
    batch_size: int = 32
    concurrency: int = 1
    timeout_s: float = 60.0
    retries: int = 3
    backoff_s: float = 0.5
    max_backoff_s: float = 8.0
    expected_dim: Optional[int] = None
    raw_scores: bool = False
    check_model: bool = True
    body: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name, kinds in _FIELD_TYPES.items():
            value = getattr(self, name)
            if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
                wanted = " or ".join(sorted("none" if k is type(None) else k.__name__.lower() for k in kinds))
                raise HttpSettingsError(f"{shown_url(self.url) if isinstance(self.url, str) else 'url'}: {name} must be "
                                        f"{wanted}, not {type(value).__name__}")
        parts = urlsplit(self.url)
        clash = sorted(set(self.body) & RESERVED_BODY_KEYS)
        problems = [
            (self.api not in APIS, f"api must be one of {', '.join(APIS)}, not {self.api!r}"),
            (parts.scheme not in ("http", "https") or not parts.hostname, "url must be http(s)://host[:port][/path]"),
            (parts.username is not None or parts.password is not None,
             "no credentials in the url: send them as a header read from the environment (headers = {...'env:VAR'})"),
            (not 1 <= self.batch_size <= 100_000, "batch_size must be between 1 and 100000"),
            (not 1 <= self.concurrency <= 64, "concurrency must be between 1 and 64"),
            (not 0 < self.timeout_s <= 3600, "timeout_s must be above 0 and at most 3600"),
            (not 0 <= self.retries <= MAX_RETRIES, f"retries must be between 0 and {MAX_RETRIES}"),
            (not 0 <= self.backoff_s <= self.max_backoff_s <= 300, "need 0 <= backoff_s <= max_backoff_s <= 300"),
            (self.expected_dim is not None and self.expected_dim < 1, "expected_dim must be positive"),
            (bool(clash), f"body cannot set {', '.join(clash)} (the client sets them)"),
        ]
        for bad, message in problems:
            if bad:
                raise HttpSettingsError(f"{shown_url(self.url)}: {message}")


def settings_from_mapping(entry: Mapping[str, Any], *, where: str) -> HttpSettings:
    """``HttpSettings`` from a registry/config table; ``where`` names it in errors (unknown keys refused)."""
    known = set(HttpSettings.__dataclass_fields__)
    unknown = sorted(set(entry) - known)
    if unknown:
        raise HttpSettingsError(f"{where}: unknown http setting(s) {', '.join(unknown)} (known: {', '.join(sorted(known))})")
    if "url" not in entry:
        raise HttpSettingsError(f"{where}: backend = \"http\" needs url (the server's address, http = {{ url = "
                                "\"http://HOST:PORT\", api = \"...\" }); a baseline made from a served run is re-run "
                                "through the config that served it: harness check BASELINE --config harness.toml")
    try:
        return HttpSettings(**entry)
    except (HttpSettingsError, TypeError) as err:
        raise HttpSettingsError(f"{where}: {err}") from None
