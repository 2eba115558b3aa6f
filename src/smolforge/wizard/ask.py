"""Ask for one setting: the prompt, its default and its check all come from the setting's declaration.

`ask(draft, path)` shows the setting's title and description, offers the draft's current value
(or a derived default), and checks the answer with the same parsing, bounds and message as a flag
or `--set` (`config.fields`). A choice becomes a select, a list of words a comma list, a list of
texts one text, and a setting whose flag reads @FILE reads it here too.
"""

from __future__ import annotations

from typing import Any

from smolforge.config import fields
from smolforge.userinput import read_text_or_file
from smolforge.wizard import prompts
from smolforge.wizard.draft import Draft

# How a choice is described in a select (the values are the schema's own).
CHOICE_LABELS: dict[str, dict[Any, str]] = {
    "training.method": {"sft": "SFT: supervised fine-tuning on conversations or prompt/answer pairs",
                        "dpo": "DPO: preference tuning on chosen/rejected answer pairs",
                        "grpo": "GRPO: reinforcement learning; sampled answers scored by reward functions"},
    "training.finetune": {"full": "full fine-tune: all weights (best quality, most memory)",
                          "lora": "LoRA: small adapters (~1% of the weights; fits smaller GPUs, quick to share)",
                          "qlora": "QLoRA: LoRA adapters over a 4-bit base (least memory; needs bitsandbytes)"},
    "publish.private": {True: "private (only you and your organisation see it)", False: "public"},
}


def parser(setting: fields.Setting, one_item: bool = False):
    """Typed text -> the setting's value (or, with `one_item`, one item of a list setting), or ValueError with
    the setting's own message. An empty answer is None (no value) for optional settings and items."""

    def parse(raw: str) -> Any:
        text = raw.strip()
        try:
            if text and setting.flag is not None and setting.flag.file:
                text = read_text_or_file(text)
            if one_item:
                return setting.check_items([text])[0] if text else None
            if setting.is_list:
                return setting.check_items([t.strip() for t in text.split(",") if t.strip()])
            return setting.check_text(text)
        except fields.SettingError as e:
            raise ValueError("; ".join(e.lines)) from None
        except ValueError as e:  # an @FILE that cannot be read
            raise ValueError(f"{setting.path}: {e}") from None

    return parse


def _instruction(setting: fields.Setting, extra: str | None, one_item: bool = False) -> str | None:
    parts = [extra] if extra else []
    if setting.flag is not None and setting.flag.file:
        parts.append("@FILE reads a file")
    if one_item:
        parts.append("optional")
    elif setting.is_list:
        parts.append("comma-separated, optional")
    elif setting.optional:
        parts.append("Enter for none")
    return f"({'; '.join(parts)})" if parts else None


def ask(draft: Draft, path: str, default: Any = None, instruction: str | None = None) -> Any:
    """Ask for `path`, store the answer in the draft and return it."""
    setting = fields.setting(path)
    current = draft.get(path) if default is None else default
    message = f"{setting.title}:"
    if (setting.choices is not None and not setting.is_list) or isinstance(current, bool):
        labels = CHOICE_LABELS.get(path, {})
        options = setting.choices if setting.choices is not None else [True, False]
        value = prompts.select(message, [(labels.get(c, str(c)), c) for c in options], default=current)
    elif setting.is_list and setting.flag is not None and setting.flag.file:  # a list of texts: ask the first one
        items = list(current or [])
        first = _text(message, setting, items[0] if items else None, instruction, one_item=True)
        value = ([first] if first else []) + items[1:]
    elif setting.is_list:
        value = prompts.text(message, parser(setting), default=", ".join(str(v) for v in current or []),
                             instruction=_instruction(setting, instruction))
    else:
        value = _text(message, setting, current, instruction)
    draft.set(path, value)
    return value


def _text(message: str, setting: fields.Setting, existing: Any, instruction: str | None,
          one_item: bool = False) -> Any:
    """A one-line prompt; a multi-line value (from a file) is kept when the answer is empty."""
    parse = parser(setting, one_item)
    if isinstance(existing, str) and "\n" in existing:
        lines = existing.count("\n") + 1
        value = prompts.text(message, parse, instruction=f"(Enter keeps the current {lines}-line text)")
        return existing if value is None else value
    return prompts.text(message, parse, default="" if existing is None else str(existing),
                        instruction=_instruction(setting, instruction, one_item))


def shown(value: Any, limit: int = 90) -> str:
    """A value as the summary shows it."""
    if value is None or value == [] or value == "":
        return "(none)"
    if isinstance(value, bool):
        return "yes" if value else "no"
    text = ", ".join(str(v) for v in value) if isinstance(value, list) else str(value)
    one = " ".join(text.split())
    return one if len(one) <= limit else one[: limit - 3] + "..."
