"""Every knob explains itself: the settings of a config model, read from its fields.

Each field of a profile (:class:`fineproofs.config.Profile`) and of a training config
(:mod:`fineproofs.train.config`) carries ``Field(description=...)``. This module walks a
model into its dotted keys (``grading.judges``; a mapping of sections as
``grading.calibration.<judge|grader>.file``, an optional section as ``screener.engine.model``)
and serves one text to every reader: ``fineproofs profiles fields`` and ``profiles show
--help-fields``, the generated reference ``docs/config.md``, and the fix-it lines of a
validation error (what the key means; for an unknown key, the closest one that exists).
"""

from __future__ import annotations

import difflib
import types
import typing
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel
from pydantic.fields import FieldInfo

_CONSTRAINTS = {"gt": ">", "ge": ">=", "lt": "<", "le": "<=", "min_length": "length >=", "max_length": "length <="}


@dataclass(frozen=True)
class Setting:
    """One setting: its dotted key, type, default, bounds and description."""

    key: str
    type: str
    default: str
    bounds: str
    description: str


def _sections(annotation: Any) -> list[tuple[str, type[BaseModel]]]:
    """The config sections inside ``annotation``, with the key step each adds
    (``""`` for the section itself or an optional one, ``<a|b>`` for a mapping's values)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [("", annotation)]
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Annotated:
        return _sections(args[0])
    if origin is list and args:
        return [("<i>", m) for s, m in _sections(args[0]) if not s]
    if origin is dict and len(args) == 2:
        keys = typing.get_args(args[0]) if typing.get_origin(args[0]) is typing.Literal else ()
        step = f"<{'|'.join(map(str, keys))}>" if keys else "<name>"
        return [(step, m) for s, m in _sections(args[1]) if not s]
    if origin in (typing.Union, types.UnionType):
        return [(s, m) for a in args if a is not type(None) for s, m in _sections(a) if not s]
    return []


def _type(annotation: Any) -> str:
    """A type as a reader writes it: ``int | None``, ``'mean' | 'median'``, ``list[str]``."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if annotation is type(None):
        return "None"
    if annotation is Any:
        return "any"
    if origin is typing.Annotated:
        return _type(args[0])
    if origin is typing.Literal:
        return " | ".join(repr(a) for a in args)
    if origin in (typing.Union, types.UnionType):
        return " | ".join(_type(a) for a in args)
    if origin in (list, dict, tuple, set):
        return f"{origin.__name__}[{', '.join(_type(a) for a in args)}]"
    return getattr(annotation, "__name__", str(annotation))


def _default(info: FieldInfo) -> str:
    if info.is_required():
        return "(required)"
    value = info.get_default(call_default_factory=True)
    if isinstance(value, BaseModel):
        return "(section)"
    return "null" if value is None else repr(value) if isinstance(value, str) else str(value)


def _bounds(info: FieldInfo) -> str:
    out = []
    for m in info.metadata:
        for attr, sign in _CONSTRAINTS.items():
            v = getattr(m, attr, None)
            if v is not None:
                out.append(f"{sign} {v}")
    return ", ".join(out)


def knobs(model: type[BaseModel], prefix: str = "", *, once: bool = False, _seen: dict | None = None) -> list[Setting]:
    """Every setting of ``model``, sections first-class (a section is a knob too), in
    declaration order. ``once``: a section type met again (each role's ``engine`` and
    ``sampling``) is not spelled out again; its type points at the first place it was."""
    seen = {} if _seen is None else _seen
    out = []
    for name, info in model.model_fields.items():
        key = f"{prefix}{name}"
        subs = _sections(info.annotation)
        kind = _type(info.annotation)
        again = [seen[sub] for _, sub in subs if once and sub in seen]
        if again:
            kind += f" (its keys as under {again[0]})"
        out.append(Setting(key, kind, _default(info), _bounds(info), info.description or ""))
        for step, sub in subs:
            if once and sub in seen:
                continue
            seen.setdefault(sub, key + (f".{step}" if step else ""))
            out += knobs(sub, f"{key}.{step}." if step else f"{key}.", once=once, _seen=seen)
    return out


def _pattern_match(pattern: str, key: str) -> bool:
    a, b = pattern.split("."), key.split(".")
    return len(a) == len(b) and all(x == y or (x.startswith("<") and x.endswith(">")) for x, y in zip(a, b))


def find(model: type[BaseModel], key: str) -> Setting | None:
    """The knob at dotted ``key`` (list indices dropped, a mapping's own key matching its
    ``<...>`` step), or None."""
    every = knobs(model)
    parts = key.split(".")
    # a list item's loc may carry its union tag after the index (sources.paths.0.source.path)
    tries = [parts] + [parts[: i + 1] + parts[i + 2 :] for i, p in enumerate(parts[:-1]) if p.isdigit()]
    for t in tries:
        hit = next((k for k in every if _pattern_match(k.key, ".".join(t))), None)
        if hit:
            return hit
    return None


def closest(model: type[BaseModel], key: str) -> Setting | None:
    """The existing knob nearest to an unknown ``key``: the same parent section first."""
    all_keys = [k.key for k in knobs(model)]
    parent = key.rpartition(".")[0]
    siblings = [k for k in all_keys if k.rpartition(".")[0] == parent] if parent else all_keys
    for pool in (siblings, all_keys):
        hit = difflib.get_close_matches(key, pool, n=1, cutoff=0.6)
        if hit:
            return find(model, hit[0])
    return None


def fix_it(model: type[BaseModel], key: str, unknown: bool = False) -> str:
    """The line a validation error adds for ``key``: what it means, or for an unknown key
    what the closest existing key is and means ('' when there is nothing to say)."""
    if unknown:
        near = closest(model, key)
        return f"did you mean `{near.key}`? {near.description}" if near else ""
    k = find(model, key)
    return k.description if k else ""


def lines(items: list[Setting], values: dict[str, Any] | None = None) -> list[str]:
    """A knob reference for a terminal: key, type, default (or the value in ``values``), bounds, description."""
    out = []
    for k in items:
        shown = f"= {values[k.key]!r}" if values is not None and k.key in values else f"default {k.default}"
        bounds = f"; {k.bounds}" if k.bounds else ""
        out += [f"{k.key}  ({k.type}, {shown}{bounds})", f"    {k.description}"]
    return out


def markdown(items: list[Setting]) -> list[str]:
    """A knob reference as a Markdown table."""
    out = ["| key | type | default | meaning |", "|---|---|---|---|"]
    for k in items:
        cells = [f"`{k.key}`", k.type, k.default + (f" ({k.bounds})" if k.bounds else ""), k.description]
        out.append("| " + " | ".join(c.replace("|", "\\|").replace("\n", " ") for c in cells) + " |")
    return out


def flat_values(data: Any, prefix: str = "") -> dict[str, Any]:
    """A dumped config as ``{dotted key: value}`` (leaves and sections alike)."""
    out: dict[str, Any] = {}
    if isinstance(data, dict):
        for k, v in data.items():
            key = f"{prefix}{k}"
            if not isinstance(v, dict):
                out[key] = v
            out.update(flat_values(v, f"{key}."))
    return out


__all__ = ["Setting", "closest", "find", "fix_it", "flat_values", "knobs", "lines", "markdown"]
