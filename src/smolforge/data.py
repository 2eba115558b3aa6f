"""Load a dataset, detect its format, and turn it into TRL's conversational formats.

Everything a chat model is tuned on goes through its chat template, so every supported format
becomes one of three shapes TRL understands:

- ``{"messages": [...]}``                         messages, ShareGPT            (loss: assistant turns)
- ``{"prompt": [...], "completion": [...]}``      prompt/completion, Alpaca, Q&A (loss: the completion)
- ``{"prompt": [...], "chosen": [...], "rejected": [...]}``  preference pairs for DPO
- ``{"text": "..."}``                             plain text (loss: every token)

Rows that cannot be used (empty text, no assistant turn, unknown roles) are dropped and counted
by reason; the counts go to results.json and the card. Nothing falls back to ``str(row)``.
Format detection runs on the column names before any model is loaded.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from smolforge.builtin_data import BUILTIN_NAME, BUILTIN_PATH
from smolforge.config import DataSection
from smolforge.errors import DataError

LOCAL_SUFFIXES = {".jsonl": "json", ".json": "json", ".csv": "csv", ".parquet": "parquet"}
EVAL_SPLIT_NAMES = ("validation", "valid", "val", "test", "eval", "dev")
MESSAGE_COLUMNS = ("messages", "conversations", "conversation", "chat", "dialog")
QUESTION_COLUMNS = ("question", "query", "input_text")
ANSWER_COLUMNS = ("answer", "response", "output_text")
SHAREGPT_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant",
                  "model": "assistant", "chatgpt": "assistant", "bing": "assistant", "bard": "assistant",
                  "system": "system"}
STANDARD_ROLES = {"system", "user", "assistant", "tool"}

FORMAT_HELP = (
    "messages (a `messages`/`conversations` column of {role, content} turns), "
    "sharegpt (turns of {from, value}), prompt_completion (`prompt` + `completion`), "
    "alpaca (`instruction` + optional `input` + `output`), question_answer (`question` + `answer`), "
    "text (`text`), preference (`chosen` + `rejected`, optional `prompt`; for DPO)"
)

# Which role of each format reads which column; `data.fields` overrides these.
DEFAULT_FIELDS: dict[str, dict[str, str]] = {
    "messages": {"messages": "messages"},
    "sharegpt": {"messages": "conversations"},
    "prompt_completion": {"prompt": "prompt", "completion": "completion"},
    "alpaca": {"instruction": "instruction", "input": "input", "output": "output"},
    "question_answer": {"question": "question", "answer": "answer"},
    "text": {"text": "text"},
    "preference": {"prompt": "prompt", "chosen": "chosen", "rejected": "rejected"},
}
REQUIRED_ROLES = {
    "messages": ["messages"], "sharegpt": ["messages"], "prompt_completion": ["prompt", "completion"],
    "alpaca": ["instruction", "output"], "question_answer": ["question", "answer"], "text": ["text"],
    "preference": ["chosen", "rejected"],
}
KIND_OF_FORMAT = {
    "messages": "conversational", "sharegpt": "conversational", "prompt_completion": "prompt_completion",
    "alpaca": "prompt_completion", "question_answer": "prompt_completion", "text": "text",
    "preference": "preference",
}


@dataclass
class Detected:
    format: str
    fields: dict[str, str]

    @property
    def kind(self) -> str:
        return KIND_OF_FORMAT[self.format]


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


# ---------------------------------------------------------------- sources

def is_local_source(name: str) -> bool:
    return name == "builtin" or Path(name).expanduser().exists() or name.startswith((".", "/", "~"))


def is_hub_dataset_id(name: str) -> bool:
    """True for names that can only mean a Hub dataset (used for card metadata)."""
    return not is_local_source(name) and "\\" not in name and name.count("/") <= 1 and bool(name.strip())


def display_name(cfg: DataSection) -> str:
    if cfg.name == "builtin":
        return BUILTIN_NAME
    return cfg.name


def _local_files(path: Path) -> dict[str, list[str]]:
    """Files of a local source grouped by split (folder files named train*/validation*/test*)."""
    if path.is_file():
        if path.suffix.lower() not in LOCAL_SUFFIXES:
            raise DataError(f"data.name: {path} has an unsupported extension {path.suffix!r}. "
                            f"Use one of {', '.join(LOCAL_SUFFIXES)}.")
        return {"train": [str(path)]}
    files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in LOCAL_SUFFIXES)
    if not files:
        raise DataError(f"data.name: the folder {path} holds no {', '.join(LOCAL_SUFFIXES)} files. "
                        "Point data.name at a data file or a folder of them.")
    suffixes = {p.suffix.lower() for p in files}
    if len({LOCAL_SUFFIXES[s] for s in suffixes}) > 1:
        raise DataError(f"data.name: the folder {path} mixes file types ({', '.join(sorted(suffixes))}). "
                        "Keep one type per folder.")
    splits: dict[str, list[str]] = {}
    for p in files:
        stem = p.stem.lower()
        split = next((s for s in ("train", *EVAL_SPLIT_NAMES) if stem.startswith(s)), "train")
        splits.setdefault(split, []).append(str(p))
    return splits


def load_splits(cfg: DataSection) -> dict[str, Any]:
    """Every split of the source, as `datasets.Dataset`s (the Hub only when online or cached)."""
    import datasets

    datasets.disable_progress_bars()
    if is_local_source(cfg.name):
        path = BUILTIN_PATH if cfg.name == "builtin" else Path(cfg.name).expanduser()
        if not path.exists():
            raise DataError(f"data.name: {cfg.name} does not exist. Give an existing file or folder, "
                            "`builtin`, or a Hub dataset id like `HuggingFaceTB/smoltalk`.")
        files = _local_files(path)
        builder = LOCAL_SUFFIXES[Path(next(iter(files.values()))[0]).suffix.lower()]
        try:
            dd = datasets.load_dataset(builder, data_files=files)
        except Exception as e:  # datasets raises many types for unreadable files
            raise DataError(f"data.name: cannot read {path} as {builder}: {str(e).splitlines()[0]}. "
                            "Check that the file is valid (JSON Lines: one JSON object per line).") from None
        return dict(dd)
    try:
        dd = datasets.load_dataset(cfg.name, cfg.config, revision=None)
    except Exception as e:
        raise DataError(
            f"data.name: cannot load the Hub dataset {cfg.name!r}"
            f"{f' (config {cfg.config!r})' if cfg.config else ''}: {str(e).splitlines()[0][:300]}. "
            "Check the id and data.config, that you are online (or the dataset is cached), "
            "or use a local file."
        ) from None
    return dict(dd)


# ---------------------------------------------------------------- detection

def _first_non_null(rows: list[dict], column: str) -> Any:
    return next((r.get(column) for r in rows if r.get(column) is not None), None)


def _turn_keys(value: Any) -> set[str]:
    if isinstance(value, list) and value and isinstance(value[0], dict):
        return set(value[0])
    return set()


def detect_format(columns: list[str], sample: list[dict], cfg: DataSection) -> Detected:
    """Choose the format from the columns (or check the explicit `data.format` + `data.fields`)."""
    cols = set(columns)
    if cfg.format != "auto":
        fields = {**DEFAULT_FIELDS[cfg.format], **cfg.fields}
        if cfg.format == "sharegpt" and "messages" not in cfg.fields:
            fields["messages"] = next((c for c in MESSAGE_COLUMNS if c in cols), "conversations")
        if cfg.format == "messages" and "messages" not in cfg.fields:
            fields["messages"] = next((c for c in MESSAGE_COLUMNS if c in cols), "messages")
        missing = [f"{role} -> '{fields[role]}'" for role in REQUIRED_ROLES[cfg.format] if fields[role] not in cols]
        if missing:
            raise DataError(
                f"data.format is {cfg.format!r} but the dataset has no column for {', '.join(missing)}. "
                f"Columns found: {', '.join(columns) or '(none)'}. Map them with data.fields, e.g. "
                f"--set data.fields.{REQUIRED_ROLES[cfg.format][0]}=<column>."
            )
        return Detected(cfg.format, fields)

    f = dict(cfg.fields)
    if "chosen" in cols and "rejected" in cols:
        return Detected("preference", {**DEFAULT_FIELDS["preference"], **f})
    msg_col = f.get("messages") or next((c for c in MESSAGE_COLUMNS if c in cols), None)
    if msg_col and msg_col in cols:
        keys = _turn_keys(_first_non_null(sample, msg_col))
        fmt = "sharegpt" if {"from", "value"} <= keys else "messages"
        return Detected(fmt, {"messages": msg_col})
    if "prompt" in cols and "completion" in cols:
        return Detected("prompt_completion", {**DEFAULT_FIELDS["prompt_completion"], **f})
    if "instruction" in cols and "output" in cols:
        return Detected("alpaca", {**DEFAULT_FIELDS["alpaca"], **f})
    q = next((c for c in QUESTION_COLUMNS if c in cols), None)
    a = next((c for c in ANSWER_COLUMNS if c in cols), None)
    if q and a:
        return Detected("question_answer", {"question": q, "answer": a, **f})
    if "text" in cols:
        return Detected("text", {"text": "text", **f})
    raise DataError(
        f"data: cannot tell the format of the dataset from its columns: {', '.join(columns) or '(none)'}. "
        f"Accepted formats: {FORMAT_HELP}. Set data.format and map your columns with data.fields, e.g. "
        "--set data.format=question_answer --set data.fields.question=<column> --set data.fields.answer=<column>."
    )


# ---------------------------------------------------------------- normalisation

def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, (int, float)) and not (isinstance(value, float) and math.isnan(value)):
        return str(value)
    return None


def _norm_turns(turns: Any, sharegpt: bool) -> tuple[list[dict] | None, str]:
    if not isinstance(turns, list) or not turns:
        return None, "empty or not a list of turns"
    out = []
    for t in turns:
        if not isinstance(t, dict):
            return None, "a turn is not a mapping"
        if sharegpt or ("from" in t and "role" not in t):
            role = SHAREGPT_ROLES.get(str(t.get("from", "")).lower())
            content = _text(t.get("value"))
        else:
            role = str(t.get("role", "")).lower() or None
            content = _text(t.get("content"))
        if role not in STANDARD_ROLES:
            return None, "unknown role"
        if content is None:
            return None, "a turn has no text content"
        out.append({"role": role, "content": content})
    return out, ""


def _check_conversation(messages: list[dict]) -> str:
    if not any(m["role"] == "assistant" and m["content"].strip() for m in messages):
        return "no non-empty assistant turn"
    if not any(m["role"] == "user" and m["content"].strip() for m in messages):
        return "no non-empty user turn"
    return ""


def _with_system(messages: list[dict], system_prompt: str | None) -> list[dict]:
    if system_prompt and not (messages and messages[0]["role"] == "system"):
        return [{"role": "system", "content": system_prompt}, *messages]
    return messages


def _split_prompt(messages: list[dict]) -> tuple[list[dict], list[dict]]:
    """Preference rows given as whole chats: the prompt is everything before the last assistant turn."""
    last = max(i for i, m in enumerate(messages) if m["role"] == "assistant")
    return messages[:last], messages[last:]


def normalize_row(row: dict, det: Detected, cfg: DataSection) -> tuple[dict | None, str]:
    """One raw row -> (TRL-format row, "") or (None, reason it was dropped)."""
    fmt, f = det.format, det.fields
    if fmt in ("messages", "sharegpt"):
        msgs, why = _norm_turns(row.get(f["messages"]), fmt == "sharegpt")
        if msgs is None:
            return None, why
        why = _check_conversation(msgs)
        return (None, why) if why else ({"messages": _with_system(msgs, cfg.system_prompt)}, "")
    if fmt == "text":
        text = _text(row.get(f["text"]))
        return (None, "empty text") if not text or not text.strip() else ({"text": text}, "")
    if fmt == "preference":
        return _normalize_preference(row, f, cfg)
    if fmt == "prompt_completion":
        prompt, completion = _text(row.get(f["prompt"])), _text(row.get(f["completion"]))
    elif fmt == "alpaca":
        instruction, extra = _text(row.get(f["instruction"])), _text(row.get(f.get("input", "input")))
        prompt = instruction if not extra or not extra.strip() else f"{instruction}\n\n{extra}"
        completion = _text(row.get(f["output"]))
    else:  # question_answer
        prompt, completion = _text(row.get(f["question"])), _text(row.get(f["answer"]))
    if not prompt or not prompt.strip():
        return None, "empty prompt"
    if not completion or not completion.strip():
        return None, "empty completion"
    p = _with_system([{"role": "user", "content": prompt}], cfg.system_prompt)
    return {"prompt": p, "completion": [{"role": "assistant", "content": completion}]}, ""


def _normalize_preference(row: dict, f: dict[str, str], cfg: DataSection) -> tuple[dict | None, str]:
    chosen_raw, rejected_raw = row.get(f["chosen"]), row.get(f["rejected"])
    prompt_raw = row.get(f.get("prompt", "prompt"))
    as_chat = isinstance(chosen_raw, list)
    if as_chat:
        chosen, why = _norm_turns(chosen_raw, False)
        rejected, why2 = _norm_turns(rejected_raw, False) if isinstance(rejected_raw, list) else (None, "bad")
        if chosen is None or rejected is None:
            return None, "chosen/rejected are not valid turns"
        if not any(m["role"] == "assistant" for m in chosen) or not any(m["role"] == "assistant" for m in rejected):
            return None, "chosen/rejected have no assistant turn"
        if isinstance(prompt_raw, list):
            prompt, why = _norm_turns(prompt_raw, False)
            if prompt is None:
                return None, "prompt is not valid turns"
        elif chosen[0]["role"] != "assistant":  # whole chats: split the shared prompt off
            prompt, chosen = _split_prompt(chosen)
            _, rejected = _split_prompt(rejected)
        else:
            text = _text(prompt_raw)
            if not text or not text.strip():
                return None, "empty prompt"
            prompt = [{"role": "user", "content": text}]
    else:
        text, c, r = _text(prompt_raw), _text(chosen_raw), _text(rejected_raw)
        if not text or not text.strip():
            return None, "empty prompt"
        if not c or not c.strip() or not r or not r.strip():
            return None, "empty chosen or rejected"
        prompt = [{"role": "user", "content": text}]
        chosen, rejected = [{"role": "assistant", "content": c}], [{"role": "assistant", "content": r}]
    if not any(m["content"].strip() for m in chosen) or not any(m["content"].strip() for m in rejected):
        return None, "empty chosen or rejected"
    return {"prompt": _with_system(prompt, cfg.system_prompt), "chosen": chosen, "rejected": rejected}, ""


def reasoning_kwargs(row: dict, mode: str) -> dict[str, bool]:
    """SmolLM3 reasoning mode for a row: `enable_thinking` for its chat template.

    auto: think only where the assistant text carries a <think> trace; data without traces
    trains the /no_think mode, which is how SmolLM3 answers without reasoning.
    """
    if mode == "think":
        return {"enable_thinking": True}
    if mode == "no_think":
        return {"enable_thinking": False}
    turns = [*row.get("messages", []), *row.get("completion", []), *row.get("chosen", [])]
    return {"enable_thinking": any("<think>" in m["content"] for m in turns if m["role"] == "assistant")}


# ---------------------------------------------------------------- preparation

def _normalize_split(ds: Any, det: Detected, cfg: DataSection) -> tuple[Any, Counter]:
    """Map a split to the TRL format; return the kept rows and drop reasons."""
    import datasets

    kept, reasons = [], Counter()
    for row in ds:
        out, why = normalize_row(row, det, cfg)
        if out is None:
            reasons[why] += 1
            continue
        if det.kind != "text":
            out["chat_template_kwargs"] = reasoning_kwargs(out, cfg.reasoning)
        kept.append(out)
    return datasets.Dataset.from_list(kept) if kept else None, reasons


def prepare(cfg: DataSection, method: str = "sft") -> PreparedData:
    """Load, detect, normalise, sample and split. Runs before any model is loaded."""
    splits = load_splits(cfg)
    if cfg.split not in splits:
        raise DataError(f"data.split: the dataset has no split {cfg.split!r}; it has {', '.join(splits)}. "
                        f"Set --set data.split=<one of those>.")
    train_raw = splits[cfg.split]
    sample = [train_raw[i] for i in range(min(20, len(train_raw)))]
    det = detect_format(list(train_raw.column_names), sample, cfg)
    if method == "dpo" and det.kind != "preference":
        raise DataError(f"training.method is 'dpo' but the dataset looks like {det.format!r} "
                        f"(columns: {', '.join(train_raw.column_names)}). DPO needs preference pairs: "
                        "`chosen` and `rejected` columns (and usually `prompt`).")
    if method == "sft" and det.kind == "preference":
        raise DataError("training.method is 'sft' but the dataset holds preference pairs (chosen/rejected). "
                        "Use --set training.method=dpo, or an SFT dataset.")

    eval_name = cfg.eval_split
    if eval_name is not None and eval_name not in splits:
        raise DataError(f"data.eval_split: the dataset has no split {eval_name!r}; it has "
                        f"{', '.join(splits)}. Set another, or leave it unset to split off data.eval_ratio.")
    if eval_name is None:
        eval_name = next((s for s in EVAL_SPLIT_NAMES if s in splits and s != cfg.split), None)

    rows_read = len(train_raw)
    train, reasons = _normalize_split(train_raw, det, cfg)
    if train is None:
        raise DataError(f"data: every one of the {rows_read} rows of {display_name(cfg)} was dropped "
                        f"({', '.join(f'{k}: {v}' for k, v in reasons.items())}). Check data.format and data.fields.")
    if cfg.max_samples and cfg.max_samples < len(train):
        train = train.shuffle(seed=cfg.seed).select(range(cfg.max_samples))

    eval_ds, eval_desc, eval_reasons = None, None, Counter()
    if eval_name is not None:
        eval_raw = splits[eval_name]
        eval_ds, eval_reasons = _normalize_split(eval_raw, det, cfg)
        eval_desc = f"the dataset's `{eval_name}` split"
        if eval_ds is not None and cfg.max_samples:
            n_eval = max(1, min(len(eval_ds), math.ceil(cfg.max_samples * max(cfg.eval_ratio, 0.05))))
            eval_ds = eval_ds.shuffle(seed=cfg.seed).select(range(n_eval))
    elif cfg.eval_ratio > 0 and len(train) >= 2:
        parts = train.train_test_split(test_size=cfg.eval_ratio, seed=cfg.seed)
        train, eval_ds = parts["train"], parts["test"]
        eval_desc = f"{cfg.eval_ratio:.0%} of `{cfg.split}` held out (seed {cfg.seed})"

    stats = {
        "name": display_name(cfg),
        "source": "builtin" if cfg.name == "builtin" else ("local" if is_local_source(cfg.name) else "hub"),
        "config": cfg.config,
        "split": cfg.split,
        "format": det.format,
        "fields": det.fields,
        "rows_read": rows_read,
        "rows_dropped": sum(reasons.values()),
        "drop_reasons": dict(reasons),
        "max_samples": cfg.max_samples,
        "train_size": len(train),
        "eval_size": len(eval_ds) if eval_ds is not None else 0,
        "eval_source": eval_desc,
        "eval_split_name": eval_name if eval_name is not None else (
            f"{cfg.split} (held-out {cfg.eval_ratio:.0%})" if eval_ds is not None else None),
        "eval_rows_dropped": sum(eval_reasons.values()),
        "seed": cfg.seed,
        "system_prompt": cfg.system_prompt,
        "reasoning": cfg.reasoning,
    }
    return PreparedData(train=train, eval=eval_ds, detected=det, stats=stats)


# ---------------------------------------------------------------- token lengths

def token_length(row: dict, tokenizer: Any, kind: str) -> int:
    kw = row.get("chat_template_kwargs") or {}
    if kind == "text":
        return len(tokenizer(row["text"])["input_ids"])
    if kind == "conversational":
        msgs = row["messages"]
    elif kind == "prompt_completion":
        msgs = row["prompt"] + row["completion"]
    else:
        msgs = row["prompt"] + row["chosen"]
    return len(tokenizer.apply_chat_template(msgs, tokenize=True, **kw)["input_ids"])


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
            key = "rows_dropped" if split == "train" else "eval_rows_dropped"
            data.stats[key] += dropped
            if split == "train":
                data.stats["drop_reasons"]["outside min/max tokens"] = dropped
            ds = ds.select(keep)
            lengths = [lengths[i] for i in keep]
            setattr(data, split, ds if len(ds) else None)
        data.stats[f"{split}_size"] = len(keep)
        data.stats[f"{split}_token_lengths"] = length_stats(lengths)
        data.stats[f"{split}_truncated_rows"] = sum(1 for n in lengths if n > max_length)
    if data.train is None:
        raise DataError("data: no training rows are left after data.min_tokens / data.max_tokens. "
                        "Widen the limits.")
