"""The `training:` section of the schema: method, which weights train, batches, schedule, precision, the
process topology (nodes, processes, rendezvous), and the LoRA and DPO settings."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Literal

from annotated_types import Le
from pydantic import AfterValidator, Field, model_validator

from smolforge.config.base import Section
from smolforge.config.flag import RUN_ONLY, Flag

Steps = Annotated[int, Field(gt=0, le=10**9)]

# Settings that say where this process joins a run, not what the run trains: they differ from node to node and
# between a run and its resume, so --resume accepts them and runs are compared without them.
LAUNCH_SETTINGS = ("training.node_rank", "training.rdzv_endpoint", "training.rdzv_timeout")


def _max_steps(value: int) -> int:
    if value == 0 or value < -1:
        raise ValueError("must be -1 (train for `epochs`) or a positive number of optimizer steps")
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
    loss_type: Literal["sigmoid", "ipo", "hinge", "apo_zero", "apo_down"] = Field(
        "sigmoid", description="Preference loss (TRL's DPO loss_type): sigmoid is DPO's own; apo_zero and apo_down "
                               "are Anchored Preference Optimization, the loss of SmolLM3's own preference stage "
                               "(apo_zero when the chosen answers are better than the model's, apo_down when not).")


BUILTIN_REWARDS = ("accuracy", "think_format", "length")


def split_reward(name: str) -> tuple[str, str] | None:
    """`path/to/file.py:function` -> (path, function); None for a built-in's name."""
    if ":" not in name:
        return None
    path, _, function = name.rpartition(":")
    return path, function


def _rewards(names: list[str]) -> list[str]:
    """Built-in names as they are; a function's file stored absolute (as the run folder records it), so a resume
    or `smolforge reproduce` from another folder finds it."""
    out = []
    for name in names:
        parts = split_reward(name)
        if parts is None and name not in BUILTIN_REWARDS:
            raise ValueError(f"{name!r} is not a built-in reward ({', '.join(BUILTIN_REWARDS)}); name your own "
                             "function as path/to/file.py:function_name")
        if parts is not None and (not parts[0].endswith(".py") or not parts[1].isidentifier()):
            raise ValueError(f"{name!r} must be path/to/file.py:function_name (a Python file, a colon, the "
                             "function's name)")
        out.append(name if parts is None else f"{Path(parts[0]).expanduser().resolve()}:{parts[1]}")
    if len(set(out)) != len(out):
        raise ValueError("names a reward twice; give each once (reward_weights weighs them)")
    return out


class GrpoSection(Section):
    rewards: Annotated[list[str], AfterValidator(_rewards)] = Field(
        default_factory=lambda: ["accuracy"], min_length=1,
        description="Reward functions, added up (weighted by reward_weights): accuracy (the final answer, after any "
                    "</think>, checked against the row's answer: by value with math-verify for maths, by normalised "
                    "text otherwise), think_format (one closed <think> block then an answer in /think mode, no "
                    "reasoning in /no_think mode; the mode is data.reasoning), length (a soft penalty beyond "
                    "length_target tokens), or your own function as path/to/file.py:function (TRL's signature: "
                    "completions, prompts and the data's other columns as keyword arguments -> one float per "
                    "completion).")
    reward_weights: list[float] | None = Field(
        None, description="One weight per reward, in order; unset: 1.0 each.")
    num_generations: int = Field(
        8, ge=2, le=1024, description="Completions sampled per prompt, the group whose rewards are compared. "
                                      "training.batch_size counts completions, so the global batch must be a "
                                      "multiple of this.")
    max_completion_length: int = Field(
        512, gt=0, le=131072, description="Tokens generated per completion at most; prompts longer than "
                                          "training.max_length minus this are dropped (counted).")
    temperature: float = Field(1.0, gt=0.0, le=10.0, description="Sampling temperature of the completions.")
    beta: float = Field(0.0, ge=0.0, le=10.0, description="KL penalty towards the starting model; 0 (TRL's default) "
                                                          "loads no reference copy.")
    loss_type: Literal["dapo", "grpo", "dr_grpo", "bnpo"] = Field(
        "dapo", description="How token losses are averaged (TRL's GRPOConfig.loss_type): dapo (TRL's default, no "
                            "length bias), grpo (per sequence), dr_grpo (by a constant), bnpo (per local batch).")
    length_target: int | None = Field(
        None, gt=0, le=131072, description="Tokens the `length` reward allows before it penalises; unset: 3/4 of "
                                           "max_completion_length.")
    eval_prompts: int = Field(
        64, ge=0, le=100000, description="Held-out prompts sampled before and after training to measure the "
                                         "rewards (num_generations completions each); 0 skips the measurement.")
    generation: Literal["auto", "transformers", "vllm"] = Field(
        "auto", description="What samples the training completions: transformers' generate (KV cache), or vLLM in "
                            "colocate mode (in the training processes, on CUDA, with smolforge's vllm extra "
                            "installed). auto: vLLM where it can run, else transformers.")
    vllm_gpu_memory: float = Field(
        0.3, gt=0.0, lt=1.0, description="Share of each GPU's memory vLLM reserves for its copy of the weights and "
                                         "its KV cache (TRL's vllm_gpu_memory_utilization); training gets the rest.")

    @model_validator(mode="after")
    def _weights(self) -> GrpoSection:
        if self.reward_weights is not None and len(self.reward_weights) != len(self.rewards):
            raise ValueError(f"reward_weights has {len(self.reward_weights)} values for {len(self.rewards)} rewards; "
                             "give one weight per reward, in order")
        return self

    @property
    def weights(self) -> list[float]:
        return list(self.reward_weights) if self.reward_weights is not None else [1.0] * len(self.rewards)

    @property
    def length_goal(self) -> int:
        return self.length_target or max(1, self.max_completion_length * 3 // 4)


class TrainingSection(Section):
    method: Annotated[Literal["sft", "dpo", "grpo"], Flag("--method")] = Field(
        "sft", title="Training method",
        description="sft (supervised fine-tuning), dpo (preference pairs) or grpo (reinforcement learning with "
                    "reward functions: sampled completions scored by programs).")
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
    grpo: GrpoSection = Field(default_factory=GrpoSection)

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
        if self.method == "grpo" and self.global_batch % self.grpo.num_generations:
            raise ValueError(f"grpo: the global batch ({self.global_batch} completions: batch_size {self.batch_size} x "
                             f"gradient_accumulation_steps {self.gradient_accumulation_steps} x {self.world_size} "
                             f"processes) is not a multiple of grpo.num_generations {self.grpo.num_generations}; "
                             "make batch_size a multiple of it")
        return self


def _accumulation(t: TrainingSection) -> int:
    """gradient_accumulation_steps that makes t.global_batch_size on t's topology, or why none does."""
    goal, per_pass = int(t.global_batch_size or 0), t.batch_size * t.world_size
    where = f"batch_size {t.batch_size} x {t.world_size} processes ({t.nnodes} node(s) x {t.nproc})"
    if goal % per_pass:
        fixes = [f"a global_batch_size that is a multiple of {per_pass} (e.g. {per_pass} or {2 * per_pass})"]
        if goal % t.batch_size:
            fixes.append(f"a batch_size that divides {goal}")
        elif goal // t.batch_size > 1:
            worlds = [w for w in range(1, goal // t.batch_size + 1) if (goal // t.batch_size) % w == 0]
            fixes.append("a world size (nnodes x nproc) that divides " + str(goal // t.batch_size) + ": " +
                         ", ".join(map(str, worlds[:12])) + (", ..." if len(worlds) > 12 else ""))
        raise ValueError(f"global_batch_size {goal} is not a multiple of {where} = {per_pass} sequences per pass; "
                         f"use {' or '.join(fixes)}")
    steps = goal // per_pass
    most = next(m.le for m in TrainingSection.model_fields["gradient_accumulation_steps"].metadata if isinstance(m, Le))
    if steps > most:
        raise ValueError(f"global_batch_size {goal} needs {steps} accumulation steps with {where}, more than the "
                         f"{most} gradient_accumulation_steps allows; raise batch_size or use more processes")
    return steps
