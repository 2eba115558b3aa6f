"""Evaluation: does the fine-tune beat its base, measured the same way?

Public entry points (torch and lm-eval load on first use, inside the functions that need them):

- `evaluate_models(models, tokenizer, settings, out_dir, ...)`: run it and write `evaluation/`.
- `ModelRef`: a model's identity (for the base-results cache) and how to load it.
"""

from __future__ import annotations

from smolforge.evaluation.evaluate_models import evaluate_models
from smolforge.evaluation.models import ModelRef

__all__ = ["ModelRef", "evaluate_models"]
