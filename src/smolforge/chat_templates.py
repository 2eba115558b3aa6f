"""The chat templates smolforge ships: read from the package's resources, one function each, so the tokenizer
loader (`modelio`), the tiny model (`tiny`) and the exports all use the same text."""

from __future__ import annotations

import hashlib
from importlib import resources

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
