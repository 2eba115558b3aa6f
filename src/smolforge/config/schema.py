"""The schema of smolforge.yaml: every setting, declared once, with its type, bounds, description
and (where it has one) its command-line flag.

Presets are YAML files validated by it, `--set`, the `run`/`init`/`card` flags and the wizard's
prompts read their types, bounds, help and messages from it, `smolforge run` trains exactly what
it holds, and config.yaml in a run folder is its resolved dump. Importing it stays cheap (no torch).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, model_validator

from smolforge.config.base import Section
from smolforge.config.flag import Flag
from smolforge.config.outputs import (
    HELD_OUT_TASK,
    CardSection,
    EvaluationSection,
    LicenseId,
    PublishSection,
    QuantizeSection,
    TrackingSection,
)
from smolforge.config.training import DpoSection, GrpoSection, LoraSection, TrainingSection
from smolforge.identifiers import ExperimentName


class TinySpec(Section):
    """Size of the locally built tiny SmolLM3 (used when model.name_or_path is `tiny`)."""

    hidden_size: int = Field(128, gt=0, le=8192, description="Width of the tiny model.")
    intermediate_size: int = Field(384, gt=0, le=32768, description="MLP width of the tiny model.")
    num_layers: int = Field(4, gt=0, le=64, description="Decoder layers of the tiny model.")
    num_heads: int = Field(4, gt=0, le=128, description="Attention heads of the tiny model.")
    num_kv_heads: int = Field(2, gt=0, le=128, description="Key/value heads (grouped-query attention).")
    vocab_size: int = Field(1024, ge=300, le=65536, description="BPE vocabulary trained on the bundled chats.")
    max_position_embeddings: int = Field(2048, gt=0, le=131072, description="Longest sequence the tiny model takes.")
    seed: int = Field(0, description="Seed of the random initial weights.")

    @model_validator(mode="after")
    def _heads_divide(self) -> TinySpec:
        if self.hidden_size % self.num_heads:
            raise ValueError(f"hidden_size ({self.hidden_size}) must be divisible by num_heads ({self.num_heads})")
        if self.num_heads % self.num_kv_heads:
            raise ValueError(f"num_heads ({self.num_heads}) must be divisible by num_kv_heads ({self.num_kv_heads})")
        return self


class ModelSection(Section):
    name_or_path: Annotated[str, Flag("--base-model")] = Field(
        "HuggingFaceTB/SmolLM3-3B", min_length=1, title="Base model",
        description="Hub model id, a local model folder, or `tiny` (built locally, trains on a CPU).")
    revision: str | None = Field(None, description="Hub revision (branch, tag or commit) of the base model.")
    trust_remote_code: bool = Field(False, description="Run the model repo's own Python code (only for repos you "
                                                       "trust).")
    attn_implementation: Literal["auto", "sdpa", "eager", "flash_attention_2", "varlen_sdpa"] = Field(
        "auto", description="Attention kernel; auto picks per-document attention for padding-free batches.")
    license: LicenseId | None = Field(
        None, description="The base model's license (a Hub license id), when it cannot be detected.")
    tiny: TinySpec = Field(default_factory=TinySpec)

    @property
    def is_tiny(self) -> bool:
        return self.name_or_path == "tiny"


DataFormat = Literal[
    "auto", "messages", "sharegpt", "prompt_completion", "alpaca", "question_answer", "text", "preference",
    "prompt_answer",
]


class DataSection(Section):
    name: Annotated[str, Flag("--dataset")] = Field(
        "builtin", min_length=1, title="Dataset",
        description="A Hub dataset id, a local .jsonl/.json/.csv/.parquet file or folder, or a bundled dataset: "
                    "`builtin` (chats), `builtin-answers` (questions, half answered wrong), `builtin-prompts` "
                    "(questions with checkable answers, for GRPO).")
    config: Annotated[str | None, Flag("--dataset-config")] = Field(
        None, title="Dataset config (subset)", description="The Hub dataset's config (subset).")
    revision: str | None = Field(None, description="Hub revision (branch, tag or commit) of the dataset; "
                                                   "`smolforge reproduce` pins the commit a run used.")
    split: str = Field("train", min_length=1, description="The split to train on.")
    eval_split: str | None = Field(None, description="The split to evaluate on; unset: the dataset's validation/"
                                                     "test split if any, else data.eval_ratio held out.")
    eval_ratio: float = Field(0.1, ge=0.0, lt=1.0, description="Share of the training split held out for "
                                                                "evaluation when there is no eval split.")
    format: DataFormat = Field("auto", description="The data's format; auto detects it from the columns.")
    fields: dict[str, str] = Field(default_factory=dict, description="Which column each field of the format "
                                                                     "reads, e.g. {question: q, answer: a}.")
    roles: dict[str, Literal["system", "user", "assistant", "tool"]] = Field(
        default_factory=dict, description="A turn's role in the data -> the role the chat template knows, e.g. "
                                          "{human: user, bot: assistant}.")
    dedup: bool = Field(True, description="Remove exact duplicate rows (same text after lower-casing and collapsing "
                                          "whitespace) before the train/eval split, and eval rows that copy a "
                                          "training row.")
    max_samples: Annotated[int | None, Flag("--max-samples")] = Field(
        None, gt=0, le=10**12, title="Max training samples", description="Train on a seeded sample of at most this "
                                                                         "many rows; unset: all rows.")
    seed: int = Field(42, description="Seed of the sample and of the held-out split.")
    min_tokens: int = Field(0, ge=0, le=10**7, description="Drop rows shorter than this (chat-template tokens).")
    max_tokens: int | None = Field(None, gt=0, le=10**7, description="Drop (not truncate) rows longer than this; "
                                                                      "unset keeps them and truncates.")
    system_prompt: str | None = Field(None, description="A system prompt added to every conversation.")
    reasoning: Literal["auto", "think", "no_think"] = Field(
        "auto", description="SmolLM3 reasoning mode per row: auto thinks where the answer has a <think> trace.")
    loss_on: Literal["auto", "assistant", "completion", "all"] = Field(
        "auto", description="Which tokens carry the loss; auto: assistant turns, completions, or all for text.")
    tools: str | None = Field(None, description="A JSON file with a list of function schemas (OpenAI style), the "
                                                "tools of every conversation that has no `tools` of its own.")
    on_template_loss: Literal["auto", "drop", "error"] = Field(
        "auto", description="A row the chat template renders without some of its content (a turn, a tool call, a "
                            "tool) or whose loss mask misses an assistant turn: drop it (counted), stop (error), or "
                            "auto: drop up to 1% of the rows, stop above that.")


class SmolforgeConfig(Section):
    """A whole smolforge.yaml."""

    preset: str | None = Field(None, description="The preset this config starts from.")
    experiment_name: Annotated[ExperimentName | None, Flag("--experiment-name")] = Field(
        None, title="Experiment name", description="Names the run folder; unset: <model>-<method>-<timestamp>.")
    output_dir: Annotated[str | None, Flag("--output-dir")] = Field(
        None, description="The run folder; unset: runs/<experiment_name>.")
    model: ModelSection = Field(default_factory=ModelSection)
    data: DataSection = Field(default_factory=DataSection)
    training: TrainingSection = Field(default_factory=TrainingSection)
    tracking: TrackingSection = Field(default_factory=TrackingSection)
    card: CardSection = Field(default_factory=CardSection)
    evaluation: EvaluationSection = Field(default_factory=EvaluationSection)
    quantize: QuantizeSection = Field(default_factory=QuantizeSection)
    publish: PublishSection = Field(default_factory=PublishSection)

    @model_validator(mode="after")
    def _coherent(self) -> SmolforgeConfig:
        if self.training.method == "dpo" and self.data.format not in ("auto", "preference"):
            raise ValueError("training.method 'dpo' needs data.format 'preference' (or 'auto')")
        if self.training.method == "grpo" and self.data.format not in ("auto", "prompt_answer"):
            raise ValueError("training.method 'grpo' needs data.format 'prompt_answer' (or 'auto'): prompts and the "
                             "answers the rewards check")
        if self.training.method != "grpo" and self.data.format == "prompt_answer":
            raise ValueError("data.format 'prompt_answer' (prompts with answers to check) is GRPO's data; use "
                             "training.method grpo, or another format")
        if HELD_OUT_TASK in self.evaluation.tasks and self.training.method != "grpo":
            raise ValueError(f"evaluation.tasks: `{HELD_OUT_TASK}` scores a GRPO run's held-out prompts against their "
                             f"answers; this run's training.method is {self.training.method!r}. Remove it, or name "
                             "`builtin`, a registry task or a task file instead")
        if self.training.nnodes > 1 and not (self.experiment_name or self.output_dir):
            raise ValueError(f"training.nnodes {self.training.nnodes}: every node must name the same run folder, so "
                             "set experiment_name (--experiment-name) or output_dir (--output-dir), the same on "
                             "every node, on a filesystem they all share")
        return self


def dump_dict(cfg: SmolforgeConfig) -> dict[str, Any]:
    """The config as plain data, in schema order, for YAML."""
    return cfg.model_dump(mode="json")


__all__ = ["CardSection", "DataSection", "DpoSection", "EvaluationSection", "GrpoSection", "LoraSection",
           "ModelSection",
           "PublishSection", "QuantizeSection", "SmolforgeConfig", "TinySpec", "TrackingSection", "TrainingSection",
           "dump_dict"]
