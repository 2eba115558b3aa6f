"""Look at a dataset before training: its columns, two sample rows and the detected format.

Uses the same `data.load_splits` / `data.detect_format` that training uses, so what the wizard
shows is what `smolforge run` will do. A Hub dataset is read only when online, and then streamed
(a few rows, never the whole dataset); offline its format is left to be detected at run time.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass, field
from typing import Any

from smolforge.config import DataSection
from smolforge.data import KIND_OF_FORMAT, detect_format, is_local_source, load_splits
from smolforge.errors import DataError, first_line

SAMPLE_ROWS = 20


@dataclass
class Peek:
    columns: list[str] = field(default_factory=list)
    rows: list[dict[str, Any]] = field(default_factory=list)
    format: str | None = None  # detected (or checked explicit) format
    fields: dict[str, str] = field(default_factory=dict)
    problem: str | None = None  # why the format could not be detected
    unread: str | None = None  # why the rows could not be read at all

    @property
    def kind(self) -> str | None:
        return KIND_OF_FORMAT.get(self.format) if self.format else None


def read_rows(section: DataSection, online: bool) -> tuple[list[str], list[dict[str, Any]]] | None:
    """Columns and the first rows of the training split; None for a Hub dataset while offline."""
    if is_local_source(section.name):
        splits = load_splits(section)
        if section.split not in splits:
            raise DataError(f"the dataset has no split {section.split!r}; it has {', '.join(splits)}")
        ds = splits[section.split]
        return list(ds.column_names), [ds[i] for i in range(min(SAMPLE_ROWS, len(ds)))]
    if not online:
        return None
    import datasets

    datasets.disable_progress_bars()
    try:
        stream = datasets.load_dataset(section.name, section.config, split=section.split, streaming=True)
        rows = list(itertools.islice(stream, SAMPLE_ROWS))
    except Exception as e:  # datasets raises many types for a wrong id, config or split
        raise DataError(f"cannot read {section.name!r}: {first_line(e)[:300]}") from None
    columns = list(stream.column_names or (rows[0].keys() if rows else []))
    return columns, rows


def peek(section: DataSection, online: bool, method: str = "sft") -> Peek | None:
    try:
        got = read_rows(section, online)
    except DataError as e:
        return Peek(unread=str(e).replace("data.name: ", ""))
    if got is None:
        return None
    columns, rows = got
    result = Peek(columns=columns, rows=rows)
    try:
        det = detect_format(columns, rows, section, method)
    except DataError as e:
        result.problem = str(e)
        return result
    result.format, result.fields = det.format, det.fields
    return result


def show_row(row: dict[str, Any], limit: int = 240) -> str:
    text = json.dumps(row, ensure_ascii=False, default=str)
    return text if len(text) <= limit else text[: limit - 3] + "..."
