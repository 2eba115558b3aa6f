"""`prepare()`: load, detect, normalise, sample and split; the statistics the card reports.

Runs before any model is loaded. Rows that cannot be used are dropped and counted by reason;
the counts go to results.json and the card, and `drop_report` turns them into console lines so
a format mismatch that drops half the data cannot pass unnoticed.
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from smolforge.builtin_data import BUILTIN_FILES
from smolforge.config import DataSection
from smolforge.data.dedup import COPY_OF_TRAINING, DUPLICATE, drop_duplicates, prompt_overlap
from smolforge.data.formats import (
    Detected,
    check_method_fits,
    detect_format,
    normalize_row,
    reasoning_kwargs,
    resolve_loss_on,
)
from smolforge.data.sources import EVAL_SPLIT_NAMES, display_name, is_local_source, load_splits, local_recipe
from smolforge.data.tools import load_tools_file
from smolforge.data.turns import UNKNOWN_ROLE, unknown_roles_help
from smolforge.errors import DataError

log = logging.getLogger("smolforge.data")
log.addHandler(logging.NullHandler())  # records reach the run log; the console gets drop_report's lines from the caller

DROP = "_smolforge_drop"  # the column that carries each row's drop reason ("" = kept) during normalisation
ROLES = "_smolforge_roles"  # ...and the roles of a dropped row that the chat template does not know
ROW = "_smolforge_row"  # each kept row's index in the file, so a report can name it; removed before training
OUTSIDE_TOKENS = "outside data.min_tokens/max_tokens"  # drop reasons of the length stage (lengths.py)
NO_SUPERVISED = "no supervised token within training.max_length"
PROMPT_TOO_LONG = "prompt + training.grpo.max_completion_length longer than training.max_length"
LENGTH_REASONS = (OUTSIDE_TOKENS, NO_SUPERVISED, PROMPT_TOO_LONG)
WARN_SHARE = 0.05  # above this share of dropped rows, drop_report adds a warning


@dataclass
class PreparedData:
    """Train/eval rows in a TRL format, plus the numbers the card reports."""

    train: Any  # datasets.Dataset
    eval: Any | None
    detected: Detected
    stats: dict[str, Any] = field(default_factory=dict)
    length_checked: int | None = None  # the training.max_length the length filters were applied for
    lengths: dict[str, list[int]] = field(default_factory=dict)  # split -> kept rows' token lengths, in order

    @property
    def kind(self) -> str:
        return self.detected.kind


def _features(kind: str, extra: dict[str, Any] | None = None) -> Any:
    """Arrow schema of a normalised split, given up front so dropped rows (all None) cannot confuse inference.
    `extra`: the source's other columns with their features, which GRPO rows keep for the reward functions."""
    from datasets import Features, List, Value

    call = {"type": Value("string"), "function": {"name": Value("string"), "arguments": Value("string")}}
    turns = List({"role": Value("string"), "content": Value("string"), "tool_calls": List(call)})
    columns = {"conversational": ["messages"], "prompt_completion": ["prompt", "completion"],
               "preference": ["prompt", "chosen", "rejected"]}
    marks = {DROP: Value("string"), ROLES: List(Value("string")), ROW: Value("int64")}
    if kind == "text":
        return Features({"text": Value("string"), **marks})
    if kind == "prompt_answer":
        return Features({"prompt": turns, "answer": Value("string"), **(extra or {}),
                         "chat_template_kwargs": {"enable_thinking": Value("bool")}, **marks})
    tools = {"tools": Value("string")} if kind in ("conversational", "prompt_completion") else {}
    return Features({**{c: turns for c in columns[kind]}, **tools,
                     "chat_template_kwargs": {"enable_thinking": Value("bool")}, **marks})


def _normalize_split(ds: Any, det: Detected, cfg: DataSection,
                     default_tools: str | None = None) -> tuple[Any, Counter, Counter]:
    """Map a split to the TRL format; return the kept rows (None if none), the drop reasons and the unknown
    roles (rows with each).

    Runs as one `Dataset.map` (Arrow, cached for Hub data), so a million-row split is not copied
    through Python lists; each row's drop reason travels in a column and is counted exactly.
    """
    columns = list(ds.column_names)
    extra = {c: ds.features[c] for c in columns if c not in det.fields.values() and not c.startswith("_smolforge")} \
        if det.kind == "prompt_answer" else {}
    features = _features(det.kind, extra)

    def normalise(batch: dict[str, list], indices: list[int]) -> dict[str, list]:
        out: dict[str, list] = {name: [] for name in features}
        for index, values in zip(indices, zip(*(batch[c] for c in columns), strict=True), strict=True):
            raw = dict(zip(columns, values, strict=True))
            row, why, unknown = normalize_row(raw, det, cfg, default_tools)
            if row is not None and det.kind != "text":
                row["chat_template_kwargs"] = reasoning_kwargs(row, cfg.reasoning)
            if row is not None and extra:
                row.update({c: raw[c] for c in extra})
            for name in features:
                out[name].append(why if name == DROP else unknown if name == ROLES else index if name == ROW
                                 else (row or {}).get(name))
        return out

    mapped = ds.map(normalise, batched=True, with_indices=True, remove_columns=columns, features=features,
                    num_proc=None, desc="Normalising rows")
    drops = list(mapped[DROP])
    reasons = Counter(r for r in drops if r)
    unknown = Counter(name for names in mapped[ROLES] for name in names) if reasons[UNKNOWN_ROLE] else Counter()
    keep = [i for i, r in enumerate(drops) if not r]
    if not keep:
        return None, reasons, unknown
    kept = mapped.remove_columns([DROP, ROLES])  # ROW stays until the template check has named the rows
    return (kept if len(keep) == len(drops) else kept.select(keep)), reasons, unknown


def _fmt_reasons(reasons: Counter | dict[str, int]) -> str:
    return ", ".join(f"{k}: {v:,}" for k, v in Counter(reasons).most_common())


def _all_dropped(cfg: DataSection, det: Detected, rows_read: int, reasons: Counter, unknown: Counter) -> DataError:
    fields = ", ".join(f"{k} -> '{v}'" for k, v in det.fields.items())
    hint = unknown_roles_help(unknown, det.format) if unknown else ""
    if set(reasons) != {UNKNOWN_ROLE}:
        hint += (" " if hint else "") + (f"The rows were read as format {det.format!r} with fields {fields}: "
                                         "check data.format and data.fields.")
    return DataError(f"data: every one of the {rows_read:,} rows of {display_name(cfg)} was dropped "
                     f"({_fmt_reasons(reasons)}). {hint}")


def prepare(cfg: DataSection, method: str = "sft") -> PreparedData:
    """Load, detect, normalise, sample and split. Runs before any model is loaded."""
    splits = load_splits(cfg)
    if cfg.split not in splits:
        raise DataError(f"data.split: the dataset has no split {cfg.split!r}; it has {', '.join(splits)}. "
                        f"Set --set data.split=<one of those>.")
    train_raw = splits[cfg.split]
    sample = [train_raw[i] for i in range(min(20, len(train_raw)))]
    det = detect_format(list(train_raw.column_names), sample, cfg, method)
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

    default_tools = load_tools_file(cfg.tools) if cfg.tools else None
    rows_read = len(train_raw)
    train, reasons, unknown = _normalize_split(train_raw, det, cfg, default_tools)
    if train is None:
        raise _all_dropped(cfg, det, rows_read, reasons, unknown)
    seen: set[str] = set()
    if cfg.dedup:  # before sampling and splitting: a held-out row is never a copy of a training row
        train, n = drop_duplicates(train, seen)
        if n:
            reasons[DUPLICATE] += n
    sampled = bool(cfg.max_samples and cfg.max_samples < len(train))
    if sampled:
        train = train.shuffle(seed=cfg.seed).select(range(cfg.max_samples))

    eval_ds, eval_desc, eval_reasons, eval_unknown, eval_read = None, None, Counter(), Counter(), 0
    if eval_name is not None:
        eval_raw = splits[eval_name]
        eval_read = len(eval_raw)
        eval_ds, eval_reasons, eval_unknown = _normalize_split(eval_raw, det, cfg, default_tools)
        eval_desc = f"the dataset's `{eval_name}` split"
        if eval_ds is not None and cfg.dedup:
            eval_ds, n = drop_duplicates(eval_ds, set(seen))  # duplicates, and copies of training rows
            if n:
                eval_reasons[COPY_OF_TRAINING] += n
            eval_ds = eval_ds if len(eval_ds) else None
        if eval_ds is not None and cfg.max_samples:
            n_eval = max(1, min(len(eval_ds), math.ceil(cfg.max_samples * max(cfg.eval_ratio, 0.05))))
            eval_ds = eval_ds.shuffle(seed=cfg.seed).select(range(n_eval))
    elif cfg.eval_ratio > 0 and len(train) >= 2:
        parts = train.train_test_split(test_size=cfg.eval_ratio, seed=cfg.seed)
        train, eval_ds = parts["train"], parts["test"]
        eval_desc = f"{cfg.eval_ratio:.0%} of `{cfg.split}` held out with seed {cfg.seed}"

    local = is_local_source(cfg.name)
    stats = {
        "name": display_name(cfg),
        "source": "builtin" if cfg.name in BUILTIN_FILES else ("local" if local else "hub"),
        "config": None if local else cfg.config,
        "local_files": local_recipe(cfg),
        "split": cfg.split,
        "format": det.format,
        "fields": det.fields,
        "rows_read": rows_read,
        "rows_dropped": sum(reasons.values()),
        "drop_reasons": dict(reasons.most_common()),
        "unknown_roles": dict(unknown.most_common()),  # role as written -> rows dropped with it
        "max_samples": cfg.max_samples if sampled else None,  # only when it actually sampled
        "train_size": len(train),
        "eval_size": len(eval_ds) if eval_ds is not None else 0,
        "eval_source": eval_desc,
        "eval_split_name": eval_name if eval_name is not None else (
            f"{cfg.split} (held-out {cfg.eval_ratio:.0%})" if eval_ds is not None else None),
        "eval_rows_read": eval_read,
        "eval_rows_dropped": sum(eval_reasons.values()),
        "eval_drop_reasons": dict(eval_reasons.most_common()),
        "eval_unknown_roles": dict(eval_unknown.most_common()),
        "dedup": cfg.dedup,
        "eval_prompt_overlap": prompt_overlap(train, eval_ds) if eval_ds is not None else None,
        "seed": cfg.seed,
        "system_prompt": cfg.system_prompt,
        "reasoning": cfg.reasoning,
    }
    log_drops(stats, ("read",))
    return PreparedData(train=train, eval=eval_ds, detected=det, stats=stats)


def drop_report(stats: dict[str, Any], stages: tuple[str, ...] = ("read", "length")) -> list[str]:
    """Console lines for every dropped row, by split and stage, with a `warning:` line above WARN_SHARE.

    Stage "read": rows normalisation could not use, out of the rows read. Stage "length": rows the
    length filters dropped, out of the rows that reached them. Empty when nothing was dropped.
    """
    lines: list[str] = []
    for prefix, label in (("", "training"), ("eval_", "evaluation")):
        reasons = stats.get(f"{prefix}drop_reasons") or {}
        copies = {k: v for k, v in reasons.items() if k in (DUPLICATE, COPY_OF_TRAINING)}
        if "read" in stages and copies and stats.get(f"{prefix}rows_read"):
            lines.append(f"removed {sum(copies.values()):,} of {stats[f'{prefix}rows_read']:,} {label} rows as copies "
                         f"(data.dedup): {_fmt_reasons(copies)}")
        read_drops = {k: v for k, v in reasons.items() if k not in LENGTH_REASONS and k not in copies}
        length_drops = {k: v for k, v in reasons.items() if k in LENGTH_REASONS}
        size = stats.get("train_size" if not prefix else "eval_size") or 0
        if "read" in stages and read_drops and stats.get(f"{prefix}rows_read"):
            n, total = sum(read_drops.values()), stats[f"{prefix}rows_read"]
            lines.append(f"dropped {n:,} of {total:,} {label} rows ({n / total:.1%}): {_fmt_reasons(read_drops)}")
            if stats.get(f"{prefix}unknown_roles"):
                lines.append(unknown_roles_help(stats[f"{prefix}unknown_roles"], stats.get("format", "")))
            if n / total > WARN_SHARE:
                fields = ", ".join(f"{k} -> '{v}'" for k, v in (stats.get("fields") or {}).items())
                lines.append(f"warning: {n / total:.1%} of the {label} rows were dropped (more than "
                             f"{WARN_SHARE:.0%}): check data.format and data.fields; the rows were read as format "
                             f"{stats.get('format')!r} with fields {fields}.")
        if "length" in stages and length_drops:
            n = sum(length_drops.values())
            total = n + size
            lines.append(f"dropped {n:,} of {total:,} {label} rows ({n / total:.1%}) by token length: "
                         f"{_fmt_reasons(length_drops)}")
            if n / total > WARN_SHARE:
                fix = " or ".join(fix for reason, fix in ((NO_SUPERVISED, "raise training.max_length"),
                                                          (PROMPT_TOO_LONG, "raise training.max_length"),
                                                          (OUTSIDE_TOKENS, "widen data.min_tokens / data.max_tokens"))
                                  if reason in length_drops)
                lines.append(f"warning: {n / total:.1%} of the {label} rows were dropped by token length (more "
                             f"than {WARN_SHARE:.0%}): {fix} to keep them.")
    return lines


def log_drops(stats: dict[str, Any], stages: tuple[str, ...]) -> None:
    for line in drop_report(stats, stages):
        if line.startswith("warning: "):
            log.warning(line.removeprefix("warning: "))
        else:
            log.info(line)
