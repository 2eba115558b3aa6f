"""The marker that gives a config setting a command-line flag.

A setting's flag is declared next to its type and description in the schema
(`Annotated[int, Flag("--batch-size")]`), so `run`, `init` and `card` options, their help and
their validation all come from that one declaration (see `smolforge.cliflags`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

RUN_AND_INIT = ("run", "init")
RUN_ONLY = ("run",)  # how one launch joins a multi-node run (per node, per job): given to `run`, not written by `init`
CARD_COMMANDS = ("run", "init", "card")  # settings that may still change after training


@dataclass(frozen=True)
class Flag:
    """`names`: the option names ("--private/--public" for a boolean pair). `on`: the commands that offer
    it. `file`: "@FILE" reads the value from a UTF-8 file. `convert`: turns the typed text into the
    setting's value. `implies`: other settings the flag sets as well (e.g. --epochs switches training
    back from max_steps to epochs)."""

    names: str | tuple[str, ...]
    on: tuple[str, ...] = RUN_AND_INIT
    file: bool = False
    convert: Callable[[str], Any] | None = None
    implies: tuple[tuple[str, Any], ...] = ()

    @property
    def all_names(self) -> tuple[str, ...]:
        return (self.names,) if isinstance(self.names, str) else self.names

    @property
    def label(self) -> str:
        """How messages name the flag: its first name (`--private` for the `--private/--public` pair)."""
        return self.all_names[0].split("/")[0]


def space_id_from_url(value: str) -> str:
    """`--trackio-url`: a Space URL (https://huggingface.co/spaces/user/name) or its id (user/name)."""
    text = value.strip().rstrip("/")
    return text.split("/spaces/", 1)[1] if "/spaces/" in text else text
