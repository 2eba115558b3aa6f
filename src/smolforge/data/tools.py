"""Tool calling in the data: structured tool calls, tool results and tool definitions, checked and canonicalised.

SmolLM3 emits a call as `<tool_call>\n{"name": ..., "arguments": {...}}\n</tool_call>` and reads tool definitions
from its system turn. The data arrives in several shapes (OpenAI `tool_calls` with arguments as an object or a
JSON string, the older `function_call`, ShareGPT `function_call`/`observation` turns, a `tools` list per row or
per file); each becomes one shape, so the chat template renders every source alike: a call is
{"type": "function", "function": {"name": str, "arguments": canonical JSON text}}, and a row's tools are its
list of function schemas as canonical JSON text (the form TRL reads from a `tools` column).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from smolforge.errors import DataError

# Drop reasons (counted; the report names them)
BAD_ARGUMENTS = "tool call arguments are not a JSON object"
NO_NAME = "tool call without a function name"
ORPHAN_RESULT = "tool result with no preceding tool call"
BAD_TOOLS = "tools is not a list of function schemas"
TOOL_REASONS = (BAD_ARGUMENTS, NO_NAME, ORPHAN_RESULT, BAD_TOOLS)


class BadToolData(Exception):
    """A tool call, result or tool list that cannot be used; the message is the row's drop reason."""


def canonical_json(value: Any) -> str:
    """JSON text as transformers' `tojson` writes it (so a template that re-serialises an object agrees)."""
    return json.dumps(value, ensure_ascii=False)


def without_nulls(value: Any) -> Any:
    """An object read through Arrow without the null keys Arrow adds: JSON rows are read into one schema, so an
    object gets every key any row's object has, null where its own has none. (A null the data meant is lost too;
    give arguments and tools as JSON strings to keep those.)"""
    if isinstance(value, dict):
        return {k: without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [without_nulls(v) for v in value]
    return value


def _arguments(raw: Any) -> str:
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return "{}"
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except ValueError:
            raise BadToolData(BAD_ARGUMENTS) from None
    else:
        raw = without_nulls(raw)
    if not isinstance(raw, dict):
        raise BadToolData(BAD_ARGUMENTS)
    return canonical_json(raw)


def tool_call(raw: Any) -> dict:
    """One call in any accepted shape -> {"type": "function", "function": {"name", "arguments"}}."""
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except ValueError:
            raise BadToolData(BAD_ARGUMENTS) from None
    if not isinstance(raw, dict):
        raise BadToolData(NO_NAME)
    fn = raw.get("function") if isinstance(raw.get("function"), dict) else raw
    name = fn.get("name")
    if not isinstance(name, str) or not name.strip():
        raise BadToolData(NO_NAME)
    args = fn.get("arguments", fn.get("parameters"))
    return {"type": "function", "function": {"name": name, "arguments": _arguments(args)}}


def tool_calls(raw: Any) -> list[dict]:
    """A turn's calls: a list of calls, one call, or a JSON string of either (ShareGPT's function_call value)."""
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except ValueError:
            raise BadToolData(BAD_ARGUMENTS) from None
    calls = raw if isinstance(raw, list) else [raw]
    if not calls:
        raise BadToolData(NO_NAME)
    return [tool_call(c) for c in calls]


def function_of(schema: dict) -> dict | None:
    """The function part of a tool schema: OpenAI's {"type": "function", "function": {...}} or a bare function."""
    fn = schema.get("function") if isinstance(schema.get("function"), dict) else schema
    return fn if isinstance(fn.get("name"), str) and fn["name"].strip() else None


def tools_list(raw: Any) -> str | None:
    """A row's tools as canonical JSON text, None when it has none; BadToolData when it is not function schemas."""
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return None
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except ValueError:
            raise BadToolData(BAD_TOOLS) from None
    else:
        raw = without_nulls(raw)
    if not isinstance(raw, list) or not all(isinstance(t, dict) and function_of(t) for t in raw):
        raise BadToolData(BAD_TOOLS)
    return canonical_json(raw) if raw else None


def tool_definition_parts(tools_json: str | None) -> list[list[str]]:
    """For each tool, the texts a template that lists it must write, however it formats the schema: the function's
    name, its description and its parameters' names (a call's text holds the name and the arguments, not the
    description, so a template that drops the definitions cannot pass on the call alone)."""
    out = []
    for schema in json.loads(tools_json) if tools_json else []:
        fn = function_of(schema) or {}
        params = fn.get("parameters") or {}
        props = params.get("properties") if isinstance(params, dict) else None
        description = fn.get("description")
        out.append([fn.get("name", ""), *([description] if isinstance(description, str) and description else []),
                    *(list(props) if isinstance(props, dict) else [])])
    return out


def load_tools_file(path: str) -> str:
    """data.tools: a JSON file holding a list of function schemas, given to every row without its own."""
    file = Path(path).expanduser()
    try:
        raw = json.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(f"data.tools: {path} does not exist. Give a JSON file with a list of function schemas "
                        "(OpenAI style: [{\"type\": \"function\", \"function\": {\"name\": ..., \"parameters\": "
                        "{...}}}]), or leave data.tools unset.") from None
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise DataError(f"data.tools: {path} is not readable JSON ({str(e).splitlines()[0]}). Give a JSON file "
                        "with a list of function schemas.") from None
    if isinstance(raw, dict) and isinstance(raw.get("tools"), list):
        raw = raw["tools"]
    try:
        text = tools_list(raw)
    except BadToolData:
        text = None
    if text is None:
        raise DataError(f"data.tools: {path} does not hold a list of function schemas (each an object with a "
                        "`name`, or {\"type\": \"function\", \"function\": {\"name\": ...}}). Fix the file, or leave "
                        "data.tools unset.")
    return text
