"""The chat templates smolforge ships: read from the package's resources, one function each, so the tokenizer
loader (`modelio`), the tiny model (`tiny`) and the exports all use the same text."""

from __future__ import annotations

from importlib import resources


def training_chat_template() -> str:
    """smolforge's SmolLM3-compatible chat template that marks assistant turns for assistant-only loss."""
    return resources.files("smolforge").joinpath("resources/smollm3_training.jinja").read_text("utf-8")
