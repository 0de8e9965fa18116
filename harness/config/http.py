"""How to reach one served model (``backend = "http"``): the ``http`` table of a registry or config entry,
validated when the entry is read. Stdlib only: no httpx, no numpy here.
"""

from __future__ import annotations

import json
import os
import re
from collections import abc
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Tuple, cast
from urllib.parse import quote, quote_plus, unquote, unquote_plus, urlsplit, urlunsplit

from harness.errors import HarnessError

__all__ = ["APIS", "RESERVED_BODY_KEYS", "MAX_RETRIES", "ENV_VALUE", "HttpSettings", "HttpSettingsError",
           "settings_from_mapping", "shown_url", "join_path", "url_problem", "header_value_problem", "secret_forms",
           "resolve_headers", "query_secrets"]

APIS = ("openai", "infinity", "tei", "cohere")
#: Body fields the client sets itself; a configured ``body`` may not override them.
RESERVED_BODY_KEYS = frozenset({"input", "inputs", "query", "documents", "texts", "model", "raw_scores", "encoding_format"})
MAX_RETRIES = 10
_NUMBER = (int, float)
_FIELD_TYPES: Dict[str, Tuple[type, ...]] = {
    "url": (str,), "api": (str,), "model": (str, type(None)), "headers": (abc.Mapping,), "batch_size": (int,),
    "concurrency": (int,), "timeout_s": _NUMBER, "run_timeout_s": _NUMBER + (type(None),), "retries": (int,),
    "backoff_s": _NUMBER, "max_backoff_s": _NUMBER, "max_response_mb": (int,), "expected_dim": (int, type(None)),
    "raw_scores": (bool,), "check_model": (bool,), "body": (abc.Mapping,),
}
#: A header value in a config: ``env:VAR`` or ``<prefix>env:VAR`` (``\Z``: a trailing newline is not a match).
ENV_VALUE = re.compile(r"^(?P<prefix>[^\r\n]*?)env:(?P<var>[A-Za-z_][A-Za-z0-9_]*)\Z")
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+\Z")  # an HTTP header name (RFC 9110 token)
_CONTROL = re.compile(r"[\x00-\x20\x7f]")
#: The per-run deadline when ``run_timeout_s`` is not set: this many request deadlines, but at least the floor.
RUN_DEADLINE_FACTOR, RUN_DEADLINE_FLOOR_S = 60, 600.0


class HttpSettingsError(HarnessError):
    """A ``backend = "http"`` setting is invalid (unknown api, literal header value, unset variable...)."""


def join_path(base: str, route: str) -> str:
    """``base`` + ``route``, without a second ``/v1`` when the base URL already ends in one."""
    base = base.rstrip("/")
    if route.startswith("/v1/") and base.endswith("/v1"):
        route = route[3:]
    return base + route


def shown_url(url: str, route: str = "") -> str:
    """The URL as errors and records show it: no user, password, query or fragment, no control character.
    Never raises: an unparsable URL is shown cut at its query, without anything up to its last ``@``."""
    try:
        parts = urlsplit(url)
        host, port = parts.hostname or "", parts.port
        netloc = (f"[{host}]" if ":" in host else host) + (f":{port}" if port else "")
        text = urlunsplit((parts.scheme, netloc, join_path(parts.path, route), "", ""))
    except ValueError:
        head = re.split(r"[?#]", str(url), maxsplit=1)[0]
        text = join_path(re.sub(r"^([A-Za-z][A-Za-z0-9+.-]*://).*@", r"\1", head), route)
    return _CONTROL.sub("?", text)


def url_problem(url: str) -> Optional[str]:
    """Why ``url`` cannot be a server's address (None when it can); never shows the URL's credentials."""
    if _CONTROL.search(url):
        return "url contains a space or a control character (percent-encode it)"
    try:
        parts = urlsplit(url)
    except ValueError:
        return "url is not a valid URL (check the brackets of an IPv6 host)"
    try:
        port = parts.port
    except ValueError:
        return "url has an invalid port (it must be a number from 1 to 65535)"
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return "url must be http(s)://host[:port][/path]"
    if port == 0:
        return "url has an invalid port (it must be a number from 1 to 65535)"
    if parts.username is not None or parts.password is not None:
        return "no credentials in the url: send them as a header read from the environment (headers = {...'env:VAR'})"
    return None


def header_value_problem(value: str) -> Optional[str]:
    """Why ``value`` cannot be sent as a header value (None when it can); the message never contains it."""
    if "\r" in value or "\n" in value:
        return "contains a line break (a token read from a file? strip its trailing newline)"
    if not value.isascii():
        return "is not ASCII"
    if re.search(r"[\x00-\x08\x0a-\x1f\x7f]", value):
        return "contains a control character"
    if value != value.strip():
        return "starts or ends with whitespace"
    return None


def _headers_problem(headers: Mapping[Any, Any]) -> Optional[str]:
    for name, spec in headers.items():
        if not isinstance(name, str) or not _TOKEN.match(name):
            return f"header name {name!r} is not a valid header name (letters, digits and !#$%&'*+-.^_`|~)"[:200]
        match = ENV_VALUE.match(spec) if isinstance(spec, str) else None
        if match is None:  # never echo the value: it may be a pasted token
            return (f"header {name!r} must be 'env:VARIABLE' or '<prefix>env:VARIABLE' "
                    "(values come from the environment, never from a config)")
        problem = header_value_problem(match["prefix"] + "x")
        if problem:
            return f"header {name!r}: its prefix {problem}"
    return None


def _body_problem(body: Mapping[Any, Any]) -> Optional[str]:
    if not all(isinstance(k, str) for k in body):
        return "body keys must be strings"
    try:
        text = json.dumps(dict(body), allow_nan=False)
    except (TypeError, ValueError, RecursionError) as err:
        return f"body must be plain JSON (strings, finite numbers, booleans, arrays, tables): {type(err).__name__}"
    return "body is larger than 1 MB" if len(text) > 1_000_000 else None


def secret_forms(secret: str) -> List[str]:
    """Every way ``secret`` may come back in a text (match them ignoring case: hex digits vary): raw,
    percent-encoded (``quote`` and ``quote_plus``), decoded (``unquote`` and ``unquote_plus``, twice), and JSON-escaped (``/`` as ``\\/`` too)."""
    values, forms = {secret}, set()
    for _ in range(2):  # decoded once or twice (a gateway may decode what a server decodes again)
        values |= {decode(v) for v in values for decode in (unquote, unquote_plus)}
    for value in values:
        encoded = [quote(value, safe=""), quote(value), quote_plus(value), quote_plus(value, safe="/")]
        escaped = json.dumps(value)[1:-1]
        forms.update([value, escaped, escaped.replace("/", "\\/")] + encoded)
    return sorted((f for f in forms if len(f) >= 3), key=len, reverse=True)


def resolve_headers(headers: Mapping[str, str], where: str) -> Tuple[Dict[str, str], List[str]]:
    """Header values read from the environment (checked: they must be sendable), and every form of them to
    scrub from text; ``headers`` are an ``HttpSettings``' (their form checked). Errors name the header and the
    variable, never the value."""
    resolved, secrets = {}, []
    for name, spec in headers.items():
        match = cast(re.Match, ENV_VALUE.match(spec))  # HttpSettings refused any other form
        value = os.environ.get(match["var"], "")
        if not value:
            raise HttpSettingsError(f"{where}: header {name!r} reads environment variable {match['var']}, which is not set")
        problem = header_value_problem(match["prefix"] + value)
        if problem:
            raise HttpSettingsError(f"{where}: header {name!r} reads environment variable {match['var']}, whose value "
                                    f"{problem}")
        resolved[name] = match["prefix"] + value
        secrets += secret_forms(value) + secret_forms(resolved[name])
    return resolved, secrets


def query_secrets(query: str) -> List[str]:
    """Every value of a URL query (``?api_key=...``), as written and decoded: any of them may be a key."""
    values = [part.partition("=")[2] for part in re.split(r"[&;]", query)]
    return [form for value in values if value for form in secret_forms(value)]


@dataclass(frozen=True)
class HttpSettings:
    """How to reach one served model (keys: docs/served-endpoints.md). ``headers`` values name environment
    variables (``"Bearer env:TOKEN"``), never the secret itself; ``timeout_s`` is one request's wall-clock
    deadline and ``run_timeout_s`` the whole pass's (``deadline_s()``)."""

    url: str
    api: str = "openai"
    model: Optional[str] = None
    headers: Mapping[str, str] = field(default_factory=dict)
    batch_size: int = 32
    concurrency: int = 1
    timeout_s: float = 20.0
    run_timeout_s: Optional[float] = None
    retries: int = 3
    backoff_s: float = 0.5
    max_backoff_s: float = 8.0
    max_response_mb: int = 64
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
        clash = sorted(set(self.body) & RESERVED_BODY_KEYS) if all(isinstance(k, str) for k in self.body) else []
        url_bad = url_problem(self.url)
        problems = [
            (url_bad is not None, url_bad),
            (self.api not in APIS, f"api must be one of {', '.join(APIS)}, not {self.api!r}"[:200]),
            (not 1 <= self.batch_size <= 100_000, "batch_size must be between 1 and 100000"),
            (not 1 <= self.concurrency <= 64, "concurrency must be between 1 and 64"),
            (not 0 < self.timeout_s <= 3600, "timeout_s must be above 0 and at most 3600"),
            (self.run_timeout_s is not None and not 0 < self.run_timeout_s <= 604800,
             "run_timeout_s must be above 0 and at most 604800 (a week)"),
            (not 0 <= self.retries <= MAX_RETRIES, f"retries must be between 0 and {MAX_RETRIES}"),
            (not 0 <= self.backoff_s <= self.max_backoff_s <= 300, "need 0 <= backoff_s <= max_backoff_s <= 300"),
            (not 1 <= self.max_response_mb <= 4096, "max_response_mb must be between 1 and 4096"),
            (self.expected_dim is not None and self.expected_dim < 1, "expected_dim must be positive"),
            (bool(clash), f"body cannot set {', '.join(clash)} (the client sets them)"),
        ]
        for bad, message in problems + [(True, _headers_problem(self.headers)), (True, _body_problem(self.body))]:
            if bad and message:
                raise HttpSettingsError(f"{shown_url(self.url)}: {message}")

    def deadline_s(self) -> float:
        """The per-run deadline: ``run_timeout_s``, else ``RUN_DEADLINE_FACTOR`` request deadlines (at least
        ``RUN_DEADLINE_FLOOR_S``), so that ``--timeout`` moves both."""
        if self.run_timeout_s is not None:
            return float(self.run_timeout_s)
        return max(RUN_DEADLINE_FLOOR_S, RUN_DEADLINE_FACTOR * float(self.timeout_s))


def settings_from_mapping(entry: Mapping[str, Any], *, where: str) -> HttpSettings:
    """``HttpSettings`` from a registry/config table; ``where`` names it in errors (unknown keys refused)."""
    if not isinstance(entry, abc.Mapping):
        raise HttpSettingsError(f"{where}: the http settings must be a table, not {type(entry).__name__}")
    known = set(HttpSettings.__dataclass_fields__)
    unknown = sorted(_CONTROL.sub("?", str(k))[:40] for k in set(entry) - known)
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
