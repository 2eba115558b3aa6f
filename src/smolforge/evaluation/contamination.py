"""Training-data contamination of benchmark items: 13-gram overlap after normalising case and whitespace.

An item (its prompt plus its reference answer) counts as contaminated when any 13 consecutive
words of it also occur, in order, in a training text. Items shorter than 13 words count when the
whole item occurs in a training text. Item n-grams are few, so they go in a set and the training
texts stream past it once per distinct n-gram length: memory stays bounded by the benchmark.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

NGRAM = 13
MAX_LISTED = 20


@dataclass(frozen=True)
class BenchmarkItem:
    task: str
    id: str
    text: str  # prompt and reference answer, as the model sees and is scored on them


def row_text(row: object) -> str:
    """All the text of a dataset row (messages, prompt/completion, chosen/rejected...), joined by spaces.

    Message roles are labels, not text: left out, so a question and its answer stay adjacent."""
    if isinstance(row, str):
        return row
    if isinstance(row, dict):
        return " ".join(t for t in (row_text(v) for k, v in row.items() if k != "role") if t)
    if isinstance(row, (list, tuple)):
        return " ".join(t for t in (row_text(v) for v in row) if t)
    return ""


def words(text: str) -> list[str]:
    """Lower-case words split on any whitespace: the normalisation both sides share."""
    return text.lower().split()


def _ngrams(tokens: Sequence[str], n: int) -> Iterable[tuple[str, ...]]:
    return (tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1))


def overlapping_items(train_texts: Iterable[str], items: Sequence[BenchmarkItem], n: int = NGRAM) -> set[int]:
    """Indices of the items that share an n-gram (or, when shorter, their whole text) with a training text."""
    wanted: dict[int, dict[tuple[str, ...], list[int]]] = defaultdict(lambda: defaultdict(list))
    for idx, item in enumerate(items):
        toks = words(item.text)
        if not toks:
            continue
        size = min(n, len(toks))
        for gram in set(_ngrams(toks, size)):
            wanted[size][gram].append(idx)
    hit: set[int] = set()
    # Only windows starting with a word that starts some item n-gram need building: far fewer tuples.
    firsts = {size: {gram[0] for gram in grams} for size, grams in wanted.items()}
    for text in train_texts:
        toks = words(text)
        for size, grams in wanted.items():
            starts = firsts[size]
            for i in range(len(toks) - size + 1):
                if toks[i] in starts and (found := grams.get(tuple(toks[i:i + size]))):
                    hit.update(found)
    return hit


def report(train_texts: Iterable[str], items: Sequence[BenchmarkItem], n: int = NGRAM) -> dict:
    """Per task: items checked, items with an overlapping n-gram, their share and the first few ids."""
    texts = list(train_texts)
    hit = overlapping_items(texts, items, n)
    per_task: dict[str, dict] = {}
    for idx, item in enumerate(items):
        row = per_task.setdefault(item.task, {"items": 0, "overlapping": 0, "found_whole": 0, "share": 0.0,
                                              "examples": []})
        row["items"] += 1
        if idx in hit:
            row["overlapping"] += 1
            row["found_whole"] += len(words(item.text)) < n  # a short item: the whole of it occurs in training text
            if len(row["examples"]) < MAX_LISTED:
                row["examples"].append(item.id)
    for row in per_task.values():
        row["share"] = row["overlapping"] / row["items"] if row["items"] else 0.0
    return {"ngram": n, "normalisation": "lower case, whitespace-split words", "training_texts": len(texts),
            "tasks": per_task}
