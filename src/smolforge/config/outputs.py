"""The sections of the schema for what happens around and after training: tracking, the model card, benchmark
evaluation, quantized variants and publishing."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, field_validator, model_validator

from smolforge.config.base import Section, utf8_text
from smolforge.config.flag import CARD_COMMANDS, Flag, space_id_from_url
from smolforge.identifiers import RepoId, Tag, check_license_link, check_license_name, license_id

LicenseId = Annotated[str, AfterValidator(license_id)]
LicenseName = Annotated[str, AfterValidator(check_license_name)]
LicenseLink = Annotated[str, AfterValidator(check_license_link)]


class TrackingSection(Section):
    backend: Annotated[Literal["trackio", "none", "wandb", "tensorboard"], Flag("--tracking")] = Field(
        "trackio", title="Monitoring", description="Where metrics go: trackio (local by default), none, wandb or "
                                                   "tensorboard.")
    project: str | None = Field(None, description="Tracking project; unset: the experiment name.")
    dir: str | None = Field(None, description="trackio's local folder; unset: TRACKIO_DIR or the user's cache.")
    space_id: Annotated[RepoId | None, Flag(("--trackio-url", "--trackio-space"), convert=space_id_from_url,
                                            implies=(("tracking.backend", "trackio"),))] = Field(
        None, title="trackio Space", description="Log to this private trackio Space (URL or user/name).")
    dataset_repo: Annotated[RepoId | None, Flag("--dataset-repo")] = Field(
        None, description="The Hub dataset that persists a trackio Space's metrics (user/name).")


class CardSection(Section):
    model_name: Annotated[str | None, Flag("--model-name", on=CARD_COMMANDS)] = Field(
        None, title="Model name", description="Display name on the card; unset: the repo or experiment name.")
    author_name: Annotated[str | None, Flag("--author-name", on=CARD_COMMANDS)] = Field(
        None, title="Author name", description="Author for the card and the citation; unset: your HF username.")
    model_description: Annotated[str | None, Flag("--model-description", on=CARD_COMMANDS, file=True)] = Field(
        None, title="Model description", description="One or two sentences about the model; unset: a sentence from "
                                                     "the base model, method and dataset.")
    license: Annotated[LicenseId | None, Flag("--license", on=CARD_COMMANDS)] = Field(
        None, title="License", description="A Hub license id (apache-2.0, mit, ...), or `other` with license_name "
                                           "and license_link; unset: the base model's.")
    license_name: Annotated[LicenseName | None, Flag("--license-name", on=CARD_COMMANDS)] = Field(
        None, title="License name", description="Short name of a custom license (with license: other).")
    license_link: Annotated[LicenseLink | None, Flag("--license-link", on=CARD_COMMANDS)] = Field(
        None, title="License link", description="URL or LICENSE file of a custom license (with license: other).")
    language: list[str] = Field(default_factory=lambda: ["en"], description="Languages of the model (ISO codes).")
    tags: Annotated[list[Tag], Flag("--tag", on=CARD_COMMANDS)] = Field(
        default_factory=list, title="Tags", description="Card tags (one word each).")
    intended_use: Annotated[str | None, Flag("--intended-use", on=CARD_COMMANDS, file=True)] = Field(
        None, title="Intended use", description="What the model is for, and for whom (the card's Uses section).")
    out_of_scope: Annotated[str | None, Flag("--out-of-scope", on=CARD_COMMANDS, file=True)] = Field(
        None, title="Out-of-scope use", description="Uses the model is not meant or not fit for.")
    training_data: Annotated[str | None, Flag("--training-data", on=CARD_COMMANDS, file=True)] = Field(
        None, title="Training data", description="What the training data is: its source, content and how it was "
                                                 "collected; unset: a link to the Hub dataset's card, or smolforge's "
                                                 "description of its bundled data.")
    usage_examples: Annotated[list[str], Flag("--usage-example", on=CARD_COMMANDS, file=True)] = Field(
        default_factory=list, title="Usage example", description="Usage text shown on the card.")
    limitations: Annotated[str | None, Flag("--limitations", on=CARD_COMMANDS, file=True)] = Field(
        None, title="Limitations", description="Known limitations of the model.")
    citation: Annotated[str | None, Flag("--citation", on=CARD_COMMANDS, file=True)] = Field(
        None, title="Citation", description="How to cite the model (e.g. BibTeX); unset: a BibTeX entry from the "
                                            "run.")
    template: Annotated[str | None, Flag("--template", on=CARD_COMMANDS)] = Field(
        None, description="A Jinja2 or old-style ({{#if}}) card template file.")

    @field_validator("*", mode="before")
    @classmethod
    def _text(cls, v: Any) -> Any:
        return utf8_text(v)

    @model_validator(mode="after")
    def _custom_license(self) -> CardSection:
        if self.license == "other" and not (self.license_name and self.license_link):
            raise ValueError("license `other` needs card.license_name (a short name, e.g. my-license-1.0) and "
                             "card.license_link (a URL, or a LICENSE file published with the model)")
        return self


class PublishSection(Section):
    repo_id: Annotated[RepoId | None, Flag("--repo-id", on=CARD_COMMANDS)] = Field(
        None, title="Hub repo to publish to", description="Publish the model to this Hub repo (user/name).")
    private: Annotated[bool, Flag("--private/--public")] = Field(
        True, title="Visibility", description="Visibility of a repo smolforge creates (default private).")
    quantized_as: Literal["subfolders", "repos"] = Field(
        "subfolders", description="Quantized variants as subfolders of the repo, or as repos of their own.")
    endpoint: str | None = Field(None, description="Hub URL, for Hub-compatible servers; unset: HF_ENDPOINT or "
                                                   "huggingface.co.")
    gguf_repo_id: RepoId | None = Field(
        None, description="Hub repo for the GGUF variants (user/name); unset: <repo_id>-GGUF.")
    demo_space: Annotated[RepoId | None, Flag("--demo-space")] = Field(
        None, title="Demo Space", description="Publish a Gradio chat demo of the model to this Space (user/name).")


EvalMode = Literal["no_think", "think"]
BUILTIN_SUITE = "builtin"  # smolforge's offline task suite (resources/eval_tasks)
HELD_OUT_TASK = "held-out"  # a GRPO run's held-out prompts, scored by its accuracy reward (evaluation/heldout.py)
NAMED_TASKS = (BUILTIN_SUITE, HELD_OUT_TASK)  # tasks smolforge writes itself: never a registry name or a file
EVALUATE = ("evaluate",)


def _unique(values: list[str]) -> list[str]:
    if any(not str(v).strip() for v in values):
        raise ValueError("names must not be empty")
    if len(set(values)) != len(values):
        raise ValueError("each name may appear only once")
    return values


def looks_like_task_file(spec: str) -> bool:
    """An evaluation task given as a path to an lm-eval task YAML file (not `builtin`, `held-out` or a registry
    name)."""
    if spec in NAMED_TASKS:
        return False
    return spec.endswith((".yaml", ".yml")) or os.sep in spec or Path(spec).is_file()


def _task_list(values: list[str]) -> list[str]:
    """`--tasks ""` is the empty list (no evaluation); a task file's path is stored absolute, as the run folder
    records it, so `smolforge evaluate RUN_DIR` finds it from any folder."""
    if values == [""]:
        return []
    values = _unique(values)
    return [str(Path(v).expanduser().resolve()) if looks_like_task_file(v) else v for v in values]


class EvaluationSection(Section):
    """Benchmarks run on the base model and on the fine-tune with identical prompts, items and settings."""

    tasks: Annotated[list[str], AfterValidator(_task_list), Flag("--tasks", on=EVALUATE)] = Field(
        default_factory=list, title="Benchmarks",
        description="Tasks to compare base and fine-tune on; empty (or --tasks \"\"): no benchmark evaluation. "
                    "`builtin` (smolforge's offline suite), `held-out` (a GRPO run's held-out prompts, answered "
                    "greedily and scored by its accuracy reward), an lm-eval registry name such as `arc_easy` (its "
                    "data must be cached when offline), or a path to an lm-eval task YAML file (e.g. `dataset_path: "
                    "json` over local JSONL), stored absolute.")
    limit: Annotated[int | None, Flag("--limit", on=EVALUATE)] = Field(
        None, gt=0, le=10**7, description="Evaluate at most this many items per task (the first ones in the task's "
                                          "order); unset: all.")
    num_fewshot: int = Field(0, ge=0, le=64, description="Worked examples placed before each item; 0 = zero-shot.")
    modes: Annotated[list[EvalMode], AfterValidator(_unique)] = Field(
        default_factory=lambda: ["no_think"], min_length=1,
        description="Reasoning modes to evaluate in; `think` runs only for chat templates that support it "
                    "(SmolLM3's enable_thinking), and only on generative tasks.")
    variants: bool = Field(False, description="Also evaluate the quantized variants and compare each with the "
                                              "full-precision fine-tune.")
    batch_size: int = Field(8, gt=0, le=4096, description="Sequences per forward pass or generation batch.")
    max_gen_tokens: int | None = Field(None, gt=0, le=65536, description="Cap on generated tokens for generative "
                                                                         "tasks; unset keeps each task's own limit.")
    samples: int = Field(3, ge=3, le=5, description="Rows of the eval split shown as greedy generations, base and "
                                                    "fine-tune side by side.")
    retention_prompts: int = Field(8, ge=0, le=200, description="Prompts per reasoning mode for the check that the "
                                                                "fine-tune still reasons in /think and not in "
                                                                "/no_think; 0 skips it.")
    bootstrap_resamples: int = Field(1000, ge=100, le=100_000, description="Paired bootstrap resamples for each "
                                                                           "difference's 95% confidence interval.")
    seed: int = Field(1234, description="Seed of the bootstrap and of the harness's own random state.")

    @property
    def gen_tokens(self) -> int:
        """Token cap for smolforge's own generations (samples, reasoning check)."""
        return self.max_gen_tokens or 256


Quantization = Literal["int8", "int4", "gguf-f16", "gguf-q8_0", "gguf-q4_k_m"]
GGUF_METHODS = ("gguf-f16", "gguf-q8_0", "gguf-q4_k_m")


class QuantizeSection(Section):
    """Quantized copies of the fine-tune, each measured against it. `quantize: [int8]` (the list form of older
    configs) is read as `quantize: {methods: [int8]}`."""

    methods: Annotated[list[Quantization], Flag("--quantize")] = Field(
        default_factory=list, title="Quantized variants",
        description="Quantized copies to make: int8 (torchao, CPU or GPU), int4 (torchao, CUDA), gguf-f16, gguf-q8_0, "
                    "gguf-q4_k_m (llama.cpp / Ollama files).")
    max_quality_drop: float = Field(
        0.1, gt=0.0, le=100.0, title="Largest quality drop published",
        description="Fidelity gate for GGUF variants: the largest relative perplexity increase over the "
                    "full-precision fine-tune, measured on the eval split (0.1 = 10%). A variant above it is kept "
                    "locally and published only with `smolforge publish --force`.")
    gguf_eval_rows: int = Field(
        64, gt=0, le=100_000, description="Eval-split rows scored by both llama.cpp and transformers to measure a "
                                          "GGUF variant's quality drop (the first ones, in the split's order).")

    @model_validator(mode="before")
    @classmethod
    def _list_form(cls, value: Any) -> Any:
        if isinstance(value, list):
            return {"methods": value}
        if isinstance(value, str):
            raise ValueError(f"a list is expected; write it in brackets, e.g. --set 'quantize=[{value}]'")
        return value
