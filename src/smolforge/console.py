"""The terminal: rich consoles for output and errors, tables of rows, and whether a person can answer questions.

When stdout is not a terminal (a log file, CI, a pipe), lines are never wrapped in the middle of
a value: rich's soft wrapping is on, so a path or a command can be copied from the output.
"""

from __future__ import annotations

import sys


def interactive() -> bool:
    """A person is at a terminal (stdin and stdout): questions may be asked."""
    return sys.stdin.isatty() and sys.stdout.isatty()


def make_console(stderr: bool = False):
    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    return Console(stderr=stderr, highlight=False, soft_wrap=not stream.isatty(), emoji=False)


def print_error(message: str) -> None:
    """`error: <message>` on stderr, as one paragraph (never cut at the terminal width)."""
    from rich.text import Text

    console = make_console(stderr=True)
    console.print(Text.assemble(("error:", "bold red"), " ", message), soft_wrap=True)


def print_rows(console, rows: list[tuple[str, str]], title: str) -> None:
    """A two-column table of (name, value) rows: values fold instead of being cut, and are never read as markup."""
    from rich.table import Table
    from rich.text import Text

    table = Table(title=title, show_header=False)
    table.add_column(no_wrap=True)
    table.add_column(overflow="fold")
    for key, value in rows:
        table.add_row(key, Text(value))
    console.print(table)
