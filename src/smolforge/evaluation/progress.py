"""Progress for a whole evaluation: a live bar on a terminal, plain lines anywhere else.

One bar counts scored items over every model, mode and task (with an ETA); logs and CI output get
one line per finished step instead of redrawn bars.
"""

from __future__ import annotations

import time
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn


class EvalProgress:
    def __init__(self, console: Console, total_items: int):
        self.console = console
        self.total = total_items
        self.done = 0.0
        self._bar: Progress | None = None
        self._task: Any = None
        self._step_start = time.perf_counter()

    def __enter__(self) -> EvalProgress:
        if self.console.is_terminal:
            # Pinned to the stream the console writes to now, so capturing library output cannot swallow it.
            live = Console(file=self.console.file, force_terminal=True, highlight=False)
            self._bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("items"), TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
                                 console=live, transient=False)
            self._bar.__enter__()
            self._task = self._bar.add_task("evaluating", total=self.total)
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._bar is not None:
            self._bar.__exit__(*exc)

    def step(self, label: str) -> None:
        """A new model/mode/task step starts."""
        self._step_start = time.perf_counter()
        if self._bar is not None:
            self._bar.update(self._task, description=label)

    def advance(self, items: float) -> None:
        self.done += items
        if self._bar is not None:
            self._bar.update(self._task, completed=min(self.total, round(self.done, 6)))

    def finished(self, label: str, detail: str) -> None:
        """A step ended: a plain line off-terminal (on a terminal the bar already shows it)."""
        if self._bar is None:
            seconds = time.perf_counter() - self._step_start
            self.console.print(f"  {label}: {detail} ({seconds:.1f} s)", highlight=False, markup=False, soft_wrap=True)

    def note(self, text: str) -> None:
        target = self._bar.console if self._bar is not None else self.console
        target.print(text, highlight=False, markup=False, soft_wrap=True)
