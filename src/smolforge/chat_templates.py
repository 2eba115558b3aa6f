"""The chat templates smolforge ships: read from the package's resources, one function each, so the tokenizer
loader (`modelio`), the tiny model (`tiny`) and the exports all use the same text."""

from __future__ import annotations

import hashlib
from importlib import resources
from typing import Any

# HuggingFaceTB/SmolLM3-3B's chat_template.jinja (the revision that reads `tools=` as xml_tools): a base whose
# template is exactly this gets `official_with_tool_calls()`, which renders everything else byte for byte alike.
OFFICIAL_SMOLLM3_SHA256 = "3e0e275a527f249670056e0078e474eadbdd007c134b4fdfae5a7b3089702814"


def _resource(name: str) -> str:
    return resources.files("smolforge").joinpath(f"resources/{name}").read_text("utf-8")


def training_chat_template() -> str:
    """smolforge's SmolLM3-compatible chat template that marks assistant turns for assistant-only loss and renders
    tool definitions, structured tool calls and tool results as SmolLM3 does."""
    return _resource("smollm3_training.jinja")


def official_with_tool_calls() -> str:
    """SmolLM3's official template plus what it lacks for training: structured `tool_calls` rendered as SmolLM3's
    <tool_call> text, and the loss mark opened after the assistant header."""
    return _resource("smollm3_official_tools.jinja")


def is_official_smollm3(template: str | None) -> bool:
    return template is not None and hashlib.sha256(template.encode()).hexdigest() == OFFICIAL_SMOLLM3_SHA256


def renders_tool_calls(template: str | None) -> bool:
    """Whether a template reads structured tool calls at all (one that does not drops them without a word)."""
    return template is not None and "tool_calls" in template


# A tool conversation as training data holds it (structured call, tool result, `tools=`): the GGUF parity check
# renders it, and the card shows how the saved template writes it.
TOOL_EXAMPLE: tuple[list[dict[str, Any]], list[dict[str, Any]]] = (
    [{"role": "user", "content": "Weather in Paris?"},
     {"role": "assistant", "content": "", "tool_calls": [
         {"type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}]},
     {"role": "tool", "content": "21 C, sunny"},
     {"role": "assistant", "content": "It is 21 degrees in Paris."},
     {"role": "user", "content": "And tomorrow?"}],
    [{"type": "function", "function": {"name": "get_weather", "description": "The weather in a city.",
                                       "parameters": {"type": "object",
                                                      "properties": {"city": {"type": "string"}}}}}],
)
