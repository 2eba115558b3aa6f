"""What every section of the schema shares: a section never takes unknown keys or nan/inf, and text must be
writable as UTF-8."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict

SETTING_CONFIG = ConfigDict(allow_inf_nan=False, defer_build=True)  # a setting is never nan or inf


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True, **SETTING_CONFIG)


def utf8_text(value: Any) -> Any:
    """Text must be writable as UTF-8 (argv can smuggle in lone surrogates from invalid bytes)."""
    for item in value if isinstance(value, list) else [value]:
        if isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                raise ValueError("contains bytes that are not valid UTF-8 text; retype it or fix the file "
                                 "encoding") from None
    return value
