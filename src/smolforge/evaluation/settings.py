"""The `evaluation:` config section: what to measure and how, the same for every model compared.

Self-contained (no import of the main schema) so it can move into `config.py` as one piece.
Importing it must stay cheap: no torch, no lm-eval.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

PositiveInt = Annotated[int, Field(gt=0)]
Mode = Literal["no_think", "think"]
BUILTIN_SUITE = "builtin"


class EvaluationSection(BaseModel):
    """Benchmarks run on the base model and on the fine-tune with identical prompts, items and settings."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    tasks: list[str] = Field(
        default_factory=lambda: [BUILTIN_SUITE],
        description="Tasks to run: `builtin` (smolforge's offline suite), an lm-eval registry name such as "
                    "`arc_easy` (its data must be in the Hugging Face cache when offline), or a path to an "
                    "lm-eval task YAML file (e.g. `dataset_path: json` over local JSONL files).",
    )
    limit: PositiveInt | None = Field(
        None,
        description="Evaluate at most this many items per task (the first ones in the task's order); unset = "
                    "all. A limit above a task's size uses the whole task and says so in the results.",
    )
    num_fewshot: Annotated[int, Field(ge=0)] = Field(
        0, description="Worked examples placed before each item (as earlier chat turns); 0 = zero-shot.",
    )
    modes: list[Mode] = Field(
        default_factory=lambda: ["no_think"],
        description="Reasoning modes to evaluate in. `think` runs only for chat templates that support it "
                    "(SmolLM3's `enable_thinking`), and only on generative tasks: log-likelihood scoring has "
                    "no room for reasoning.",
    )
    variants: bool = Field(
        False, description="Also evaluate the quantized variants and compare each with the full-precision fine-tune.",
    )
    batch_size: PositiveInt = Field(8, description="Sequences per forward pass or generation batch.")
    max_gen_tokens: PositiveInt | None = Field(
        None,
        description="Cap on generated tokens for generative tasks; unset keeps each task's own limit. Sample "
                    "generations and the reasoning check use this value, or 256 when unset.",
    )
    samples: Annotated[int, Field(ge=3, le=5)] = Field(
        3, description="Rows of the eval split shown as greedy generations, base and fine-tune side by side.",
    )
    retention_prompts: Annotated[int, Field(ge=0, le=200)] = Field(
        8,
        description="Prompts per reasoning mode for the check that the fine-tune still answers `/think` with "
                    "a well-formed <think>...</think> block and `/no_think` without one; 0 skips the check.",
    )
    bootstrap_resamples: Annotated[int, Field(ge=100, le=100_000)] = Field(
        1000, description="Paired bootstrap resamples for the 95% confidence interval of each difference.",
    )
    seed: int = Field(
        1234, description="Seed for the bootstrap and for the harness's own random state (few-shot sampling).",
    )

    @field_validator("tasks")
    @classmethod
    def _tasks(cls, v: list[str]) -> list[str]:
        if not v:
            raise ValueError("list at least one task (`builtin` is the offline suite)")
        if any(not t.strip() for t in v):
            raise ValueError("task names must not be empty")
        if len(set(v)) != len(v):
            raise ValueError("each task may appear only once")
        return v

    @field_validator("modes")
    @classmethod
    def _modes(cls, v: list[str]) -> list[str]:
        if not v:
            raise ValueError("list at least one mode (`no_think` or `think`)")
        if len(set(v)) != len(v):
            raise ValueError("each mode may appear only once")
        return v

    @property
    def gen_tokens(self) -> int:
        """Token cap for smolforge's own generations (samples, reasoning check)."""
        return self.max_gen_tokens or 256
