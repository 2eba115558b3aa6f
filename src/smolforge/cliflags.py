"""Config settings as command-line flags: declared once in the schema, offered by the commands it names.

A setting whose declaration carries a `Flag` becomes an option of the commands in `Flag.on` (`run`
and `init` by default; `card` for choices that can change after training; `evaluate` for the
evaluation's), with the setting's description as help. The option takes text; the text goes
through the same parsing and validation as `--set` and the wizard (`config.fields`), so a value
has one message wherever it is typed.

Building the options needs only each flag's names, help and metavar. Those are read from the schema once
and kept in smolforge's cache, keyed by the SHA-256 of the schema's source files (and this file's), so
`smolforge --help` and every command start without importing pydantic, which costs more than typer itself;
a changed schema is read again. The values given are validated by the schema when the command runs.
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from smolforge.errors import ConfigError
from smolforge.paths import cache_root
from smolforge.userinput import read_text_or_file

if TYPE_CHECKING:
    from smolforge.config.fields import Setting

# What the flag table is derived from: the schema package and the help/metavar rules below.
_SOURCES = (Path(__file__).with_name("config"), Path(__file__))


def _param_name(path: str) -> str:
    return "flag__" + path.replace(".", "__")


def _metavar(s: Setting) -> str:
    from smolforge.config import fields  # lazy: the schema imports pydantic (see the module docstring)

    choices = s.choices
    if choices:
        return "|".join(str(c) for c in choices)
    tp = fields.base_type(s.item_type)
    name = {int: "INTEGER", float: "NUMBER"}.get(tp, "TEXT")
    return f"{name}|@FILE" if s.flag.file else name


def _help(s: Setting) -> str:
    parts = [s.description.rstrip(".") + "." if s.description else "", f"Sets {s.path}."]
    if s.flag.file:
        parts.append("@FILE reads it from a UTF-8 file.")
    if s.is_list:
        parts.append("Repeatable.")
    return " ".join(p for p in parts if p)


def _row(s: Setting) -> dict[str, Any]:
    """What an option needs, as plain data (the flag table's row for setting `s`)."""
    from smolforge.config import fields  # lazy: the schema imports pydantic (see the module docstring)

    kind = "bool" if fields.base_type(s.info.annotation) is bool else "list" if s.is_list else "text"
    return {"path": s.path, "names": list(s.flag.all_names), "on": list(s.flag.on), "kind": kind,
            "help": _help(s), "metavar": None if kind == "bool" else _metavar(s)}


def _sources_key() -> str:
    digest = hashlib.sha256()
    for source in _SOURCES:
        for path in sorted(source.glob("*.py")) if source.is_dir() else [source]:
            digest.update(path.name.encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


@functools.cache
def flag_table() -> tuple[dict[str, Any], ...]:
    """Every flagged setting's row, from the cache when the schema is unchanged, else from the schema."""
    cached = cache_root() / f"cli-flags-{_sources_key()}.json"
    try:
        return tuple(json.loads(cached.read_text(encoding="utf-8")))
    except (OSError, ValueError):
        pass
    from smolforge.config import fields  # lazy: the schema imports pydantic (see the module docstring)

    rows = [_row(s) for s in fields.flagged()]
    try:  # the cache is a convenience: a read-only or full disk only costs the next start its time
        cached.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile("w", dir=cached.parent, delete=False, encoding="utf-8") as f:
            json.dump(rows, f)
        os.replace(f.name, cached)
    except OSError:
        pass
    return tuple(rows)


def _option(row: dict[str, Any]) -> inspect.Parameter:
    names, help_ = row["names"], row["help"]
    if row["kind"] == "bool":
        annotation: Any = Annotated[bool | None, typer.Option(*names, help=help_)]
    elif row["kind"] == "list":
        annotation = Annotated[list[str] | None, typer.Option(*names, help=help_, metavar=row["metavar"])]
    else:
        annotation = Annotated[str | None, typer.Option(*names, help=help_, metavar=row["metavar"])]
    return inspect.Parameter(_param_name(row["path"]), inspect.Parameter.KEYWORD_ONLY, default=None,
                             annotation=annotation)


def settings_for(command: str) -> list[Setting]:
    """The settings whose flag `command` offers."""
    from smolforge.config import fields  # lazy: the schema imports pydantic (see the module docstring)

    return [s for s in fields.flagged() if command in s.flag.on]


def _text(s: Setting, text: str) -> Any:
    if s.flag.file:
        text = read_text_or_file(text)
    return s.flag.convert(text) if s.flag.convert else text


def values_from_flags(given: dict[str, Any], command: str) -> dict[str, Any]:
    """{setting path: validated value} for the flags given; every bad flag at once as a ConfigError."""
    from smolforge.config import fields  # lazy: the schema imports pydantic (see the module docstring)

    out, problems = {}, []
    for s in settings_for(command):
        raw = given.get(_param_name(s.path))
        if raw is None or raw == []:
            continue
        label = s.flag.label
        try:
            if isinstance(raw, bool):
                out[s.path] = s.validate(raw)
            elif s.is_list:
                out[s.path] = s.check_items([_text(s, t) for t in raw])
            else:
                out[s.path] = s.check_text(_text(s, raw))
        except fields.SettingError as e:
            problems += [f"{label}: {line}" for line in e.lines]
        except ValueError as e:  # an @FILE that cannot be read
            problems.append(f"{label}: {e}")
    if problems:
        raise ConfigError("the command-line flags", problems,
                          f"Fix the flag's value (see `smolforge {command} --help`).")
    return out


def with_config_flags(command: str) -> Callable:
    """Decorator: add the flags of the settings `command` offers to its typer function, which receives them as
    `flags: dict[path, value]` (only those given, already validated)."""

    def decorate(fn: Callable) -> Callable:
        sig = inspect.signature(fn, eval_str=True)
        own = [p for p in sig.parameters.values() if p.name != "flags"]
        extra = [_option(row) for row in flag_table() if command in row["on"]]
        names = {p.name for p in extra}

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            given = {k: kwargs.pop(k) for k in list(kwargs) if k in names}
            kwargs["flags"] = values_from_flags(given, command) if any(v not in (None, []) for v in
                                                                        given.values()) else {}
            return fn(*args, **kwargs)

        params = [*own, *extra]
        wrapper.__signature__ = sig.replace(parameters=params)  # type: ignore[attr-defined]
        # typer reads the signature and the type hints: both must describe the new parameters, resolved
        wrapper.__annotations__ = {p.name: p.annotation for p in params}
        del wrapper.__wrapped__
        return wrapper

    return decorate
