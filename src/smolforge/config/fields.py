"""One setting at a time: its declaration by path, how typed text becomes its value, and its check.

Flags, `--set` and the wizard all turn text into a value here and validate it with a pydantic
`TypeAdapter` built from the setting's own declaration (type, bounds, validators), so a value is
accepted or refused, with the same message, whichever way it was typed.
"""

from __future__ import annotations

import types
import typing
from dataclasses import dataclass
from functools import cache
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, TypeAdapter, ValidationError
from pydantic.fields import FieldInfo

from smolforge.config.base import SETTING_CONFIG
from smolforge.config.flag import Flag
from smolforge.config.problems import format_errors
from smolforge.config.schema import SmolforgeConfig


class SettingError(ValueError):
    """A value a setting refuses; `lines` are the problem lines (`key: reason (got value)`)."""

    def __init__(self, lines: list[str]):
        self.lines = lines
        super().__init__("; ".join(lines))


def _strip_optional(tp: Any) -> Any:
    args = typing.get_args(tp)
    if typing.get_origin(tp) in (typing.Union, types.UnionType) and type(None) in args:
        rest = [a for a in args if a is not type(None)]
        return rest[0] if len(rest) == 1 else typing.Union[tuple(rest)]  # noqa: UP007
    return tp


def base_type(tp: Any) -> Any:
    """The type under Annotated[...] and Optional[...] wrappers (in any order)."""
    while True:
        inner = typing.get_args(tp)[0] if typing.get_origin(tp) is Annotated else _strip_optional(tp)
        if inner is tp:
            return tp
        tp = inner


def _textual(tp: Any) -> bool:
    """True when the typed text is the value itself (str, or a choice of strings): no YAML parsing, so
    an author named `yes` or a tag `1.0` stays text."""
    tp = base_type(tp)
    if tp is str:
        return True
    if typing.get_origin(tp) is Literal:
        return all(isinstance(a, str) for a in typing.get_args(tp))
    return False


def _yaml(text: str) -> Any:
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


@dataclass(frozen=True)
class Setting:
    """A leaf setting of the schema (not a section)."""

    path: str
    info: FieldInfo

    @property
    def flag(self) -> Flag | None:
        return next((m for m in self.info.metadata if isinstance(m, Flag)), None)

    @property
    def title(self) -> str:
        return self.info.title or self.path.rsplit(".", 1)[-1].replace("_", " ").capitalize()

    @property
    def description(self) -> str:
        return self.info.description or ""

    @property
    def optional(self) -> bool:
        return self.info.default is None

    @property
    def is_list(self) -> bool:
        return typing.get_origin(base_type(self.info.annotation)) is list

    @property
    def item_type(self) -> Any:
        return typing.get_args(base_type(self.info.annotation))[0] if self.is_list else self.info.annotation

    @property
    def choices(self) -> list[Any] | None:
        tp = base_type(self.item_type)
        return list(typing.get_args(tp)) if typing.get_origin(tp) is Literal else None

    @property
    def default(self) -> Any:
        return self.info.get_default(call_default_factory=True)

    def adapter(self) -> TypeAdapter:
        return _adapter(self.path)

    def parse_item(self, text: str, yaml_strings: bool = False) -> Any:
        """Typed text -> a value of the setting (or of one list item), not yet validated.

        Text settings keep the text as typed (an author named `yes` stays text); with `yaml_strings`
        (`--set`, which reads values as YAML) a quoted YAML string is unquoted first."""
        tp = self.item_type
        if not text.strip() and (self.optional or not _textual(tp)):
            return None if self.optional else text
        if _textual(tp):
            if yaml_strings:
                parsed = _yaml(text)
                if isinstance(parsed, str) or (parsed is None and self.optional):
                    return parsed
            return text
        return _yaml(text)

    def parse(self, text: str) -> Any:
        """Text as `--set key=text` gives it: YAML, with text settings kept as text; a list in brackets."""
        if self.is_list:
            value = _yaml(text) if text.strip() else []
            if not isinstance(value, list):
                raise SettingError([f"{self.path}: a list is expected; write it in brackets, e.g. "
                                    f"--set '{self.path}=[{text.strip()}]' (got {text!r})"])
            return [self.parse_item(v, yaml_strings=True) if isinstance(v, str) else v for v in value]
        return self.parse_item(text, yaml_strings=True)

    def validate(self, value: Any) -> Any:
        try:
            return self.adapter().validate_python(value)
        except ValidationError as e:
            raise SettingError(format_errors(e, tuple(self.path.split(".")))) from None

    def check_text(self, text: str) -> Any:
        """Parse and validate one typed answer (a wizard prompt); SettingError with the problem lines."""
        return self.validate(self.parse_item(text))

    def check_items(self, texts: list[str]) -> list[Any]:
        """Parse and validate a list setting given one item per text (repeated flags, a comma list)."""
        return self.validate([self.parse_item(t) for t in texts])


def _section_fields(model: type[BaseModel], prefix: str = "") -> list[Setting]:
    out = []
    for name, info in model.model_fields.items():
        ann = info.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            out += _section_fields(ann, f"{prefix}{name}.")
        else:
            out.append(Setting(f"{prefix}{name}", info))
    return out


@cache
def settings() -> tuple[Setting, ...]:
    """Every leaf setting of the schema, in schema order."""
    return tuple(_section_fields(SmolforgeConfig))


@cache
def setting(path: str) -> Setting:
    for s in settings():
        if s.path == path:
            return s
    raise KeyError(path)


def find(path: str) -> Setting | None:
    try:
        return setting(path)
    except KeyError:
        return None


def flagged() -> list[Setting]:
    """The settings that have a command-line flag."""
    return [s for s in settings() if s.flag is not None]


@cache
def _adapter(path: str) -> TypeAdapter:
    info = setting(path).info
    return TypeAdapter(Annotated.__class_getitem__((info.annotation, *info.metadata)),  # 3.10: no `*` in []
                       config=SETTING_CONFIG)
