"""Time from FLOPs: FLOPs per token, the device's rate, and what a run does besides its training steps.

FLOPs per processed token (N: parameters a token multiplies through, so the output head counts and an untied
input embedding does not; d = heads x head_dim; c = the token's mean causal attention context; L = layers):

    full fine-tune   6 N + 12 L d c              forward 2 N + 4 L d c, backward twice that
    LoRA, QLoRA      4 N + 6 N_adapter + 12 L d c  the frozen weights need no weight gradients
    + checkpointing  2 N + 4 L d c               the forward runs again in backward
    + DPO, GRPO      2 N + 4 L d c               TRL's reference model scores the same tokens (GRPO: beta > 0)
    evaluation       2 N + 4 L d c               per evaluated token

time = training FLOPs / (processes x device FLOP/s x efficiency) + evaluations at the same rate
       + checkpoint writes at CHECKPOINT_WRITE_RATE + the start-up overhead --calibrate measures
       + (qlora) the 4-bit weights' dequantization.
The efficiency is an assumption (stated where it is shown) until --calibrate replaces the whole rate with
one measured on the machine. QLoRA counts the same FLOPs as LoRA, but each matmul first dequantizes its 4-bit
weight into the compute dtype, in the forward, again in the backward (and in the recomputed forward with
checkpointing), once per micro-batch whatever its length. That work is bound by memory, not FLOPs: it is
priced as the bytes it moves (the packed weights and their scales read, the dequantized weight written) at the
device's memory bandwidth (the datasheet's for a named GPU, a copy measured here otherwise). It is an estimate;
a calibrated rate, measured on real qlora steps, already includes it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from smolforge.plan.batches import Batches
from smolforge.plan.memory import Layout, quantized_bytes
from smolforge.plan.model import ModelFacts

CHECKPOINT_WRITE_RATE = 1e9  # bytes/s assumed for writing a checkpoint (weights + optimizer state)
CPU_EFFICIENCY = 0.25        # share of the measured matmul rate a CPU training step reaches (assumed)


@dataclass(frozen=True)
class Rate:
    flops: float   # FLOP/s of one device that the estimate divides by
    how: str       # where it comes from, for the table


@dataclass(frozen=True)
class Flops:
    model: float     # per processed token: the useful work (what MFU counts)
    executed: float  # per processed token, recomputation and the DPO reference included
    evaluation: float  # per evaluated token


def flops_per_token(m: ModelFacts, lay: Layout, context: float, eval_context: float) -> Flops:
    n = m.matmul_params
    attn_fwd = 4 * m.layers * m.attention_width * context
    forward = 2 * n + attn_fwd
    model = (4 * n + 6 * m.adapter_params if lay.adapters else 6 * n) + 3 * attn_fwd
    executed = model + (forward if lay.checkpointing else 0) + (forward if lay.reference else 0)
    evaluation = 2 * n + 4 * m.layers * m.attention_width * eval_context
    return Flops(model=model, executed=executed, evaluation=evaluation)


@dataclass(frozen=True)
class Timing:
    train_s: float
    eval_s: float
    save_s: float
    startup_s: float
    dequant_s: float = 0.0  # qlora: the 4-bit weights dequantized for every matmul (an estimate)
    rollout_s: float = 0.0  # GRPO: sampling the completions, and the held-out prompts (plan/rollouts.py)

    @property
    def total_s(self) -> float:
        return self.train_s + self.eval_s + self.save_s + self.startup_s + self.dequant_s + self.rollout_s


def dequant_bytes(m: ModelFacts, lay: Layout) -> float:
    """Bytes one dequantization of every 4-bit weight moves: the packed codes and scales read, the weight written
    in the compute dtype."""
    return quantized_bytes(m) + m.quantized_params * lay.activation_bytes


def dequant_seconds_per_step(m: ModelFacts, lay: Layout, micro_batches_per_step: int, bandwidth: float) -> float:
    """Time the 4-bit weights' dequantization adds to each optimizer step of a qlora run: every micro-batch
    dequantizes every quantized weight in the forward and the backward (and in the recomputed forward with
    checkpointing); the processes do it in parallel."""
    if not m.quantized_params or bandwidth <= 0:
        return 0.0
    passes = 3 if lay.checkpointing else 2
    return micro_batches_per_step * passes * dequant_bytes(m, lay) / bandwidth


def checkpoint_bytes(m: ModelFacts, lay: Layout) -> float:
    """A resumable checkpoint: the trained weights and AdamW's two moments (written in their dtypes)."""
    trained = m.adapter_params * m.adapter_bytes if lay.adapters else m.params * m.param_bytes
    return 3 * trained


def estimate_time(m: ModelFacts, lay: Layout, b: Batches, rate: Rate, fl: Flops, startup_s: float = 0.0,
                  eval_rate: Rate | None = None, dequant_step_s: float = 0.0) -> Timing:
    devices = max(1, lay.world)
    train = b.steps * b.tokens_per_step * fl.executed / (devices * rate.flops)
    evals = b.evals * b.eval_tokens * fl.evaluation / (devices * (eval_rate or rate).flops)
    saves = b.saves * checkpoint_bytes(m, lay) / CHECKPOINT_WRITE_RATE
    return Timing(train_s=train, eval_s=evals, save_s=saves, startup_s=startup_s, dequant_s=b.steps * dequant_step_s)


def measured_copy_rate(device: str, seconds: float = 0.2) -> float:
    """Bytes/s this machine's memory moves in a large copy (read + write), the bound of a dequantization."""
    import torch

    n = 16 * 2**20  # 64 MiB of fp32: beyond the caches
    src = torch.ones(n, device=device)
    dst = torch.empty_like(src)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    dst.copy_(src)
    sync()
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        dst.copy_(src)
        count += 1
    sync()
    return 2 * 4 * n * count / (time.perf_counter() - start)


def measured_matmul_rate(m: ModelFacts, device: str, dtype_name: str, rows: int, seconds: float = 0.3) -> float:
    """FLOP/s of the model's MLP up-projection on a micro-batch of `rows` tokens, on this machine (a few hundred
    ms): the shape training multiplies most, so small models are measured at their own (small) sizes."""
    import torch

    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(dtype_name, torch.float32)
    rows = max(64, min(rows, 8192))
    inner = max(16, min(m.hidden, 16384))
    outer = max(16, min(m.intermediate or 4 * m.hidden, 65536))
    gen = torch.Generator(device=device).manual_seed(0)  # its own generator: the run's random state is untouched
    a = torch.randn(rows, inner, device=device, dtype=dtype, generator=gen)
    w = torch.randn(inner, outer, device=device, dtype=dtype, generator=gen)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    for _ in range(3):
        a @ w
    sync()
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        a @ w
        n += 1
    sync()
    return 2 * rows * inner * outer * n / (time.perf_counter() - start)
