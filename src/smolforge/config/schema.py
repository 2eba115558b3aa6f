"""The schema of smolforge.yaml: every setting, declared once, with its type, bounds, description
and (where it has one) its command-line flag.

Presets are YAML files validated by it, `--set`, the `run`/`init`/`card` flags and the wizard's
prompts read their types, bounds, help and messages from it, `smolforge run` trains exactly what
it holds, and config.yaml in a run folder is its resolved dump. Importing it stays cheap (no torch).
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from annotated_types import Le
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator

from smolforge.card.licenses import check_license_link, check_license_name, license_id
from smolforge.config.flag import CARD_COMMANDS, RUN_ONLY, Flag, space_id_from_url
from smolforge.identifiers import ExperimentName, RepoId, Tag

Steps = Annotated[int, Field(gt=0, le=10**9)]
LicenseId = Annotated[str, AfterValidator(license_id)]
LicenseName = Annotated[str, AfterValidator(check_license_name)]
LicenseLink = Annotated[str, AfterValidator(check_license_link)]


def _max_steps(value: int) -> int:
    if value == 0 or value < -1:
        raise ValueError("must be -1 (train for `epochs`) or a positive number of optimizer steps")
    return value


def _utf8(value: Any) -> Any:
    """Text must be writable as UTF-8 (argv can smuggle in lone surrogates from invalid bytes)."""
    for item in value if isinstance(value, list) else [value]:
        if isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                raise ValueError("contains bytes that are not valid UTF-8 text; retype it or fix the file "
                                 "encoding") from None
    return value


_ENDPOINT = re.compile(r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?):([0-9]{1,5})")


def _endpoint(value: str | None) -> str | None:
    """HOST:PORT (an IPv6 host in brackets), as torchrun's rendezvous takes it."""
    if value is None:
        return None
    m = _ENDPOINT.fullmatch(value.strip())
    if not m or not 0 < int(m.group(2)) < 65536:
        raise ValueError("must be HOST:PORT, the address of node 0 and a free port on it (e.g. node0:29400 or "
                         "10.0.0.1:29400)")
    return value.strip()


# Settings that say where this process joins a run, not what the run trains: they differ from node to node and
# between a run and its resume, so --resume accepts them and runs are compared without them.
LAUNCH_SETTINGS = ("training.node_rank", "training.rdzv_endpoint", "training.rdzv_timeout")

SETTING_CONFIG = ConfigDict(allow_inf_nan=False)  # a setting is never nan or inf


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True, **SETTING_CONFIG)


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
    "auto", "messages", "sharegpt", "prompt_completion", "alpaca", "question_answer", "text", "preference"
]


class DataSection(Section):
    name: Annotated[str, Flag("--dataset")] = Field(
        "builtin", min_length=1, title="Dataset",
        description="A Hub dataset id, a local .jsonl/.json/.csv/.parquet file or folder, or `builtin`.")
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


class LoraSection(Section):
    r: int = Field(16, gt=0, le=4096, description="LoRA rank.")
    alpha: int = Field(32, gt=0, le=65536, description="LoRA scaling (alpha / r multiplies the update).")
    dropout: float = Field(0.05, ge=0.0, lt=1.0, description="Dropout on the LoRA inputs.")
    target_modules: list[str] | Literal["all-linear"] = Field(
        "all-linear", description="Linear layers that get adapters, by name, or all-linear.")
    merge: bool = Field(False, description="Merge the adapter into full weights at the end.")


class DpoSection(Section):
    beta: float = Field(0.1, gt=0.0, le=100.0, description="DPO temperature: how far the policy may move from "
                                                           "the reference.")
    loss_type: Literal["sigmoid", "ipo", "hinge"] = Field("sigmoid", description="DPO loss variant.")


class TrainingSection(Section):
    method: Annotated[Literal["sft", "dpo"], Flag("--method")] = Field(
        "sft", title="Training method", description="sft (supervised fine-tuning) or dpo (preference pairs).")
    finetune: Annotated[Literal["full", "lora", "qlora"], Flag("--finetune")] = Field(
        "full", title="Which weights train",
        description="full (all weights), lora (small adapters) or qlora (LoRA adapters over the base held in "
                    "4-bit NF4 with double quantization, via bitsandbytes: for a base that does not fit otherwise).")
    epochs: Annotated[float, Flag("--epochs", implies=(("training.max_steps", -1),))] = Field(
        1.0, gt=0, le=1000, title="Epochs", description="Passes over the training data (when max_steps is -1).")
    max_steps: Annotated[int, AfterValidator(_max_steps), Flag("--max-steps")] = Field(
        -1, le=10**9, title="Optimizer steps", description="Optimizer steps; -1 trains for `epochs` instead.")
    batch_size: Annotated[int, Flag("--batch-size")] = Field(
        8, gt=0, le=4096, title="Batch size", description="Sequences per device per optimizer micro-step.")
    gradient_accumulation_steps: Annotated[int, Flag("--gradient-accumulation-steps")] = Field(
        1, gt=0, le=4096, title="Gradient accumulation steps",
        description="Micro-steps accumulated per optimizer update (a bigger batch without more memory).")
    learning_rate: Annotated[float, Flag("--learning-rate")] = Field(
        2e-5, gt=0.0, le=1.0, title="Learning rate", description="Peak learning rate, e.g. 2e-5 (full fine-tune) "
                                                                 "or 2e-4 (LoRA).")
    lr_scheduler: Literal["linear", "cosine", "constant", "constant_with_warmup", "cosine_with_min_lr"] = Field(
        "cosine", description="Learning-rate schedule after warm-up.")
    warmup_ratio: float = Field(0.03, ge=0.0, lt=1.0, description="Share of the steps spent warming up.")
    weight_decay: float = Field(0.0, ge=0.0, le=10.0, description="AdamW weight decay.")
    max_grad_norm: float = Field(1.0, gt=0.0, description="Gradient clipping norm.")
    max_length: Annotated[int, Flag("--max-length")] = Field(
        2048, gt=0, le=1_048_576, title="Max length",
        description="Tokens per sequence; longer rows are truncated (checked against the data and the model).")
    batching: Literal["auto", "padded", "grouped", "padding_free", "packed"] = Field(
        "auto", description="How rows form batches; auto: padding-free for SFT, padded for DPO.")
    precision: Literal["auto", "fp32", "bf16", "fp16"] = Field(
        "auto", description="auto: bf16 on GPUs that support it, fp32 on CPU.")
    activation_checkpointing: bool | Literal["auto"] = Field(
        "auto", description="Recompute activations to save memory; auto: on for GPUs.")
    liger_kernel: bool | Literal["auto"] = Field(
        "auto", description="Liger's Triton kernels for RMSNorm, RoPE and SwiGLU (TRL's use_liger_kernel; the loss "
                            "is TRL's fused LM head either way); CUDA only. auto: on for a CUDA GPU when the "
                            "liger-kernel package is installed.")
    logging_steps: Steps = Field(10, description="Log the training loss every this many steps.")
    eval_steps: Steps | None = Field(None, description="Evaluate every this many steps; unset: about 10 times.")
    save_steps: Steps = Field(500, description="Save a resumable checkpoint every this many steps.")
    save_total_limit: int = Field(2, gt=0, le=1000, description="Checkpoints kept on disk.")
    seed: int = Field(42, description="Training seed (initial order, dropout).")
    nproc: Annotated[int, Flag("--nproc")] = Field(1, gt=0, le=1024, description="Training processes per node "
                                                                                 "(one per GPU), started by "
                                                                                 "torchrun.")
    nnodes: Annotated[int, Flag("--nnodes", on=RUN_ONLY)] = Field(
        1, gt=0, le=4096, description="Machines that train together. Each runs the same `smolforge run` with its own "
                                      "node_rank, and every node must see the run folder on a shared filesystem.")
    node_rank: Annotated[int, Flag("--node-rank", on=RUN_ONLY)] = Field(
        0, ge=0, lt=4096, description="This machine's place among the nodes, 0 to nnodes - 1. Node 0 hosts the "
                                      "rendezvous, creates the run folder and runs the stages after training.")
    rdzv_endpoint: Annotated[str | None, AfterValidator(_endpoint), Flag("--rdzv-endpoint", on=RUN_ONLY)] = Field(
        None, description="HOST:PORT of node 0, where the nodes meet (torchrun's c10d rendezvous); needed when "
                          "nnodes > 1.")
    rdzv_timeout: Annotated[int, Flag("--rdzv-timeout", on=RUN_ONLY)] = Field(
        600, gt=0, le=86400, description="Seconds a node waits for the others (and for the run folder node 0 "
                                         "creates) before it stops with an error.")
    global_batch_size: Annotated[int | None, Flag("--global-batch-size")] = Field(
        None, gt=0, le=10**7, description="Sequences per optimizer step over every process of every node. When "
                                          "set, gradient_accumulation_steps is derived from it (global_batch_size / "
                                          "(batch_size x nproc x nnodes)), so the run trains the same on any "
                                          "topology; unset: batch_size x gradient_accumulation_steps x processes.")
    distributed: Literal["ddp", "fsdp"] = Field("ddp", description="How several processes share the work: ddp "
                                                                    "(a full copy each) or fsdp (weights, gradients "
                                                                    "and optimizer state sharded; full fine-tunes).")
    lora: LoraSection = Field(default_factory=LoraSection)
    dpo: DpoSection = Field(default_factory=DpoSection)

    @property
    def adapters(self) -> bool:
        """Whether LoRA adapters train instead of the weights (lora, and qlora over a 4-bit base)."""
        return self.finetune in ("lora", "qlora")

    @property
    def four_bit_base(self) -> bool:
        """Whether the frozen base trains in 4-bit NF4 (qlora)."""
        return self.finetune == "qlora"

    @property
    def world_size(self) -> int:
        """Training processes over all nodes."""
        return self.nnodes * self.nproc

    @property
    def global_batch(self) -> int:
        """Sequences per optimizer step over all processes."""
        return self.batch_size * self.gradient_accumulation_steps * self.world_size

    @model_validator(mode="after")
    def _topology(self) -> TrainingSection:
        if self.node_rank >= self.nnodes:
            raise ValueError(f"node_rank {self.node_rank} is not below nnodes {self.nnodes}: the nodes of this run are "
                             f"numbered 0 to {self.nnodes - 1}")
        if self.nnodes > 1 and self.rdzv_endpoint is None:
            raise ValueError(f"nnodes {self.nnodes} needs rdzv_endpoint, the HOST:PORT of node 0 where the nodes meet "
                             "(e.g. --rdzv-endpoint node0:29400), the same on every node")
        if self.distributed == "fsdp" and self.adapters:
            raise ValueError(f"distributed 'fsdp' shards the weights of a full fine-tune; a {self.finetune} run trains "
                             "small adapters and runs as ddp (set distributed: ddp)")
        if self.global_batch_size is not None:
            # assigned through __dict__: a derived value, and validate_assignment would run this validator again
            self.__dict__["gradient_accumulation_steps"] = _accumulation(self)
            self.__pydantic_fields_set__.add("gradient_accumulation_steps")
        return self


def _accumulation(t: TrainingSection) -> int:
    """gradient_accumulation_steps that makes t.global_batch_size on t's topology, or why none does."""
    goal, per_pass = int(t.global_batch_size or 0), t.batch_size * t.world_size
    where = f"batch_size {t.batch_size} x {t.world_size} processes ({t.nnodes} node(s) x {t.nproc})"
    if goal % per_pass:
        if goal % t.batch_size:
            fix = f"a batch_size that divides {goal}"
        else:
            worlds = [w for w in range(1, goal // t.batch_size + 1) if (goal // t.batch_size) % w == 0]
            fix = ("a world size (nnodes x nproc) that divides " + str(goal // t.batch_size) + ": " +
                   ", ".join(map(str, worlds[:12])) + (", ..." if len(worlds) > 12 else ""))
        raise ValueError(f"global_batch_size {goal} is not a multiple of {where} = {per_pass} sequences per pass; "
                         f"use {fix}, or another global_batch_size")
    steps = goal // per_pass
    most = next(m.le for m in TrainingSection.model_fields["gradient_accumulation_steps"].metadata if isinstance(m, Le))
    if steps > most:
        raise ValueError(f"global_batch_size {goal} needs {steps} accumulation steps with {where}, more than the "
                         f"{most} gradient_accumulation_steps allows; raise batch_size or use more processes")
    return steps


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
        return _utf8(v)

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
EVALUATE = ("evaluate",)


def _unique(values: list[str]) -> list[str]:
    if any(not str(v).strip() for v in values):
        raise ValueError("names must not be empty")
    if len(set(values)) != len(values):
        raise ValueError("each name may appear only once")
    return values


class EvaluationSection(Section):
    """Benchmarks run on the base model and on the fine-tune with identical prompts, items and settings."""

    tasks: Annotated[list[str], AfterValidator(_unique), Flag("--tasks", on=EVALUATE)] = Field(
        default_factory=list, title="Benchmarks",
        description="Tasks to compare base and fine-tune on; empty: no benchmark evaluation. `builtin` (smolforge's "
                    "offline suite), an lm-eval registry name such as `arc_easy` (its data must be cached when "
                    "offline), or a path to an lm-eval task YAML file (e.g. `dataset_path: json` over local JSONL).")
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
        if self.training.nnodes > 1 and not (self.experiment_name or self.output_dir):
            raise ValueError(f"training.nnodes {self.training.nnodes}: every node must name the same run folder, so "
                             "set experiment_name (--experiment-name) or output_dir (--output-dir), the same on "
                             "every node, on a filesystem they all share")
        return self


def dump_dict(cfg: SmolforgeConfig) -> dict[str, Any]:
    """The config as plain data, in schema order, for YAML."""
    return cfg.model_dump(mode="json")


__all__ = ["LAUNCH_SETTINGS", "DataSection", "EvaluationSection", "DpoSection", "LoraSection", "ModelSection",
           "PublishSection", "Quantization", "QuantizeSection", "SmolforgeConfig", "TinySpec", "TrackingSection",
           "TrainingSection",
           "CardSection", "dump_dict"]
