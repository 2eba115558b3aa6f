"""A few eval-split rows answered greedily by the base and the fine-tune, beside the reference.

Not a measurement: a look at what the numbers mean. Each row's conversation up to its last
assistant turn is the prompt; that assistant turn is the reference.
"""

from __future__ import annotations

from typing import Any

from smolforge.evaluation.generation import generate

MAX_CHARS = 600


def _as_messages(row: dict) -> list[dict]:
    """A chat from the row formats smolforge trains on: messages, or prompt + completion (text or chat), or GRPO's
    prompt + answer (the answer its rewards check stands as the reference)."""
    if isinstance(row.get("messages"), list):
        return row["messages"]
    prompt, completion = row.get("prompt"), row.get("completion", row.get("answer"))
    if prompt is None or completion is None:
        return []
    head = prompt if isinstance(prompt, list) else [{"role": "user", "content": str(prompt)}]
    tail = completion if isinstance(completion, list) else [{"role": "assistant", "content": str(completion)}]
    return [*head, *tail]


def split_row(row: dict) -> tuple[list[dict], str] | None:
    """(prompt messages, reference) from a chat row; None when it has no assistant answer after a user turn."""
    messages = _as_messages(row)
    last = max((i for i, m in enumerate(messages) if m.get("role") == "assistant"), default=None)
    if last is None or not any(m.get("role") == "user" for m in messages[:last]):
        return None
    return messages[:last], str(messages[last].get("content", ""))


def pick(rows: list[dict], n: int) -> list[tuple[list[dict], str]]:
    """The first n usable rows: the eval split's order is already fixed by the run's seed."""
    out = []
    for row in rows:
        pair = split_row(row)
        if pair:
            out.append(pair)
        if len(out) == n:
            break
    return out


def answers(model: Any, tokenizer: Any, picked: list[tuple[list[dict], str]], mode: str, thinking: bool,
            max_new_tokens: int, batch_size: int) -> list[str]:
    return generate(model, tokenizer, [p for p, _ in picked], mode, thinking, max_new_tokens, batch_size)


def table(picked: list[tuple[list[dict], str]], mode: str, outputs: dict[str, list[str]]) -> list[dict]:
    """One row per sample: the last user turn, the reference, and each model's answer (trimmed)."""
    rows = []
    for i, (messages, reference) in enumerate(picked):
        prompt = next(m["content"] for m in reversed(messages) if m.get("role") == "user")
        row = {"prompt": prompt[:MAX_CHARS], "reference": reference[:MAX_CHARS], "mode": mode}
        row.update({name: texts[i][:MAX_CHARS] for name, texts in outputs.items()})
        rows.append(row)
    return rows
