"""Dataset fixtures written by the tests themselves: one writer per file type, and rows in every
format smolforge accepts, derived from the bundled chats so a tiny model can learn them.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from smolforge.builtin_data import BUILTIN_PATH


def write_rows(path: Path, rows: list[dict[str, Any]]) -> Path:
    """Write `rows` as .jsonl, .json (a list), .csv (nested values as JSON strings) or .parquet."""
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    elif suffix == ".json":
        path.write_text(json.dumps(rows), encoding="utf-8")
    elif suffix == ".csv":
        columns = list(dict.fromkeys(k for r in rows for k in r))
        with open(path, "w", newline="", encoding="utf-8") as f:
            w = csv.DictWriter(f, fieldnames=columns)
            w.writeheader()
            for r in rows:
                w.writerow({k: json.dumps(v) if isinstance(v, (list, dict)) else v for k, v in r.items()})
    elif suffix == ".parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.Table.from_pylist(rows), path)
    else:
        raise ValueError(suffix)
    return path


def unique(rows: list[dict]) -> list[dict]:
    """Rows without repeats (case and whitespace ignored): fixtures whose row counts tests rely on must not lose
    rows to data.dedup."""
    seen, out = set(), []
    for row in rows:
        key = " ".join(json.dumps(row, sort_keys=True).lower().split())
        if key not in seen:
            seen.add(key)
            out.append(row)
    return out


def chats(n: int | None = None) -> list[dict]:
    """The distinct bundled chats (`messages` rows; the bundled file repeats some)."""
    with open(BUILTIN_PATH, encoding="utf-8") as f:
        rows = unique([json.loads(line) for line in f])
    return rows[:n] if n else rows


def first_exchange(row: dict) -> tuple[str, str]:
    """The first user question and the assistant answer to it."""
    msgs = row["messages"]
    i = next(i for i, m in enumerate(msgs) if m["role"] == "user")
    return msgs[i]["content"], msgs[i + 1]["content"]


def prompt_completion_rows(n: int | None = None) -> list[dict]:
    rows = unique([dict(zip(("prompt", "completion"), first_exchange(r), strict=True)) for r in chats()])
    return rows[:n] if n else rows


def text_rows(n: int | None = None) -> list[dict]:
    rows = unique([{"text": f"Question: {q}\nAnswer: {a}"} for q, a in map(first_exchange, chats())])
    return rows[:n] if n else rows


def preference_rows(n: int | None = None) -> list[dict]:
    """prompt / chosen (the real answer) / rejected (the answer to another chat's question)."""
    rows = chats()
    pairs = [first_exchange(r) for r in rows]
    out = []
    for i, (q, a) in enumerate(pairs[: n or len(pairs)]):
        j = (i + 7) % len(pairs)
        while pairs[j][1] == a:
            j = (j + 1) % len(pairs)
        out.append({"prompt": q, "chosen": a, "rejected": pairs[j][1]})
    return unique(out)
