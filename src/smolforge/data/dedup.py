"""Exact duplicates, and how much of the evaluation split the model has already seen.

Two rows are the same when their text is the same after lower-casing and collapsing whitespace
(roles and turn order count; formatting does not). Duplicates are removed before the train/eval
split, so a held-out row is never a copy of a training row; what remains is reported: the
evaluation rows whose prompt also appears in training (the model saw the question, with some
answer).
"""

from __future__ import annotations

import json
from typing import Any

DUPLICATE = "exact duplicate"
COPY_OF_TRAINING = "copy of a training row"


def _norm(value: Any) -> Any:
    if isinstance(value, str):
        return " ".join(value.lower().split())
    if isinstance(value, dict):
        # the reasoning switch is derived from the text; smolforge's own marks (a row's index) are not content
        return {k: _norm(v) for k, v in sorted(value.items())
                if k != "chat_template_kwargs" and not k.startswith("_smolforge")}
    if isinstance(value, list):
        return [_norm(v) for v in value]
    return value


def row_key(row: dict) -> str:
    """The row's identity for duplicate detection."""
    return json.dumps(_norm(row), ensure_ascii=False, sort_keys=True)


def prompt_key(row: dict) -> str:
    """What the model is asked in a row: the turns before its last answer (the whole text for plain text)."""
    if "messages" in row:
        turns = row["messages"]
        last = max((i for i, m in enumerate(turns) if m.get("role") == "assistant"), default=len(turns))
        return json.dumps(_norm(turns[:last]), ensure_ascii=False)
    if "prompt" in row:
        return json.dumps(_norm(row["prompt"]), ensure_ascii=False)
    return json.dumps(_norm(row), ensure_ascii=False)


def _keys(ds: Any, key) -> list[str]:
    return [key(dict(r)) for r in ds]


def drop_duplicates(ds: Any, seen: set[str] | None = None) -> tuple[Any, int]:
    """`ds` without rows whose key was seen before (in `seen`, or earlier in `ds`); (rows kept, rows removed).
    Keys of the kept rows are added to `seen`."""
    seen = set() if seen is None else seen
    keep = []
    for i, k in enumerate(_keys(ds, row_key)):
        if k not in seen:
            seen.add(k)
            keep.append(i)
    removed = len(ds) - len(keep)
    return (ds.select(keep) if removed else ds), removed


def prompt_overlap(train: Any, eval_ds: Any) -> dict[str, Any]:
    """How many evaluation rows ask a prompt that training rows ask too."""
    asked = set(_keys(train, prompt_key))
    hits = sum(1 for k in _keys(eval_ds, prompt_key) if k in asked)
    return {"rows": hits, "of": len(eval_ds), "share": round(hits / len(eval_ds), 4) if len(eval_ds) else 0.0}
