"""Chat turns: a list of {role, content} (or ShareGPT {from, value}) turns, and the roles they may have.

A role the chat template does not know drops the row; the names are collected so the error can say
which roles were found and the `data.roles` setting that maps them. Every turn comes out as
{role, content, tool_calls}: tool calls (OpenAI `tool_calls` / `function_call`, ShareGPT `function_call`
turns) in the one shape `tools.py` gives them, None on a turn without calls.
"""

from __future__ import annotations

import json
import math
from typing import Any

from smolforge.data.tools import ORPHAN_RESULT, BadToolData, canonical_json, tool_calls, without_nulls

SHAREGPT_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant",
                  "model": "assistant", "chatgpt": "assistant", "bing": "assistant", "bard": "assistant",
                  "system": "system", "function_call": "assistant", "observation": "tool", "tool": "tool"}
SHAREGPT_CALL = "function_call"  # ShareGPT's turn that holds a call (its value: the call as JSON), not text
STANDARD_ROLES = ("system", "user", "assistant", "tool")
# Only for suggesting a data.roles fix: nothing is mapped without the user saying so (ShareGPT aside).
ROLE_GUESSES = {**SHAREGPT_ROLES, "bot": "assistant", "ai": "assistant", "agent": "assistant", "sys": "system",
                "developer": "system", "usr": "user", "prompter": "user", "function": "tool", "ipython": "tool",
                "observation": "tool"}
UNKNOWN_ROLE = "unknown role"  # the drop reason; the roles themselves are counted apart


def as_turns(value: Any) -> Any:
    """A turn list stored as a JSON string (CSV files cannot hold lists) becomes the list."""
    if isinstance(value, str) and value.lstrip().startswith("["):
        try:
            parsed = json.loads(value)
        except ValueError:
            return value
        if isinstance(parsed, list) and parsed and all(isinstance(t, dict) for t in parsed):
            return parsed
    return value


def text_of(value: Any) -> str | None:
    """A cell as text: strings as they are, numbers written out; anything else (None, NaN, lists) is no text."""
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, (int, float)) and not (isinstance(value, float) and math.isnan(value)):
        return str(value)
    return None


def turn(role: str, content: str) -> dict:
    """A turn without tool calls, in the shape every normalised turn has."""
    return {"role": role, "content": content, "tool_calls": None}


class UnknownRoles(Exception):
    """Turns whose role is not one the chat template knows (after data.roles); carries the names as written."""

    def __init__(self, names: list[str]):
        super().__init__(", ".join(names))
        self.names = names


def _turn(t: dict, sharegpt: bool, roles: dict[str, str]) -> tuple[str | None, str, Any, Any]:
    """(standard role or None, the role as written, content, raw tool calls) of one turn; data.roles wins."""
    if sharegpt or ("from" in t and "role" not in t):  # ShareGPT: from/value, also read from role/content
        raw, content = t.get("from", t.get("role")), t.get("value", t.get("content"))
        defaults: dict[str, str] = SHAREGPT_ROLES
        calls = None
        if str(raw).lower() == SHAREGPT_CALL:  # the value is the call itself
            content, calls = "", content
    else:
        raw, content = t.get("role"), t.get("content")
        defaults = {r: r for r in STANDARD_ROLES}
        calls = t.get("tool_calls") or t.get("function_call")
    name = "" if raw is None else str(raw)
    return roles.get(name) or roles.get(name.lower()) or defaults.get(name.lower()), name, content, calls


def norm_turns(turns: Any, sharegpt: bool, roles: dict[str, str]) -> tuple[list[dict] | None, str]:
    """Turns as [{role, content, tool_calls}]; raises UnknownRoles naming every role it could not place."""
    turns = as_turns(turns)
    if not isinstance(turns, list) or not turns:
        return None, "empty or not a list of turns"
    out, unknown, why, called = [], [], "", False
    for t in turns:
        if not isinstance(t, dict):
            return None, "a turn is not a mapping"
        role, name, content, raw_calls = _turn(t, sharegpt, roles)
        text = text_of(content)
        calls = None
        if role == "assistant" and raw_calls:
            try:
                calls = tool_calls(raw_calls)
            except BadToolData as e:
                why = why or str(e)
            text = "" if text is None else text  # a turn that only calls a tool has no text
            called = True
        if role == "tool":
            if text is None and isinstance(content, (dict, list)):
                text = canonical_json(without_nulls(content))  # a structured tool result, as JSON
            if not called:
                why = why or ORPHAN_RESULT
        if role is None:
            unknown += [name] if name not in unknown else []
        elif text is None:
            why = why or "a turn has no text content"
        else:
            out.append({"role": role, "content": text, "tool_calls": calls})
    if unknown:
        raise UnknownRoles(unknown)
    return (None, why) if why else (out, "")


def unknown_roles_help(found: dict[str, int], fmt: str) -> str:
    """Which roles were found (rows with each), which are accepted, and the data.roles settings that fix it."""
    ordered = sorted(found.items(), key=lambda x: -x[1])
    listed = ", ".join(f"{name or '(no role)'} ({n:,} row{'s' if n != 1 else ''})" for name, n in ordered)
    any_role = "<" + "|".join(STANDARD_ROLES) + ">"
    fixes = " ".join(f"--set data.roles.{name}={ROLE_GUESSES.get(name.lower(), any_role)}"
                     for name, _ in ordered if name)
    text = f"Roles the chat template does not know: {listed}; accepted: {', '.join(STANDARD_ROLES)}. "
    text += f"Map each one with data.roles, e.g. {fixes}" if fixes else "Give every turn a role"
    if fmt != "sharegpt" and all(name.lower() in SHAREGPT_ROLES for name in found):
        text += ", or read the turns as ShareGPT (human/gpt) with --set data.format=sharegpt"
    return text + "."
