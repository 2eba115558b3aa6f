"""Format detection (columns -> format + field mapping) and row normalisation to TRL's shapes.

Every supported format becomes one of the shapes TRL trains on, so the chat template formats
everything the same way:

- ``{"messages": [...]}``                         messages, ShareGPT            (loss: assistant turns)
- ``{"prompt": [...], "completion": [...]}``      prompt/completion, Alpaca, Q&A (loss: the completion)
- ``{"prompt": [...], "chosen": [...], "rejected": [...]}``  preference pairs for DPO
- ``{"text": "..."}``                             plain text (loss: every token)
- ``{"prompt": [...], "answer": "...", ...}``      prompts and the answers rewards check, for GRPO (the other
                                                   columns travel along: reward functions get them)

A row that cannot be used yields the reason it is dropped; nothing falls back to ``str(row)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from smolforge.config import DataSection
from smolforge.data.tools import TOOL_REASONS, BadToolData, tools_list
from smolforge.data.turns import UNKNOWN_ROLE, UnknownRoles, as_turns, norm_turns, text_of, turn
from smolforge.errors import DataError

MESSAGE_COLUMNS = ("messages", "conversations", "conversation", "chat", "dialog")
QUESTION_COLUMNS = ("question", "query", "input_text")
ANSWER_COLUMNS = ("answer", "response", "output_text")
PROMPT_COLUMNS = ("prompt", "question", "problem", "query", "instruction", *MESSAGE_COLUMNS)  # GRPO's prompt
REFERENCE_COLUMNS = ("answer", "solution", "reference", "ground_truth", "target")  # ...and what rewards check

FORMAT_HELP = (
    "messages (a `messages`/`conversations` column of {role, content} turns), "
    "sharegpt (turns of {from, value}), prompt_completion (`prompt` + `completion`), "
    "alpaca (`instruction` + optional `input` + `output`), question_answer (`question` + `answer`), "
    "text (`text`), preference (`chosen` + `rejected`, optional `prompt`; for DPO), "
    "prompt_answer (`prompt` as text or turns ending in a user turn + `answer`; for GRPO)"
)

# Which role of each format reads which column; `data.fields` overrides these.
DEFAULT_FIELDS: dict[str, dict[str, str]] = {
    "messages": {"messages": "messages", "tools": "tools"},
    "sharegpt": {"messages": "conversations", "tools": "tools"},
    "prompt_completion": {"prompt": "prompt", "completion": "completion", "tools": "tools"},
    "alpaca": {"instruction": "instruction", "input": "input", "output": "output"},
    "question_answer": {"question": "question", "answer": "answer"},
    "text": {"text": "text"},
    "preference": {"prompt": "prompt", "chosen": "chosen", "rejected": "rejected"},
    "prompt_answer": {"prompt": "prompt", "answer": "answer"},
}
REQUIRED_ROLES = {
    "messages": ["messages"], "sharegpt": ["messages"], "prompt_completion": ["prompt", "completion"],
    "alpaca": ["instruction", "output"], "question_answer": ["question", "answer"], "text": ["text"],
    "preference": ["chosen", "rejected"], "prompt_answer": ["prompt", "answer"],
}
KIND_OF_FORMAT = {
    "messages": "conversational", "sharegpt": "conversational", "prompt_completion": "prompt_completion",
    "alpaca": "prompt_completion", "question_answer": "prompt_completion", "text": "text",
    "preference": "preference", "prompt_answer": "prompt_answer",
}


@dataclass
class Detected:
    format: str
    fields: dict[str, str]

    @property
    def kind(self) -> str:
        return KIND_OF_FORMAT[self.format]


def _first_non_null(rows: list[dict], column: str) -> Any:
    return next((r.get(column) for r in rows if r.get(column) is not None), None)


def _turn_keys(value: Any) -> set[str]:
    value = as_turns(value)
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
    if fmt == "prompt_answer":
        fields["prompt"] = next((c for c in PROMPT_COLUMNS if c in cols), "prompt")
        fields["answer"] = next((c for c in REFERENCE_COLUMNS if c in cols), "answer")
    if fmt == "question_answer":
        fields["question"] = next((c for c in QUESTION_COLUMNS if c in cols), "question")
        fields["answer"] = next((c for c in ANSWER_COLUMNS if c in cols), "answer")
    fields.update(overrides)
    if "tools" in fields and fields["tools"] not in cols:  # optional: only a column that is there
        del fields["tools"]
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


def detect_format(columns: list[str], sample: list[dict], cfg: DataSection, method: str = "sft") -> Detected:
    """Choose the format from the columns (or check the explicit `data.format` + `data.fields`).

    With `data.format: auto`, a `data.fields` mapping narrows the choice to the formats that
    have those fields, so `fields: {question: q, answer: a}` works without naming the format.
    GRPO reads every dataset as prompt_answer (a prompt, and the answer its rewards check).
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
        for fmt in (("prompt_answer",) if method == "grpo" else DETECT_ORDER):
            if not set(overrides) <= set(DEFAULT_FIELDS[fmt]):
                continue
            fields = _candidate_fields(fmt, cols, overrides)
            if all(fields[role] in cols for role in REQUIRED_ROLES[fmt]):
                if fmt == "messages" and {"from", "value"} <= _turn_keys(_first_non_null(sample, fields["messages"])):
                    fmt = "sharegpt"
                det = Detected(fmt, fields)
                break
        if det is None and method == "grpo":
            fields = _candidate_fields("prompt_answer", cols, overrides)
            missing = [role for role in REQUIRED_ROLES["prompt_answer"] if fields[role] not in cols]
            raise DataError(
                f"data: GRPO needs a prompt and the answer its rewards check, and the dataset has no column for "
                f"{' or '.join(missing)}. Columns found: {', '.join(columns) or '(none)'}. Prompts are read from "
                f"{'/'.join(PROMPT_COLUMNS[:5])}/messages, answers from {'/'.join(REFERENCE_COLUMNS)}; map yours "
                "with --set data.fields.prompt=<column> --set data.fields.answer=<column>.")
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
            and not isinstance(as_turns(_first_non_null(sample, det.fields["chosen"])), list):
        raise DataError(
            f"data: preference pairs given as plain text need a prompt column, and there is no "
            f"'{det.fields['prompt']}'. Columns found: {', '.join(columns)}. Map it with "
            "--set data.fields.prompt=<column>, or give chosen/rejected as whole conversations (lists of messages)."
        )
    return det


def check_method_fits(method: str, kind: str, fmt: str, columns: list[str]) -> None:
    """The one rule for data vs training.method: DPO needs preference pairs, SFT refuses them.

    `prepare()` applies it before anything is written; the wizard asks it about a dataset it peeked at.
    """
    if method == "dpo" and kind != "preference":
        raise DataError(f"training.method is 'dpo' but the dataset looks like {fmt!r} "
                        f"(columns: {', '.join(columns)}). DPO needs preference pairs: "
                        "`chosen` and `rejected` columns (and usually `prompt`).")
    if method == "sft" and kind == "preference":
        raise DataError("training.method is 'sft' but the dataset holds preference pairs (chosen/rejected). "
                        "Use --set training.method=dpo, or an SFT dataset.")
    if method != "grpo" and kind == "prompt_answer":
        raise DataError(f"training.method is {method!r} but data.format is 'prompt_answer' (prompts with answers to "
                        "check, GRPO's data). Use --set training.method=grpo, or another format.")
    if method == "grpo" and kind != "prompt_answer":
        raise DataError(f"training.method is 'grpo' but the dataset was read as {fmt!r}. GRPO needs prompts and the "
                        "answers its rewards check: set --set data.format=prompt_answer (or auto).")


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


def _says_something(m: dict) -> bool:
    return bool(m["content"].strip() or m.get("tool_calls"))


def _check_conversation(messages: list[dict]) -> str:
    if not any(m["role"] == "assistant" and _says_something(m) for m in messages):
        return "no non-empty assistant turn"
    if not any(m["role"] == "user" and m["content"].strip() for m in messages):
        return "no non-empty user turn"
    return ""


def _with_system(messages: list[dict], system_prompt: str | None) -> list[dict]:
    if system_prompt and not (messages and messages[0]["role"] == "system"):
        return [turn("system", system_prompt), *messages]
    return messages


def _split_prompt(messages: list[dict]) -> tuple[list[dict], list[dict]]:
    """Preference rows given as whole chats: the prompt is everything before the last assistant turn."""
    last = max(i for i, m in enumerate(messages) if m["role"] == "assistant")
    return messages[:last], messages[last:]


def normalize_row(row: dict, det: Detected, cfg: DataSection,
                  default_tools: str | None = None) -> tuple[dict | None, str, list[str]]:
    """One raw row -> (TRL-format row, "", []) or (None, why it was dropped, its unknown roles as written).

    Conversations (and conversational prompt/completion rows) also get `tools`: the row's own tool list, else
    `default_tools` (data.tools), as canonical JSON text, or None.
    """
    try:
        out, why = _normalize_row(row, det, cfg)
        if out is not None and det.kind in ("conversational", "prompt_completion"):
            own = tools_list(row.get(det.fields["tools"])) if "tools" in det.fields else None
            out["tools"] = own or default_tools
        return out, why, []
    except UnknownRoles as e:
        return None, UNKNOWN_ROLE, e.names
    except BadToolData as e:
        return None, str(e), []


def _normalize_row(row: dict, det: Detected, cfg: DataSection) -> tuple[dict | None, str]:
    fmt, f = det.format, det.fields
    if fmt in ("messages", "sharegpt"):
        msgs, why = norm_turns(row.get(f["messages"]), fmt == "sharegpt", cfg.roles)
        if msgs is None:
            return None, why
        why = _check_conversation(msgs)
        return (None, why) if why else ({"messages": _with_system(msgs, cfg.system_prompt)}, "")
    if fmt == "text":
        text = text_of(row.get(f["text"]))
        return (None, "empty text") if not text or not text.strip() else ({"text": text}, "")
    if fmt == "preference":
        return _normalize_preference(row, f, cfg)
    if fmt == "prompt_answer":
        return _normalize_prompt_answer(row, f, cfg)
    if fmt == "prompt_completion":
        prompt_raw, completion_raw = as_turns(row.get(f["prompt"])), as_turns(row.get(f["completion"]))
        if isinstance(prompt_raw, list) or isinstance(completion_raw, list):  # already TRL's conversational form
            return _normalize_chat_pair(prompt_raw, completion_raw, cfg)
        prompt, completion = text_of(prompt_raw), text_of(completion_raw)
    elif fmt == "alpaca":
        instruction, extra = text_of(row.get(f["instruction"])), text_of(row.get(f.get("input", "input")))
        prompt = instruction if not extra or not extra.strip() else f"{instruction}\n\n{extra}"
        completion = text_of(row.get(f["output"]))
    else:  # question_answer
        prompt, completion = text_of(row.get(f["question"])), text_of(row.get(f["answer"]))
    if not prompt or not prompt.strip():
        return None, "empty prompt"
    if not completion or not completion.strip():
        return None, "empty completion"
    p = _with_system([turn("user", prompt)], cfg.system_prompt)
    return {"prompt": p, "completion": [turn("assistant", completion)]}, ""


def _normalize_chat_pair(prompt_raw: Any, completion_raw: Any, cfg: DataSection) -> tuple[dict | None, str]:
    prompt, prompt_why = norm_turns(prompt_raw, False, cfg.roles)
    completion, completion_why = norm_turns(completion_raw, False, cfg.roles)
    tool_problem = next((w for w in (prompt_why, completion_why) if w in TOOL_REASONS), "")
    if tool_problem:
        return None, tool_problem
    if prompt is None or not any(m["role"] == "user" and m["content"].strip() for m in prompt):
        return None, "empty prompt"
    if completion is None or not any(m["role"] == "assistant" and _says_something(m) for m in completion):
        return None, "empty completion"
    return {"prompt": _with_system(prompt, cfg.system_prompt), "completion": completion}, ""


NO_ANSWER = "no answer to check"
PROMPT_NOT_USER = "prompt does not end with a user turn"


def _normalize_prompt_answer(row: dict, f: dict[str, str], cfg: DataSection) -> tuple[dict | None, str]:
    """GRPO's rows: the prompt as turns that end with a user turn (a string becomes one user turn), the answer as
    text. The data's other columns are added by the caller: reward functions receive them."""
    raw = as_turns(row.get(f["prompt"]))
    if isinstance(raw, list):
        prompt, why = norm_turns(raw, False, cfg.roles)
        if prompt is None:
            return None, why or "prompt is not valid turns"
        if not prompt or prompt[-1]["role"] != "user":
            return None, PROMPT_NOT_USER
        if not prompt[-1]["content"].strip():
            return None, "empty prompt"
    else:
        text = text_of(raw)
        if not text or not text.strip():
            return None, "empty prompt"
        prompt = [turn("user", text)]
    answer = text_of(row.get(f["answer"]))
    if not answer or not answer.strip():
        return None, NO_ANSWER
    return {"prompt": _with_system(prompt, cfg.system_prompt), "answer": answer}, ""


def _normalize_preference(row: dict, f: dict[str, str], cfg: DataSection) -> tuple[dict | None, str]:
    """Preference pairs as text, as messages (TRL's prompt/chosen/rejected), or as whole chats."""
    chosen_raw, rejected_raw = as_turns(row.get(f["chosen"])), as_turns(row.get(f["rejected"]))
    prompt_raw = as_turns(row.get(f["prompt"]))
    if isinstance(chosen_raw, list) or isinstance(rejected_raw, list):
        chosen, _ = norm_turns(chosen_raw, False, cfg.roles)
        rejected, _ = norm_turns(rejected_raw, False, cfg.roles)
        if chosen is None or rejected is None:
            return None, "chosen/rejected are not valid turns"
        if not any(m["role"] == "assistant" for m in chosen) or not any(m["role"] == "assistant" for m in rejected):
            return None, "chosen/rejected have no assistant turn"
        if chosen[0]["role"] != "assistant":  # whole chats (UltraFeedback style): split the shared prompt off
            prompt, chosen = _split_prompt(chosen)
            _, rejected = _split_prompt(rejected)
        elif isinstance(prompt_raw, list):
            prompt, _ = norm_turns(prompt_raw, False, cfg.roles)
            if prompt is None:
                return None, "prompt is not valid turns"
        else:
            text = text_of(prompt_raw)
            if not text or not text.strip():
                return None, "empty prompt"
            prompt = [turn("user", text)]
    else:
        text, c, r = text_of(prompt_raw), text_of(chosen_raw), text_of(rejected_raw)
        if not text or not text.strip():
            return None, "empty prompt"
        if not c or not c.strip() or not r or not r.strip():
            return None, "empty chosen or rejected"
        prompt = [turn("user", text)]
        chosen, rejected = [turn("assistant", c)], [turn("assistant", r)]
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
