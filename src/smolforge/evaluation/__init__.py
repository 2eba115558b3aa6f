"""Evaluation: does the fine-tune beat its base, measured the same way?

Public entry points (cheap to import; torch and lm-eval load on first use):

- `evaluate_models(models, tokenizer, settings, out_dir, ...)`: run it and write `evaluation/`.
- `ModelRef`: a model's identity (for the base-results cache) and how to load it.
"""

from __future__ import annotations

from typing import Any

from smolforge.evaluation.models import ModelRef
from smolforge.evaluation.run import evaluate_models

__all__ = ["ModelRef", "evaluate_models"]


def __getattr__(name: str) -> Any:
    """`evaluate_models` is imported on first use: it pulls in numpy, rich and the task code."""
    if name == "evaluate_models":
        return evaluate_models
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
