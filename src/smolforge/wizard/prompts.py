"""questionary prompts that re-ask with a reason, and never swallow Ctrl-C.

`questionary`'s `.ask()` turns Ctrl-C into None (easy to mistake for an answer); these wrappers
use `.unsafe_ask()` so Ctrl-C / Ctrl-D raise, and the caller stops before writing anything.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import questionary

from smolforge.wizard.checks import validator


def _answer(question: questionary.Question) -> Any:
    try:
        value = question.unsafe_ask()
    except EOFError:  # Ctrl-D: the same as Ctrl-C here
        raise KeyboardInterrupt from None
    if value is None:
        raise KeyboardInterrupt
    return value


def select(message: str, choices: Sequence[tuple[str, Any] | tuple[str, Any, str | None]], default: Any = None,
           disabled: dict[Any, str] | None = None) -> Any:
    """Arrow-key choice; `choices` are (title, value[, description shown for the highlighted one])."""
    items = []
    for title, value, *rest in choices:
        items.append(questionary.Choice(title=title, value=value, description=rest[0] if rest else None,
                                        disabled=(disabled or {}).get(value)))
    chosen = next((c for c in items if c.value == default and not c.disabled), None)
    return _answer(questionary.select(message, choices=items, default=chosen))


def text(message: str, parse: Callable[[str], Any], default: str = "", instruction: str | None = None) -> Any:
    """Free text, checked by `parse` (its ValueError reason is shown until the answer is valid)."""
    raw = _answer(questionary.text(message, default=default, validate=validator(parse), instruction=instruction))
    return parse(raw)


def password(message: str, parse: Callable[[str], Any], instruction: str | None = None) -> Any:
    raw = _answer(questionary.password(message, validate=validator(parse), instruction=instruction))
    return parse(raw)


def confirm(message: str, default: bool) -> bool:
    return bool(_answer(questionary.confirm(message, default=default)))
