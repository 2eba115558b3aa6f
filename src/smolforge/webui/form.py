"""The configure form, generated from the schema: one field per setting, grouped by section, each with its
description as help, its bounds, and its choices as a dropdown. Nothing here is declared twice: a new setting
appears in the form by being declared in config/."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import annotated_types as at
import yaml

from smolforge.config.fields import Setting, base_type, settings

SECTION_TITLES = {"": "Run", "model": "Model", "data": "Data", "training": "Training", "tracking": "Tracking",
                  "evaluation": "Evaluation", "quantize": "Quantize", "card": "Model card", "publish": "Publish"}


@dataclass(frozen=True)
class Field:
    """How one setting is shown and read back."""

    setting: Setting
    kind: Literal["dropdown", "multiselect", "checkbox", "number", "lines", "text", "yaml"]
    minimum: float | None = None
    maximum: float | None = None
    integer: bool = False

    @property
    def path(self) -> str:
        return self.setting.path

    @property
    def section(self) -> str:
        return self.path.split(".", 1)[0] if "." in self.path else ""

    @property
    def elem_id(self) -> str:
        """The field's id in the page (tests and the field errors find it by this)."""
        return "sf-" + self.path.replace(".", "-").replace("_", "-")

    @property
    def help(self) -> str:
        bounds = []
        if self.minimum is not None:
            bounds.append(f"min {self.minimum:g}")
        if self.maximum is not None:
            bounds.append(f"max {self.maximum:g}")
        return self.setting.description + (f" ({', '.join(bounds)})" if bounds else "")

    def shown(self, value: Any) -> Any:
        """A config value as the widget holds it."""
        if self.kind == "lines":
            return "\n".join(str(v) for v in value or [])
        if self.kind == "yaml":
            return "" if value is None else yaml.safe_dump(value, default_flow_style=True, sort_keys=False).strip()
        if self.kind == "text":
            return "" if value is None else str(value)
        return value

    def read(self, shown: Any) -> Any:
        """The widget's value as config data (not yet validated: the schema says what is wrong with it)."""
        if self.kind == "lines":
            return [line.strip() for line in str(shown or "").splitlines() if line.strip()]
        if self.kind == "yaml":
            text = str(shown or "").strip()
            if not text:
                return None
            try:
                return yaml.safe_load(text)
            except yaml.YAMLError:
                return text  # the schema's message names the setting
        if self.kind == "text":
            text = str(shown or "")
            return None if not text.strip() and self.setting.optional else text
        if self.kind == "number":
            if shown is None or shown == "":
                return None
            return int(shown) if self.integer and float(shown).is_integer() else shown
        if self.kind == "multiselect":
            return list(shown or [])
        return shown


def _bounds(setting: Setting) -> tuple[float | None, float | None]:
    low = high = None
    for m in setting.info.metadata:
        if isinstance(m, at.Ge):
            low = m.ge
        elif isinstance(m, at.Gt):
            low = m.gt  # the widget's minimum is inclusive; the schema's message covers the boundary itself
        elif isinstance(m, at.Le):
            high = m.le
        elif isinstance(m, at.Lt):
            high = m.lt
    return low, high


def field_for(setting: Setting) -> Field:
    tp = base_type(setting.info.annotation)
    if setting.choices:
        return Field(setting, "multiselect" if setting.is_list else "dropdown")
    if tp is bool:
        return Field(setting, "checkbox")
    if tp in (int, float):
        low, high = _bounds(setting)
        return Field(setting, "number", low, high, integer=tp is int)
    if setting.is_list and base_type(setting.item_type) is str:
        return Field(setting, "lines")
    if tp is str:
        return Field(setting, "text")
    return Field(setting, "yaml")


def form_fields() -> list[Field]:
    """Every setting of the schema, in schema order (`preset` is chosen above the form)."""
    return [field_for(s) for s in settings() if s.path != "preset"]


def sections() -> dict[str, list[Field]]:
    out: dict[str, list[Field]] = {}
    for f in form_fields():
        out.setdefault(f.section, []).append(f)
    return out
