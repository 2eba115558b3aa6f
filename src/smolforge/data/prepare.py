"""`prepare()`: load, detect, normalise, sample and split; the statistics the card reports.

Runs before any model is loaded. Rows that cannot be used are dropped and counted by reason;
the counts go to results.json and the card.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from smolforge.config import DataSection
from smolforge.data.formats import (
    Detected,
    check_method_fits,
    detect_format,
    normalize_row,
    reasoning_kwargs,
    resolve_loss_on,
)
from smolforge.data.sources import EVAL_SPLIT_NAMES, display_name, is_local_source, load_splits
from smolforge.errors import DataError


@dataclass
class PreparedData:
    """Train/eval rows in a TRL format, plus the numbers the card reports."""

    train: Any  # datasets.Dataset
    eval: Any | None
    detected: Detected
    stats: dict[str, Any] = field(default_factory=dict)

    @property
    def kind(self) -> str:
        return self.detected.kind


DROP = "_smolforge_drop"  # the column that carries each row's drop reason ("" = kept) during normalisation


def _features(kind: str) -> Any:
    """Arrow schema of a normalised split, given up front so dropped rows (all None) cannot confuse inference."""
    from datasets import Features, List, Value

    turns = List({"role": Value("string"), "content": Value("string")})
    columns = {"conversational": ["messages"], "prompt_completion": ["prompt", "completion"],
               "preference": ["prompt", "chosen", "rejected"]}
    if kind == "text":
        return Features({"text": Value("string"), DROP: Value("string")})
    return Features({**{c: turns for c in columns[kind]}, "chat_template_kwargs": {"enable_thinking": Value("bool")},
                     DROP: Value("string")})


def _normalize_split(ds: Any, det: Detected, cfg: DataSection) -> tuple[Any, Counter]:
    """Map a split to the TRL format; return the kept rows (None if none) and the drop reasons.

    Runs as one `Dataset.map` (Arrow, cached for Hub data), so a million-row split is not copied
    through Python lists; each row's drop reason travels in a column and is counted exactly.
    """
    features = _features(det.kind)
    columns = list(ds.column_names)

    def normalise(batch: dict[str, list]) -> dict[str, list]:
        out: dict[str, list] = {name: [] for name in features}
        for values in zip(*(batch[c] for c in columns), strict=True):
            row, why = normalize_row(dict(zip(columns, values, strict=True)), det, cfg)
            if row is not None and det.kind != "text":
                row["chat_template_kwargs"] = reasoning_kwargs(row, cfg.reasoning)
            for name in features:
                out[name].append(why if name == DROP else (row or {}).get(name))
        return out

    mapped = ds.map(normalise, batched=True, remove_columns=columns, features=features, num_proc=None,
                    desc="Normalising rows")
    drops = list(mapped[DROP])
    reasons = Counter(r for r in drops if r)
    keep = [i for i, r in enumerate(drops) if not r]
    if not keep:
        return None, reasons
    kept = mapped.remove_columns(DROP)
    return (kept if len(keep) == len(drops) else kept.select(keep)), reasons


def _fmt_reasons(reasons: Counter) -> str:
    return ", ".join(f"{k}: {v}" for k, v in reasons.most_common())


def prepare(cfg: DataSection, method: str = "sft") -> PreparedData:
    """Load, detect, normalise, sample and split. Runs before any model is loaded."""
    splits = load_splits(cfg)
    if cfg.split not in splits:
        raise DataError(f"data.split: the dataset has no split {cfg.split!r}; it has {', '.join(splits)}. "
                        f"Set --set data.split=<one of those>.")
    train_raw = splits[cfg.split]
    sample = [train_raw[i] for i in range(min(20, len(train_raw)))]
    det = detect_format(list(train_raw.column_names), sample, cfg)
    check_method_fits(method, det.kind, det.format, list(train_raw.column_names))
    if method == "sft":
        resolve_loss_on(cfg.loss_on, det.kind)  # a mismatch fails here, before anything is written

    eval_name = cfg.eval_split
    if eval_name is not None and eval_name not in splits:
        raise DataError(f"data.eval_split: the dataset has no split {eval_name!r}; it has "
                        f"{', '.join(splits)}. Set another, or leave it unset to split off data.eval_ratio.")
    if eval_name is None:
        eval_name = next((s for s in EVAL_SPLIT_NAMES if s in splits and s != cfg.split), None)
    if eval_name == cfg.split:
        raise DataError(f"data.eval_split: {eval_name!r} is also data.split, so the model would be evaluated on "
                        "its training rows. Choose another split, or leave data.eval_split unset.")

    rows_read = len(train_raw)
    train, reasons = _normalize_split(train_raw, det, cfg)
    if train is None:
        raise DataError(f"data: every one of the {rows_read} rows of {display_name(cfg)} was dropped "
                        f"({_fmt_reasons(reasons)}). Check data.format and data.fields.")
    sampled = bool(cfg.max_samples and cfg.max_samples < len(train))
    if sampled:
        train = train.shuffle(seed=cfg.seed).select(range(cfg.max_samples))

    eval_ds, eval_desc, eval_reasons, eval_read = None, None, Counter(), 0
    if eval_name is not None:
        eval_raw = splits[eval_name]
        eval_read = len(eval_raw)
        eval_ds, eval_reasons = _normalize_split(eval_raw, det, cfg)
        eval_desc = f"the dataset's `{eval_name}` split"
        if eval_ds is not None and cfg.max_samples:
            n_eval = max(1, min(len(eval_ds), math.ceil(cfg.max_samples * max(cfg.eval_ratio, 0.05))))
            eval_ds = eval_ds.shuffle(seed=cfg.seed).select(range(n_eval))
    elif cfg.eval_ratio > 0 and len(train) >= 2:
        parts = train.train_test_split(test_size=cfg.eval_ratio, seed=cfg.seed)
        train, eval_ds = parts["train"], parts["test"]
        eval_desc = f"{cfg.eval_ratio:.0%} of `{cfg.split}` held out (seed {cfg.seed})"

    local = is_local_source(cfg.name)
    stats = {
        "name": display_name(cfg),
        "source": "builtin" if cfg.name == "builtin" else ("local" if local else "hub"),
        "config": None if local else cfg.config,
        "split": cfg.split,
        "format": det.format,
        "fields": det.fields,
        "rows_read": rows_read,
        "rows_dropped": sum(reasons.values()),
        "drop_reasons": dict(reasons.most_common()),
        "max_samples": cfg.max_samples if sampled else None,  # only when it actually sampled
        "train_size": len(train),
        "eval_size": len(eval_ds) if eval_ds is not None else 0,
        "eval_source": eval_desc,
        "eval_split_name": eval_name if eval_name is not None else (
            f"{cfg.split} (held-out {cfg.eval_ratio:.0%})" if eval_ds is not None else None),
        "eval_rows_read": eval_read,
        "eval_rows_dropped": sum(eval_reasons.values()),
        "eval_drop_reasons": dict(eval_reasons.most_common()),
        "seed": cfg.seed,
        "system_prompt": cfg.system_prompt,
        "reasoning": cfg.reasoning,
    }
    return PreparedData(train=train, eval=eval_ds, detected=det, stats=stats)
