"""The schema of smolforge.yaml: one pydantic model per section.

This is the single source of truth: presets are YAML files validated by it, the wizard writes
YAML that it validates, `smolforge run` trains exactly what it holds, and config.yaml in a run
folder is its resolved dump. Importing this module must stay cheap (no torch).
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

REPO_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,95}/[A-Za-z0-9][A-Za-z0-9_.-]{0,95}")  # use fullmatch
EXPERIMENT_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")  # use fullmatch

PositiveInt = Annotated[int, Field(gt=0)]


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class TinySpec(Section):
    """Size of the locally built tiny SmolLM3 (used when model.name_or_path is `tiny`)."""

    hidden_size: PositiveInt = 128
    intermediate_size: PositiveInt = 384
    num_layers: PositiveInt = 4
    num_heads: PositiveInt = 4
    num_kv_heads: PositiveInt = 2
    vocab_size: Annotated[int, Field(ge=300, le=65536)] = 1024
    max_position_embeddings: PositiveInt = 2048
    seed: int = 0

    @model_validator(mode="after")
    def _heads_divide(self) -> TinySpec:
        if self.hidden_size % self.num_heads:
            raise ValueError(f"hidden_size ({self.hidden_size}) must be divisible by num_heads ({self.num_heads})")
        if self.num_heads % self.num_kv_heads:
            raise ValueError(f"num_heads ({self.num_heads}) must be divisible by num_kv_heads ({self.num_kv_heads})")
        return self


class ModelSection(Section):
    name_or_path: str = "HuggingFaceTB/SmolLM3-3B"
    revision: str | None = None
    trust_remote_code: bool = False
    attn_implementation: Literal["auto", "sdpa", "eager", "flash_attention_2", "varlen_sdpa"] = "auto"
    license: str | None = None  # the base model's license, when not detectable
    tiny: TinySpec = Field(default_factory=TinySpec)

    @property
    def is_tiny(self) -> bool:
        return self.name_or_path == "tiny"


DataFormat = Literal[
    "auto", "messages", "sharegpt", "prompt_completion", "alpaca", "question_answer", "text", "preference"
]


class DataSection(Section):
    name: str = "builtin"  # `builtin`, a Hub dataset id, or a local .jsonl/.json/.csv/.parquet file or folder
    config: str | None = None
    split: str = "train"
    eval_split: str | None = None  # None: the dataset's validation/test split if any, else split off by eval_ratio
    eval_ratio: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.1
    format: DataFormat = "auto"
    fields: dict[str, str] = Field(default_factory=dict)  # role -> column, e.g. {prompt: question}
    # a turn's role in the data -> the role the chat template knows, e.g. {human: user, bot: assistant}
    roles: dict[str, Literal["system", "user", "assistant", "tool"]] = Field(default_factory=dict)
    max_samples: PositiveInt | None = None
    seed: int = 42
    min_tokens: Annotated[int, Field(ge=0)] = 0
    max_tokens: PositiveInt | None = None  # drop (not truncate) longer rows; None keeps them and truncates
    system_prompt: str | None = None
    reasoning: Literal["auto", "think", "no_think"] = "auto"
    loss_on: Literal["auto", "assistant", "completion", "all"] = "auto"


class LoraSection(Section):
    r: PositiveInt = 16
    alpha: PositiveInt = 32
    dropout: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.05
    target_modules: list[str] | Literal["all-linear"] = "all-linear"
    merge: bool = False  # merge the adapter into full weights at the end


class DpoSection(Section):
    beta: Annotated[float, Field(gt=0.0)] = 0.1
    loss_type: Literal["sigmoid", "ipo", "hinge"] = "sigmoid"


class TrainingSection(Section):
    method: Literal["sft", "dpo"] = "sft"
    finetune: Literal["full", "lora"] = "full"
    epochs: Annotated[float, Field(gt=0)] = 1.0
    max_steps: int = -1  # >0 overrides epochs
    batch_size: PositiveInt = 8
    gradient_accumulation_steps: PositiveInt = 1
    learning_rate: Annotated[float, Field(gt=0.0, le=1.0)] = 2e-5
    lr_scheduler: Literal["linear", "cosine", "constant", "constant_with_warmup", "cosine_with_min_lr"] = "cosine"
    warmup_ratio: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.03
    weight_decay: Annotated[float, Field(ge=0.0)] = 0.0
    max_grad_norm: Annotated[float, Field(gt=0.0)] = 1.0
    max_length: PositiveInt = 2048
    batching: Literal["auto", "padded", "grouped", "padding_free", "packed"] = "auto"
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    activation_checkpointing: bool | Literal["auto"] = "auto"
    logging_steps: PositiveInt = 10
    eval_steps: PositiveInt | None = None  # None: evaluate once per ~10% of training
    save_steps: PositiveInt = 500
    save_total_limit: PositiveInt = 2
    seed: int = 42
    nproc: PositiveInt = 1
    distributed: Literal["ddp", "fsdp"] = "ddp"
    lora: LoraSection = Field(default_factory=LoraSection)
    dpo: DpoSection = Field(default_factory=DpoSection)

    @field_validator("max_steps")
    @classmethod
    def _steps(cls, v: int) -> int:
        if v == 0 or v < -1:
            raise ValueError("must be -1 (train for `epochs`) or a positive number of optimizer steps")
        return v


class TrackingSection(Section):
    backend: Literal["trackio", "none", "wandb", "tensorboard"] = "trackio"
    project: str | None = None  # default: the experiment name
    dir: str | None = None  # trackio's local folder; default TRACKIO_DIR or the user's cache
    space_id: str | None = None  # a private trackio Space, only when set
    dataset_repo: str | None = None  # the Hub dataset that persists a Space's metrics

    @field_validator("space_id", "dataset_repo")
    @classmethod
    def _repo(cls, v: str | None) -> str | None:
        if v is not None and not REPO_ID_RE.fullmatch(v):
            raise ValueError("must look like `user/name` (letters, digits, '-', '_', '.')")
        return v


class CardSection(Section):
    model_name: str | None = None
    author_name: str | None = None
    model_description: str | None = None
    license: str | None = None  # a Hub license identifier, or `other` with license_name + license_link
    license_name: str | None = None
    license_link: str | None = None
    language: list[str] = Field(default_factory=lambda: ["en"])
    tags: list[str] = Field(default_factory=list)
    usage_examples: list[str] = Field(default_factory=list)
    limitations: str | None = None
    citation: str | None = None
    template: str | None = None  # path to a Jinja2 or old-style ({{#if}}) template

    @field_validator("*")
    @classmethod
    def _utf8(cls, v: Any) -> Any:
        return _encodable(v)


def _encodable(value: Any) -> Any:
    """Text must be writable as UTF-8 (argv can smuggle in lone surrogates from invalid bytes)."""
    for item in value if isinstance(value, list) else [value]:
        if isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                raise ValueError("contains bytes that are not valid UTF-8 text; retype it or fix the file "
                                 "encoding") from None
    return value


class PublishSection(Section):
    repo_id: str | None = None
    private: bool = True
    quantized_as: Literal["subfolders", "repos"] = "subfolders"
    endpoint: str | None = None
    demo_space: str | None = None

    @field_validator("repo_id", "demo_space")
    @classmethod
    def _repo(cls, v: str | None) -> str | None:
        if v is not None and not REPO_ID_RE.fullmatch(v):
            raise ValueError("must look like `user/name` (letters, digits, '-', '_', '.'; at most 96 each)")
        return v


class SmolforgeConfig(Section):
    """A whole smolforge.yaml."""

    preset: str | None = None  # the preset this config was built from (recorded as training_config_type)
    experiment_name: str | None = None  # default: <model>-<method>-<YYYYmmdd-HHMMSS>
    output_dir: str | None = None  # default: runs/<experiment_name>
    model: ModelSection = Field(default_factory=ModelSection)
    data: DataSection = Field(default_factory=DataSection)
    training: TrainingSection = Field(default_factory=TrainingSection)
    tracking: TrackingSection = Field(default_factory=TrackingSection)
    card: CardSection = Field(default_factory=CardSection)
    quantize: list[Literal["int8", "int4"]] = Field(default_factory=list)
    publish: PublishSection = Field(default_factory=PublishSection)

    @field_validator("experiment_name")
    @classmethod
    def _exp(cls, v: str | None) -> str | None:
        if v is not None and not EXPERIMENT_RE.fullmatch(v):
            raise ValueError("use letters, digits, '-', '_' or '.', starting with a letter or digit (max 128)")
        return v

    @model_validator(mode="after")
    def _coherent(self) -> SmolforgeConfig:
        if self.training.method == "dpo" and self.data.format not in ("auto", "preference"):
            raise ValueError("training.method 'dpo' needs data.format 'preference' (or 'auto')")
        return self


def dump_dict(cfg: SmolforgeConfig) -> dict[str, Any]:
    """The config as plain data, in schema order, for YAML."""
    return cfg.model_dump(mode="json")
