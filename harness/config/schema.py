"""One typed schema layer for every TOML file a user writes (policy, model registry, harness.toml /
``[tool.harness]``, matrix.toml).

Hand-written checks missed cases (``atol = nan`` passed every drift), so each file is a pydantic model on
``Schema`` (strict types, finite floats, unknown keys refused), and ``validate`` turns pydantic's multi-line
error into the loader's one line: ``<file>: <where>: '<key>' must be <what>, got <value>``. Cross-references
stay with the loaders: they need the whole file.
"""

from __future__ import annotations

import difflib
import functools
import reprlib
import typing
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Type, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from harness.errors import HarnessError, escape_breaks

__all__ = ["Schema", "Loc", "setting", "validate", "dotted", "whole_number", "one_line_errors", "shown"]

M = TypeVar("M", bound=BaseModel)
F = TypeVar("F", bound=Callable[..., Any])
Loc = Tuple[Any, ...]
#: ``label(loc)`` -> a loader's own name for the table at ``loc`` (``model 'x'``), or None for the dotted path
Label = Callable[[Loc], Optional[str]]

_SHORT = reprlib.Repr()
_SHORT.maxstring, _SHORT.maxother, _SHORT.maxlevel, _SHORT.maxlist, _SHORT.maxdict = 40, 40, 2, 4, 4
_GENERIC = {
    "int_type": "be an integer", "float_type": "be a number", "string_type": "be a string",
    "bool_type": "be true or false", "dict_type": "be a table", "model_type": "be a table",
    "model_attributes_type": "be a table", "list_type": "be an array", "tuple_type": "be an array",
    "finite_number": "be a finite number", "missing": "be set", "string_too_short": "be a non-empty string",
    "too_short": "not be empty", "recursion_loop": "not nest this deeply",
}


def one_line_errors(func: F) -> F:
    """A loader whose ``HarnessError`` stays one line even when it quotes a key like ``"a\\nb"`` from the file."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except HarnessError as err:
            text = str(err)
            if escape_breaks(text) == text:
                raise
            raise type(err)(escape_breaks(text)) from None

    return typing.cast(F, wrapper)


class Schema(BaseModel):
    """Base of every file model: unknown keys are errors, types are strict, NaN and inf are refused."""

    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False, frozen=True)


def setting(default: Any = None, *, expect: Optional[str] = None, alias: Optional[str] = None, **constraints: Any) -> Any:
    """A model field; ``expect`` ("be a positive integer") is what errors say the key must, whatever failed."""
    options = {k: v for k, v in constraints.items() if v is not None}
    if alias:
        options["alias"] = alias
    if expect:
        options["json_schema_extra"] = {"expect": expect}
    return Field(default, **options)


def whole_number(value: Any) -> Any:
    """A before-validator for integer keys that also take whole floats (``topk = 10.0``): 10.0 -> 10."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def dotted(loc: Sequence[Any]) -> str:
    """``("models", "a b", "classes")`` -> ``models."a b".classes``; list indices as ``[i]``."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
            continue
        text = str(part)
        shown = text if text and all(c.isalnum() or c in "-_" for c in text) and text.isascii() else _quote(text)
        out += f".{shown}" if out else shown
    return out


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').encode("unicode_escape").decode("ascii") + '"'


def shown(value: Any) -> str:
    """A short one-line rendering of a bad value (a huge table or a deep array stays short)."""
    try:
        text = _SHORT.repr(value)
    except RecursionError:  # pragma: no cover - read_toml refuses deeper documents first
        text = f"<{type(value).__name__}>"
    return " ".join(text.split())


def _unwrap(annotation: Any) -> Any:
    """``Optional[X]`` -> X (the model or container an error inside it walks into)."""
    if typing.get_origin(annotation) is typing.Union:
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        models = [a for a in args if isinstance(a, type) and issubclass(a, BaseModel)]
        return models[0] if models else (args[0] if len(args) == 1 else Any)
    return annotation


def _field_named(model: Type[BaseModel], key: Any) -> Optional[Tuple[str, Any]]:
    for name, info in model.model_fields.items():
        if key == (info.alias or name):
            return name, info
    return None


def _walk(model: Type[BaseModel], loc: Loc) -> Tuple[Optional[Type[BaseModel]], Optional[Tuple[int, Any]]]:
    """The model whose table holds ``loc[-1]``, and (position in ``loc``, FieldInfo) of the last field passed."""
    current: Any = model
    holder: Optional[Type[BaseModel]] = None
    last: Optional[Tuple[int, Any]] = None
    for i, part in enumerate(loc):
        current = _unwrap(current)
        if isinstance(current, type) and issubclass(current, BaseModel):
            holder = current if i == len(loc) - 1 else holder
            found = _field_named(current, part)
            if found is None:
                return holder, last
            last = (i, found[1])
            current = found[1].annotation
            continue
        origin, args = typing.get_origin(current), typing.get_args(current)
        if origin in (dict, Dict) and len(args) == 2:
            current = args[1]
        elif origin in (list, List, tuple) and args:
            current = args[0]
        else:
            current = Any
        holder = None if i == len(loc) - 1 else holder
    return holder, last


def _value_at(data: Any, loc: Loc) -> Any:
    for part in loc:
        try:
            data = data[part]
        except (KeyError, IndexError, TypeError):
            return None
    return data


def _names(model: Optional[Type[BaseModel]]) -> List[str]:
    return [info.alias or name for name, info in model.model_fields.items()] if model else []


def _suggest(unknown: Sequence[str], known: Sequence[str]) -> str:
    """``(did you mean 'x'?)`` for the first near miss, else the allowed keys."""
    for key in unknown:
        close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
        if close:
            return f" (did you mean '{close[0]}'?)"
    return f" (allowed: {', '.join(known)})" if known else ""


def _where(loc: Loc, label: Optional[Label]) -> str:
    """The loader's name for a table, else its dotted path; "" at the top level."""
    if not loc:
        return ""
    named = label(loc) if label else None
    return named if named is not None else dotted(loc)


def _problem(error: Mapping[str, Any], info: Any) -> str:
    """What the key must be: the field's ``expect``, a validator's own text, or pydantic's kind of error."""
    kind, ctx = error["type"], error.get("ctx") or {}
    if kind == "value_error":
        return str(ctx.get("error", error["msg"]))
    expect = ((info.json_schema_extra or {}).get("expect") if info is not None else None)
    if expect:
        return f"must {expect}"
    if kind == "literal_error":
        return f"must be one of {ctx.get('expected', '')}".replace("'", "")
    bounds = {"greater_than_equal": ("at least", "ge"), "greater_than": ("above", "gt"),
              "less_than_equal": ("at most", "le"), "less_than": ("below", "lt")}
    if kind in bounds:
        word, key = bounds[kind]
        return f"must be {word} {ctx.get(key)}"
    return f"must {_GENERIC.get(kind, error['msg'][0].lower() + error['msg'][1:])}"


def _message(err: ValidationError, model: Type[BaseModel], data: Any, at: Loc, label: Optional[Label],
             quote_keys: bool) -> str:
    errors = err.errors(include_url=False)
    first = errors[0]
    loc = tuple(first["loc"])
    if first["type"] == "extra_forbidden":
        table = loc[:-1]
        unknown = [str(e["loc"][-1]) for e in errors if e["type"] == "extra_forbidden" and tuple(e["loc"][:-1]) == table]
        holder, _ = _walk(model, loc)
        keys = ", ".join(repr(k) if quote_keys else k for k in unknown)
        where = _where(at + table, label)
        text = f"unknown key(s) {keys}{_suggest(unknown, _names(holder))}"
        return f"{where}: {text}" if where else text
    _, last = _walk(model, loc)
    info = None
    if last is not None:
        index, info = last
        expect = (info.json_schema_extra or {}).get("expect")
        if expect and index < len(loc) - 1 and first["type"] != "value_error":
            loc = loc[: index + 1]  # a container field with its own wording: name the field, not the element
        elif index != len(loc) - 1:
            info = None
    key, table = loc[-1] if loc else "", loc[:-1]
    if first["type"] == "missing":
        text = f"missing '{key}'"
    else:
        problem = _problem(first, info)
        got = "" if first["type"] == "value_error" else f", got {shown(_value_at(data, loc))}"
        subject = "" if not loc else f"item {key + 1} " if isinstance(key, int) else f"'{key}' "
        text = f"{subject}{problem}{got}"
    where = _where(at + table, label)
    return f"{where}: {text}" if where else text


def validate(model: Type[M], data: Any, *, source: str, error: Type[HarnessError], at: Loc = (),
             label: Optional[Label] = None, quote_keys: bool = False) -> M:
    """``model`` from ``data`` (one parsed table, at ``at`` in the file), or ``error("<source>: <where>:
    <problem>")``; ``label`` gives the loader's names for tables."""
    try:
        return model.model_validate(data)
    except ValidationError as err:
        raise error(escape_breaks(f"{source}: {_message(err, model, data, at, label, quote_keys)}")) from None
