"""The template-survival check: does the chat template keep everything in a row, and does the loss mask cover the
assistant's turns and nothing else?

A chat template renders only what it knows: SmolLM3's official template writes no structured tool calls, many
templates drop `system` turns or tool results, and a template's loss marks can miss a turn. TRL trains on whatever
the template rendered, so such a row would train on an empty answer without a word. Each row is rendered here as
TRL renders it (transformers' renderer, the row's tools and reasoning switch) and checked: every turn's text,
every tool call's name and arguments and every tool definition (its name, description and parameter names)
appear in the text; with assistant-only loss, each assistant turn lies inside the marked spans and no other
turn's text does. What a row loses becomes its drop reason.
"""

from __future__ import annotations

import json
import re
from typing import Any, NamedTuple

from smolforge.data.tools import tool_definition_parts

REASONING_FLAGS = re.compile(r"/no_think|/think")  # SmolLM3's templates take these out of the system prompt
MARKS = re.compile(r"\{%-?\s*generation\s*-?%\}")  # the loss marks transformers' renderer reads
LOST = "chat template drops"  # drop reasons start with one of these two
MASK = "loss mask"


class LostRow(NamedTuple):
    position: int  # in the split as prepared
    index: int  # in the file (0-based): what a message names
    excerpt: str
    why: str


def has_loss_marks(template: Any) -> bool:
    return isinstance(template, str) and MARKS.search(template) is not None


def template_reasons(reasons: dict[str, int]) -> dict[str, int]:
    """The drop reasons that come from this check."""
    return {k: v for k, v in reasons.items() if k.startswith((LOST, MASK))}


def _text_forms(turn: dict) -> list[str]:
    text = (turn.get("content") or "").strip()
    if not text:
        return []
    if turn["role"] == "system":
        return [text, REASONING_FLAGS.sub("", text).strip()]
    return [text]


def _call_forms(call: dict) -> tuple[str, list[str]]:
    """A call's name and the ways its arguments may be written: the canonical JSON object, compact, or quoted."""
    fn = call.get("function") or call
    args = fn.get("arguments") or "{}"
    try:
        obj = json.loads(args) if isinstance(args, str) else args
    except ValueError:
        obj = None
    forms = [args if isinstance(args, str) else json.dumps(args, ensure_ascii=False)]
    if obj is not None:
        forms += [json.dumps(obj, ensure_ascii=False), json.dumps(obj, ensure_ascii=False, separators=(",", ":"))]
    forms += [json.dumps(f, ensure_ascii=False)[1:-1] for f in list(forms)]  # a template that writes it as a string
    return fn.get("name", ""), forms


def _found(forms: list[str], text: str) -> bool:
    return not forms or any(f and f in text for f in forms)


def render(messages: list[dict], tokenizer: Any, tools: list | None, kwargs: dict,
           marks: bool) -> tuple[str, list[tuple[int, int]]]:
    """The text TRL's tokenisation starts from, and the character spans the template marks for the loss."""
    from transformers.utils.chat_template_utils import render_jinja_template

    template_kwargs = {**tokenizer.special_tokens_map, **kwargs}
    rendered, spans = render_jinja_template(conversations=[messages], tools=tools,
                                            chat_template=tokenizer.chat_template,
                                            return_assistant_tokens_mask=marks, **template_kwargs)
    return rendered[0], (spans[0] if spans else [])


def _lost_in(messages: list[dict], text: str, tools_json: str | None) -> str:
    for turn in messages:
        if not _found(_text_forms(turn), text):
            return f"{LOST} {turn['role']} text"
        for call in turn.get("tool_calls") or []:
            name, forms = _call_forms(call)
            if name not in text or not _found(forms, text):
                return f"{LOST} a tool call"
    for parts in tool_definition_parts(tools_json):
        if not all(p in text for p in parts):
            return f"{LOST} a tool definition"
    return ""


def _mask_problem(messages: list[dict], text: str, spans: list[tuple[int, int]]) -> str:
    marked = [text[a:b] for a, b in spans]
    said: list[str] = []  # everything the assistant writes: what another turn's text may coincide with
    for turn in messages:
        if turn["role"] != "assistant":
            continue
        forms = _text_forms(turn)
        calls = [_call_forms(c)[0] for c in turn.get("tool_calls") or []]
        said += forms + calls
        if any(not any(f in span for span in marked) for f in forms + calls):
            return f"{MASK} misses assistant text"
    for turn in messages:
        if turn["role"] == "assistant":
            continue
        for f in _text_forms(turn):
            if any(f in span for span in marked) and not any(f in s for s in said):
                return f"{MASK} covers {turn['role']} text"
    return ""


def lost(row: dict, kind: str, tokenizer: Any, loss_on: str, marks: bool) -> str:
    """What the chat template loses of this row ("" when nothing): the row's drop reason."""
    if kind == "text":
        return ""  # plain text is tokenised as it is
    kwargs = dict(row.get("chat_template_kwargs") or {})
    tools_json = row.get("tools")
    tools = json.loads(tools_json) if tools_json else None
    if kind == "conversational":
        conversations = [row["messages"]]
    elif kind == "prompt_completion":
        conversations = [row["prompt"] + row["completion"]]
    elif kind == "prompt_answer":
        conversations = [row["prompt"]]
    else:
        conversations = [row["prompt"] + row["chosen"], row["prompt"] + row["rejected"]]
    for messages in conversations:
        with_marks = marks and kind == "conversational" and loss_on == "assistant"
        text, spans = render(messages, tokenizer, tools, kwargs, with_marks)
        why = _lost_in(messages, text, tools_json)
        if not why and with_marks:
            why = _mask_problem(messages, text, spans)
        if why:
            return why
    return ""


def excerpt(row: dict, width: int = 60) -> str:
    """A short, one-line excerpt of a row (its first user text) for messages that name rows."""
    turns = row.get("messages") or row.get("prompt") or []
    text = next((t["content"] for t in turns if t.get("role") == "user" and t.get("content")), None)
    text = " ".join((text or row.get("text") or "").split())
    return text if len(text) <= width else text[: width - 1] + "…"
