"""pydantic's validation errors as the lines a user reads: `key: what is wrong (got value)`.

Every front end (YAML file, `--set`, flags, the wizard) shows a bad value with these same lines,
so a setting has one message wherever it is typed.
"""

from __future__ import annotations

import difflib
from typing import Any

from pydantic import BaseModel, ValidationError

from smolforge.config.schema import SmolforgeConfig


def _allowed_keys(loc: tuple) -> list[str]:
    """Field names of the section at `loc[:-1]`, to suggest a fix for an unknown key."""
    model: Any = SmolforgeConfig
    for part in loc[:-1]:
        if isinstance(part, int):
            continue
        field = getattr(model, "model_fields", {}).get(part)
        if field is None:
            return []
        ann = field.annotation
        model = ann if isinstance(ann, type) and issubclass(ann, BaseModel) else None
        if model is None:
            return []
    return list(getattr(model, "model_fields", {}))


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 120 else text[:117] + "..."


_TYPE_TAGS = {"bool", "int", "float", "str", "list", "dict", "none", "bytes"}


def _is_union_tag(part: Any) -> bool:
    """pydantic names the member of a union that failed (`bool`, `literal['auto']`) in the error's location."""
    return isinstance(part, str) and (part in _TYPE_TAGS or "[" in part)


def format_errors(err: ValidationError, at: tuple = ()) -> list[str]:
    """One line per bad value; `at` is the path of the value that was validated (for a single setting)."""
    lines: dict[str, list[str]] = {}
    got: dict[str, str] = {}
    for e in err.errors():
        loc = tuple(p for p in (*at, *e["loc"]) if not _is_union_tag(p))
        key = ".".join(str(p) for p in loc) or "(top level)"
        kind, msg = e["type"], e["msg"]
        if kind == "extra_forbidden":
            allowed = _allowed_keys(loc)
            close = difflib.get_close_matches(str(loc[-1]), allowed, n=1)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            where = ".".join(str(p) for p in loc[:-1]) or "the top level"
            lines.setdefault(key, []).append(f"unknown key{hint} (keys allowed in {where}: {', '.join(allowed)})")
            continue
        lines.setdefault(key, []).append(msg.replace("Value error, ", ""))
        value = e.get("input")
        if not isinstance(value, dict):
            got[key] = f" (got {_shown(value)})"
    return [f"{key}: {' or '.join(dict.fromkeys(msgs))}{got.get(key, '')}" for key, msgs in lines.items()]
