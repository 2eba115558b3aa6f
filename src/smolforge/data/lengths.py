"""Token lengths with the chat template: length statistics and the data.min_tokens/max_tokens filters."""

from __future__ import annotations

from typing import Any

from smolforge.config import DataSection
from smolforge.data.prepare import PreparedData
from smolforge.errors import DataError


def _chat_length(msgs: list[dict], tokenizer: Any, kw: dict) -> int:
    return len(tokenizer.apply_chat_template(msgs, tokenize=True, return_dict=True, **kw)["input_ids"])


def token_length(row: dict, tokenizer: Any, kind: str) -> int:
    """Tokens of the sequence TRL will train on (for DPO: the longer of chosen and rejected)."""
    kw = row.get("chat_template_kwargs") or {}
    if kind == "text":
        text = row["text"]
        eos = tokenizer.eos_token
        return len(tokenizer(text + eos if eos and not text.endswith(eos) else text)["input_ids"])  # TRL adds EOS
    if kind == "conversational":
        return _chat_length(row["messages"], tokenizer, kw)
    if kind == "prompt_completion":
        return _chat_length(row["prompt"] + row["completion"], tokenizer, kw)
    return max(_chat_length(row["prompt"] + row["chosen"], tokenizer, kw),
               _chat_length(row["prompt"] + row["rejected"], tokenizer, kw))


def length_stats(lengths: list[int]) -> dict[str, float | int]:
    if not lengths:
        return {}
    s = sorted(lengths)

    def pct(p: float) -> int:
        return s[min(len(s) - 1, int(p * (len(s) - 1) + 0.5))]

    return {"min": s[0], "p50": pct(0.5), "p90": pct(0.9), "max": s[-1],
            "mean": round(sum(s) / len(s), 1), "total": sum(s)}


def apply_length_filters(data: PreparedData, tokenizer: Any, cfg: DataSection, max_length: int) -> None:
    """Measure token lengths (with the chat template), drop rows outside min/max_tokens, record stats."""
    for split in ("train", "eval"):
        ds = getattr(data, split)
        if ds is None:
            continue
        lengths = [token_length(r, tokenizer, data.kind) for r in ds]
        keep = [i for i, n in enumerate(lengths)
                if n >= cfg.min_tokens and (cfg.max_tokens is None or n <= cfg.max_tokens)]
        dropped = len(lengths) - len(keep)
        if dropped:
            prefix = "" if split == "train" else "eval_"
            data.stats[f"{prefix}rows_dropped"] += dropped
            data.stats[f"{prefix}drop_reasons"]["outside data.min_tokens/max_tokens"] = dropped
            lengths = [lengths[i] for i in keep]
            setattr(data, split, ds.select(keep) if keep else None)
        data.stats[f"{split}_size"] = len(keep)
        data.stats[f"{split}_token_lengths"] = length_stats(lengths)
        data.stats[f"{split}_truncated_rows"] = sum(1 for n in lengths if n > max_length)
    if data.train is None:
        raise DataError(f"data: no training rows are left after data.min_tokens ({cfg.min_tokens}) / "
                        f"data.max_tokens ({cfg.max_tokens}). Widen the limits.")
