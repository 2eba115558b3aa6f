"""questionary prompts that re-ask with a reason, and never swallow Ctrl-C.

`questionary`'s `.ask()` turns Ctrl-C into None (easy to mistake for an answer); these wrappers
use `.unsafe_ask()` so Ctrl-C / Ctrl-D raise, and the caller stops before writing anything. A
refused answer's reason is printed as a wrapped paragraph (a prompt's own validation line is cut
at the terminal width), then the question is asked again with the answer as typed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import questionary

from smolforge.console import make_console


def _answer(question: questionary.Question) -> Any:
    try:
        value = question.unsafe_ask()
    except EOFError:  # Ctrl-D: the same as Ctrl-C here
        raise KeyboardInterrupt from None
    if value is None:
        raise KeyboardInterrupt
    return value


def _refused(reason: str) -> None:
    make_console().print(f"  {reason}", style="red", markup=False, soft_wrap=False)


def select(message: str, choices: Sequence[tuple[str, Any] | tuple[str, Any, str | None]], default: Any = None,
           disabled: dict[Any, str] | None = None) -> Any:
    """Arrow-key choice; `choices` are (title, value[, description shown for the highlighted one])."""
    items = []
    for title, value, *rest in choices:
        items.append(questionary.Choice(title=title, value=value, description=rest[0] if rest else None,
                                        disabled=(disabled or {}).get(value)))
    chosen = next((c for c in items if c.value == default and not c.disabled), None)
    return _answer(questionary.select(message, choices=items, default=chosen))


def _ask_until_valid(ask: Callable[[str], str], parse: Callable[[str], Any], default: str) -> Any:
    while True:
        raw = ask(default)
        try:
            return parse(raw)
        except ValueError as e:
            _refused(str(e))
            default = raw


def text(message: str, parse: Callable[[str], Any], default: str = "", instruction: str | None = None) -> Any:
    """Free text, checked by `parse` (its ValueError reason is shown until the answer is valid)."""
    return _ask_until_valid(lambda d: _answer(questionary.text(message, default=d, instruction=instruction)),
                            parse, default)


def password(message: str, parse: Callable[[str], Any], instruction: str | None = None) -> Any:
    return _ask_until_valid(lambda _: _answer(questionary.password(message, instruction=instruction)), parse, "")


def confirm(message: str, default: bool) -> bool:
    return bool(_answer(questionary.confirm(message, default=default)))


def step(console, n: int, title: str, why: str) -> None:
    console.print()
    console.print(f"[bold cyan]Step {n}/10 · {title}[/]  [dim]{why}[/]")
