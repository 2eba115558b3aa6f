"""Config settings as command-line flags: declared once in the schema, offered by the commands it names.

A setting whose declaration carries a `Flag` becomes an option of the commands in `Flag.on` (`run`
and `init` by default; `card` for choices that can change after training; `evaluate` for the
evaluation's), with the setting's description as help. The option takes text; the text goes
through the same parsing and validation as `--set` and the wizard (`config.fields`), so a value
has one message wherever it is typed.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Annotated, Any

import typer

from smolforge.config import fields
from smolforge.errors import ConfigError
from smolforge.userinput import read_text_or_file


def _param_name(s: fields.Setting) -> str:
    return "flag__" + s.path.replace(".", "__")


def _metavar(s: fields.Setting) -> str:
    choices = s.choices
    if choices:
        return "|".join(str(c) for c in choices)
    tp = fields._base(s.item_type)
    name = {int: "INTEGER", float: "NUMBER"}.get(tp, "TEXT")
    return f"{name}|@FILE" if s.flag.file else name


def _help(s: fields.Setting) -> str:
    parts = [s.description.rstrip(".") + "." if s.description else "", f"Sets {s.path}."]
    if s.flag.file:
        parts.append("@FILE reads it from a UTF-8 file.")
    if s.is_list:
        parts.append("Repeatable.")
    return " ".join(p for p in parts if p)


def _option(s: fields.Setting) -> inspect.Parameter:
    flag = s.flag
    names = flag.all_names
    if fields._base(s.info.annotation) is bool:
        annotation: Any = Annotated[bool | None, typer.Option(*names, help=_help(s))]
    elif s.is_list:
        annotation = Annotated[list[str] | None, typer.Option(*names, help=_help(s), metavar=_metavar(s))]
    else:
        annotation = Annotated[str | None, typer.Option(*names, help=_help(s), metavar=_metavar(s))]
    return inspect.Parameter(_param_name(s), inspect.Parameter.KEYWORD_ONLY, default=None, annotation=annotation)


def settings_for(command: str) -> list[fields.Setting]:
    """The settings whose flag `command` offers."""
    return [s for s in fields.flagged() if command in s.flag.on]


def _text(s: fields.Setting, text: str) -> Any:
    if s.flag.file:
        text = read_text_or_file(text)
    return s.flag.convert(text) if s.flag.convert else text


def values_from_flags(given: dict[str, Any], command: str) -> dict[str, Any]:
    """{setting path: validated value} for the flags given; every bad flag at once as a ConfigError."""
    out, problems = {}, []
    for s in settings_for(command):
        raw = given.get(_param_name(s))
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
        extra = [_option(s) for s in settings_for(command)]
        names = {p.name for p in extra}

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            given = {k: kwargs.pop(k) for k in list(kwargs) if k in names}
            kwargs["flags"] = values_from_flags(given, command)
            return fn(*args, **kwargs)

        params = [*own, *extra]
        wrapper.__signature__ = sig.replace(parameters=params)  # type: ignore[attr-defined]
        # typer reads the signature and the type hints: both must describe the new parameters, resolved
        wrapper.__annotations__ = {p.name: p.annotation for p in params}
        del wrapper.__wrapped__
        return wrapper

    return decorate
