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

import json
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
    """`builtin`, an existing path, or anything that looks like one (so a typo is not sent to the Hub)."""
    return (name == "builtin" or Path(name).expanduser().exists() or name.startswith((".", "/", "~"))
            or Path(name).suffix.lower() in LOCAL_SUFFIXES)


def is_hub_dataset_id(name: str) -> bool:
    """True for names that can only mean a Hub dataset (used for card metadata)."""
    return not is_local_source(name) and "\\" not in name and name.count("/") <= 1 and bool(name.strip())


def display_name(cfg: DataSection) -> str:
    if cfg.name == "builtin":
        return BUILTIN_NAME
    return cfg.name


def _local_files(path: Path, named: tuple[str, ...] = ()) -> dict[str, list[str]]:
    """Files of a local source grouped by split.

    In a folder, a file whose name (without extension) is one of `named` (data.split, data.eval_split)
    is that split, e.g. train_prefs.jsonl; other files go by prefix: train*, validation*, test*, ...
    """
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
        split = next((n for n in named if n.lower() == stem), None) \
            or next((s for s in ("train", *EVAL_SPLIT_NAMES) if stem.startswith(s)), "train")
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
        files = _local_files(path, tuple(n for n in (cfg.split, cfg.eval_split) if n))
        builder = LOCAL_SUFFIXES[Path(next(iter(files.values()))[0]).suffix.lower()]
        try:
            dd = datasets.load_dataset(builder, data_files=files)
        except Exception as e:  # datasets raises many types for unreadable files
            raise DataError(f"data.name: cannot read {path} as {builder}: {str(e).splitlines()[0]}. "
                            "Check that the file is valid (JSON Lines: one JSON object per line).") from None
        return dict(dd)
    try:
        dd = datasets.load_dataset(cfg.name, cfg.config, revision=None)
    except Exception as e:  # offline, unknown id, gated, bad config: one message each
        raise DataError(hub_error_message(cfg, e)) from None
    return dict(dd)


def _hub_offline() -> bool:
    import os

    return any(os.environ.get(k, "").upper() in ("1", "ON", "YES", "TRUE")
               for k in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"))


def hub_error_message(cfg: DataSection, err: Exception) -> str:
    """One paragraph for a Hub dataset that cannot be loaded, naming data.name and the fix."""
    what = f"data.name: {cfg.name!r} is not a local file or folder, so it is read as a Hub dataset id"
    local_fix = ("or set data.name to a local .jsonl/.json/.csv/.parquet file or folder "
                 "(--set data.name=path/to/data.jsonl)")
    text = str(err)
    if _hub_offline() or "OfflineModeIsEnabled" in text:
        return (f"{what}, but the Hub is offline (HF_HUB_OFFLINE / HF_DATASETS_OFFLINE is set) and the dataset "
                f"is not in the local cache. Run once online (unset HF_HUB_OFFLINE) to download it, {local_fix}.")
    first = (text.splitlines() or [type(err).__name__])[0][:300]
    if type(err).__name__ in ("DatasetNotFoundError", "RepositoryNotFoundError", "GatedRepoError"):
        return (f"{what}, but the Hub has no such dataset or it needs access ({first}). Check the id; for a "
                f"private or gated dataset log in (hf auth login) or set HF_TOKEN, {local_fix}.")
    config = f" with data.config {cfg.config!r}" if cfg.config else ""
    return (f"{what}, but loading it{config} failed: {first}. Check the id and data.config, that you are "
            f"online, {local_fix}.")


# ---------------------------------------------------------------- detection

def _first_non_null(rows: list[dict], column: str) -> Any:
    return next((r.get(column) for r in rows if r.get(column) is not None), None)


def _as_turns(value: Any) -> Any:
    """A turn list stored as a JSON string (CSV files cannot hold lists) becomes the list."""
    if isinstance(value, str) and value.lstrip().startswith("["):
        try:
            parsed = json.loads(value)
        except ValueError:
            return value
        if isinstance(parsed, list) and parsed and all(isinstance(t, dict) for t in parsed):
            return parsed
    return value


def _turn_keys(value: Any) -> set[str]:
    value = _as_turns(value)
    if isinstance(value, list) and value and isinstance(value[0], dict):
        return set(value[0])
    return set()


def _roles(fmt: str) -> list[str]:
    return list(DEFAULT_FIELDS[fmt])


def _candidate_fields(fmt: str, cols: set[str], overrides: dict[str, str]) -> dict[str, str]:
    """The column each role of `fmt` would read: the override, else the first known column name."""
    fields = dict(DEFAULT_FIELDS[fmt])
    if fmt in ("messages", "sharegpt"):
        fields["messages"] = next((c for c in MESSAGE_COLUMNS if c in cols), fields["messages"])
    if fmt == "question_answer":
        fields["question"] = next((c for c in QUESTION_COLUMNS if c in cols), "question")
        fields["answer"] = next((c for c in ANSWER_COLUMNS if c in cols), "answer")
    fields.update(overrides)
    return fields


def _check_fields(fmt: str, fields: dict[str, str], overrides: dict[str, str], columns: list[str]) -> None:
    unknown = [k for k in overrides if k not in DEFAULT_FIELDS[fmt]]
    if unknown:
        raise DataError(f"data.fields: {', '.join(repr(k) for k in unknown)} is not a field of format {fmt!r} "
                        f"(its fields: {', '.join(_roles(fmt))}). Map each of those to a column, e.g. "
                        f"--set data.fields.{_roles(fmt)[0]}=<column>.")
    missing = [f"{role} -> '{fields[role]}'" for role in REQUIRED_ROLES[fmt] if fields[role] not in columns]
    if missing:
        raise DataError(
            f"data.format is {fmt!r} but the dataset has no column for {', '.join(missing)}. "
            f"Columns found: {', '.join(columns) or '(none)'}. Map them with data.fields, e.g. "
            f"--set data.fields.{REQUIRED_ROLES[fmt][0]}=<column>."
        )


# Auto-detection order: the most specific column sets first.
DETECT_ORDER = ("preference", "messages", "prompt_completion", "alpaca", "question_answer", "text")


def detect_format(columns: list[str], sample: list[dict], cfg: DataSection) -> Detected:
    """Choose the format from the columns (or check the explicit `data.format` + `data.fields`).

    With `data.format: auto`, a `data.fields` mapping narrows the choice to the formats that
    have those fields, so `fields: {question: q, answer: a}` works without naming the format.
    """
    cols, overrides = set(columns), dict(cfg.fields)
    absent = [f"data.fields.{k} -> '{v}'" for k, v in overrides.items() if v not in cols]
    if absent:
        raise DataError(f"{', '.join(absent)}: the dataset has no such column. Columns found: "
                        f"{', '.join(columns) or '(none)'}. Map the field to one of those.")
    if cfg.format != "auto":
        fields = _candidate_fields(cfg.format, cols, overrides)
        _check_fields(cfg.format, fields, overrides, columns)
        det = Detected(cfg.format, fields)
    else:
        det = None
        for fmt in DETECT_ORDER:
            if not set(overrides) <= set(DEFAULT_FIELDS[fmt]):
                continue
            fields = _candidate_fields(fmt, cols, overrides)
            if all(fields[role] in cols for role in REQUIRED_ROLES[fmt]):
                if fmt == "messages" and {"from", "value"} <= _turn_keys(_first_non_null(sample, fields["messages"])):
                    fmt = "sharegpt"
                det = Detected(fmt, fields)
                break
        if det is None:
            mapped = (f" with data.fields {', '.join(f'{k}={v}' for k, v in overrides.items())}"
                      if overrides else "")
            raise DataError(
                f"data: cannot tell the format of the dataset from its columns{mapped}: "
                f"{', '.join(columns) or '(none)'}. Accepted formats: {FORMAT_HELP}. Set data.format and map your "
                "columns with data.fields, e.g. --set data.format=question_answer "
                "--set data.fields.question=<column> --set data.fields.answer=<column>."
            )
        _check_fields(det.format, det.fields, overrides, columns)
    if det.format == "preference" and det.fields["prompt"] not in cols \
            and not isinstance(_as_turns(_first_non_null(sample, det.fields["chosen"])), list):
        raise DataError(
            f"data: preference pairs given as plain text need a prompt column, and there is no "
            f"'{det.fields['prompt']}'. Columns found: {', '.join(columns)}. Map it with "
            "--set data.fields.prompt=<column>, or give chosen/rejected as whole conversations (lists of messages)."
        )
    return det


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
    turns = _as_turns(turns)
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
        prompt_raw, completion_raw = _as_turns(row.get(f["prompt"])), _as_turns(row.get(f["completion"]))
        if isinstance(prompt_raw, list) or isinstance(completion_raw, list):  # already TRL's conversational form
            return _normalize_chat_pair(prompt_raw, completion_raw, cfg)
        prompt, completion = _text(prompt_raw), _text(completion_raw)
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


def _normalize_chat_pair(prompt_raw: Any, completion_raw: Any, cfg: DataSection) -> tuple[dict | None, str]:
    prompt, _ = _norm_turns(prompt_raw, False)
    completion, _ = _norm_turns(completion_raw, False)
    if prompt is None or not any(m["role"] == "user" and m["content"].strip() for m in prompt):
        return None, "empty prompt"
    if completion is None or not any(m["role"] == "assistant" and m["content"].strip() for m in completion):
        return None, "empty completion"
    return {"prompt": _with_system(prompt, cfg.system_prompt), "completion": completion}, ""


def _normalize_preference(row: dict, f: dict[str, str], cfg: DataSection) -> tuple[dict | None, str]:
    """Preference pairs as text, as messages (TRL's prompt/chosen/rejected), or as whole chats."""
    chosen_raw, rejected_raw = _as_turns(row.get(f["chosen"])), _as_turns(row.get(f["rejected"]))
    prompt_raw = _as_turns(row.get(f["prompt"]))
    if isinstance(chosen_raw, list) or isinstance(rejected_raw, list):
        chosen, _ = _norm_turns(chosen_raw, False)
        rejected, _ = _norm_turns(rejected_raw, False)
        if chosen is None or rejected is None:
            return None, "chosen/rejected are not valid turns"
        if not any(m["role"] == "assistant" for m in chosen) or not any(m["role"] == "assistant" for m in rejected):
            return None, "chosen/rejected have no assistant turn"
        if chosen[0]["role"] != "assistant":  # whole chats (UltraFeedback style): split the shared prompt off
            prompt, chosen = _split_prompt(chosen)
            _, rejected = _split_prompt(rejected)
        elif isinstance(prompt_raw, list):
            prompt, _ = _norm_turns(prompt_raw, False)
            if prompt is None:
                return None, "prompt is not valid turns"
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
    if not any(m["role"] == "user" and m["content"].strip() for m in prompt):
        return None, "empty prompt"
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


def resolve_loss_on(loss_on: str, kind: str) -> str:
    """Which tokens carry the loss: `auto` = assistant turns (chats), completions (prompt/completion), all (text)."""
    if loss_on == "auto":
        return {"conversational": "assistant", "prompt_completion": "completion"}.get(kind, "all")
    if loss_on == "assistant" and kind != "conversational":
        raise DataError(f"data.loss_on: 'assistant' applies to conversations, but the data is {kind!r}. "
                        "Use --set data.loss_on=completion (prompt/completion data), all, or auto.")
    if loss_on == "completion" and kind != "prompt_completion":
        raise DataError(f"data.loss_on: 'completion' applies to prompt/completion data, but the data is "
                        f"{kind!r}. Use --set data.loss_on=assistant (conversations), all, or auto.")
    return loss_on


def _fmt_reasons(reasons: Counter) -> str:
    return ", ".join(f"{k}: {v}" for k, v in reasons.most_common())


def check_method_fits(method: str, kind: str | None, fmt: str | None, columns: list[str]) -> None:
    """DPO trains on preference pairs and nothing else; SFT on anything but preference pairs."""
    if method == "dpo" and kind != "preference":
        raise DataError(f"training.method is 'dpo' but the dataset looks like {fmt!r} "
                        f"(columns: {', '.join(columns)}). DPO needs preference pairs: "
                        "`chosen` and `rejected` columns (and usually `prompt`).")
    if method == "sft" and kind == "preference":
        raise DataError("training.method is 'sft' but the dataset holds preference pairs (chosen/rejected). "
                        "Use --set training.method=dpo, or an SFT dataset.")


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


# ---------------------------------------------------------------- token lengths

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
