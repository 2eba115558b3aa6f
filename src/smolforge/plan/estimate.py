"""The plan: predicted peak memory and time for a config on a device, before any weights load.

Puts together the model facts (config.json on the meta device), the data's token lengths batched like the
run, the memory and FLOP formulas, and the device. When the peak does not fit, the same estimator tries
what would: LoRA, QLoRA, activation checkpointing, a smaller batch with more accumulation (same effective
batch), FSDP over more GPUs. A calibration measured on this machine (`smolforge plan --calibrate`) replaces the
assumed rate and corrects the memory by what it measured.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any

from smolforge.config import SmolforgeConfig
from smolforge.config.loading import deep_merge, nest, validate
from smolforge.config.schema import dump_dict
from smolforge.errors import SmolforgeError
from smolforge.plan.batches import Batches, plan_batches
from smolforge.plan.memory import Layout, Memory, cuda_needed, estimate_memory
from smolforge.plan.model import ModelFacts, read_model
from smolforge.plan.rollouts import Rollouts, price_rollouts, with_vllm
from smolforge.plan.speed import Flops, Rate, Timing, dequant_seconds_per_step, estimate_time, flops_per_token
from smolforge.plan.target import Target, layout, memory_bandwidth, rate, retarget

MIB = 2**20


@dataclass(frozen=True)
class Calibration:
    """What `--calibrate` measured: a few real steps of this config on this machine."""

    key: str
    flops_rate: float         # executed FLOP/s of one device over the steady steps
    eval_rate: float | None   # FLOP/s of evaluation
    startup_s: float          # the first step's extra time (kernels, allocator, caches warming up)
    memory_residual: float    # measured peak minus the formula's peak for the same batches (bytes)
    steps: int
    measured_at: str
    device: str
    processes: int = 1        # how many processes the steps ran in (the rate is their mean)

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class PlanInputs:
    """Everything about the run the estimate reads; nothing here needs the model's weights."""

    cfg: SmolforgeConfig
    train_lengths: list[int] | None
    eval_lengths: list[int] | None
    data_note: str | None = None   # why the lengths are missing, when they are
    baseline_rss: int = 0          # CPU: this process's resident bytes before training (measured)


@dataclass
class Suggestion:
    change: str             # what to change, as --set options
    peak: float             # predicted peak with it (bytes)
    note: str = ""


@dataclass
class Estimate:
    inputs: PlanInputs
    target: Target
    model: ModelFacts
    layout: Layout
    batches: Batches
    memory: Memory
    flops: Flops
    rate: Rate
    timing: Timing
    calibration: Calibration | None = None
    dequant_step_s: float = 0.0  # qlora, uncalibrated: each step's 4-bit dequantization (an estimate)
    rollouts: Rollouts | None = None  # GRPO: sampling the completions each step learns from
    suggestions: list[Suggestion] = field(default_factory=list)

    @property
    def peak(self) -> float:
        """Predicted peak of what the run measures: RSS on a CPU, torch's allocated bytes on a GPU."""
        return self.memory.total + (self.calibration.memory_residual if self.calibration else 0.0)

    @property
    def needed(self) -> float:
        return cuda_needed(self.peak) if self.target.kind == "cuda" else self.peak

    @property
    def fits(self) -> bool | None:
        return None if self.target.capacity is None else self.needed <= self.target.capacity

    @property
    def step_seconds(self) -> float:
        """One optimizer step's training time (all processes together)."""
        flops_s = self.batches.tokens_per_step * self.flops.executed / (max(1, self.layout.world) * self.rate.flops)
        return flops_s + self.dequant_step_s + (self.rollouts.step_s if self.rollouts else 0.0)

    @property
    def tokens_per_second(self) -> float | None:
        """Processed tokens per second of the run's training time (evaluations and checkpoints included); with no
        step count, of training steps alone."""
        if not self.batches.steps:
            return self.batches.tokens_per_step / self.step_seconds if self.step_seconds else None
        return self.batches.total_tokens / self.timing.total_s if self.timing.total_s > 0 else None

    @property
    def mfu(self) -> float | None:
        """Model FLOPs utilisation the prediction implies on a GPU of the table."""
        gpu = self.target.gpu
        if gpu is None or not self.timing.train_s:
            return None
        model_flops = self.batches.total_tokens * self.flops.model
        return model_flops / (self.timing.train_s * gpu.peak_flops * max(1, self.layout.world))


def _memory(inputs: PlanInputs, target: Target, m: ModelFacts, lay: Layout, b: Batches,
            rollouts: Rollouts | None) -> Memory:
    runtime = inputs.baseline_rss if target.kind == "cpu" else 0
    return estimate_memory(m, lay, b.peak_micro_tokens, b.context_per_token, runtime,
                           rollouts.kv_cache if rollouts else 0.0)


def estimate(inputs: PlanInputs, target: Target, calibration: Calibration | None = None,
             model: ModelFacts | None = None, suggest: bool = True) -> Estimate:
    cfg = inputs.cfg
    m = model or read_model(cfg, target.dtype_name)
    lay = layout(cfg, target)
    b = plan_batches(cfg, target.runtime.batching, cfg.training.nproc, inputs.train_lengths, inputs.eval_lengths)
    fl = flops_per_token(m, lay, b.context_per_token, b.eval_context)
    dequant = 0.0
    assumed = rate(target, m, b.peak_micro_tokens) if calibration is None or cfg.training.method == "grpo" else None
    rollouts = None
    if cfg.training.method == "grpo":  # sampling, at the device's rate and memory bandwidth (plan/rollouts.py)
        rollouts = price_rollouts(cfg, m, lay, inputs.train_lengths, len(inputs.eval_lengths or []),
                                  assumed.flops, memory_bandwidth(target))
        if target.runtime.generation == "vllm":
            rollouts = with_vllm(rollouts, cfg.training.grpo.vllm_gpu_memory, target.capacity)
    mem = _memory(inputs, target, m, lay, b, rollouts)
    if rollouts is not None and rollouts.generation == "vllm":  # reserved for the whole run, beside training
        mem = replace(mem, generation=rollouts.vllm_reserved)
    if calibration is not None:
        r = Rate(flops=calibration.flops_rate, how=f"measured by --calibrate ({calibration.steps} steps in "
                                                   f"{calibration.processes} process"
                                                   f"{'es' if calibration.processes > 1 else ''}, "
                                                   f"{calibration.measured_at})")
        eval_rate = Rate(flops=calibration.eval_rate, how="measured") if calibration.eval_rate else None
        timing = estimate_time(m, lay, b, r, fl, startup_s=calibration.startup_s, eval_rate=eval_rate)
    else:
        r = assumed
        dequant = dequant_seconds_per_step(m, lay, cfg.training.gradient_accumulation_steps,
                                           memory_bandwidth(target)) if m.quantized_params else 0.0
        timing = estimate_time(m, lay, b, r, fl, dequant_step_s=dequant)
    if rollouts is not None:
        timing = replace(timing, rollout_s=b.steps * rollouts.step_s + rollouts.held_out_s)
    est = Estimate(inputs=inputs, target=target, model=m, layout=lay, batches=b, memory=mem, flops=fl, rate=r,
                   timing=timing, calibration=calibration, dequant_step_s=dequant, rollouts=rollouts)
    if suggest and est.fits is False:
        est.suggestions = _what_fits(est)
    return est


def _merged(cfg: SmolforgeConfig, sets: dict[str, Any]) -> SmolforgeConfig:
    return validate(deep_merge(dump_dict(cfg), nest(sets)), "a plan variant")


def _variant(est: Estimate, sets: dict[str, Any]) -> Estimate:
    cfg = _merged(est.inputs.cfg, sets)
    tgt = retarget(cfg, est.target)
    other_weights = cfg.training.finetune != est.inputs.cfg.training.finetune  # adapters, a 4-bit base: read again
    model = read_model(cfg, tgt.dtype_name) if other_weights else est.model
    return estimate(replace(est.inputs, cfg=cfg), tgt, est.calibration, model=model, suggest=False)


def _what_fits(est: Estimate) -> list[Suggestion]:
    """Changes that bring the peak under the device's memory, each predicted by the same estimator.

    Each kind of change on its own first (for the batch: the largest that fits, with the effective batch kept);
    when none fits alone, they are combined in the order that changes the result least: activation
    checkpointing (same result, ~30% more compute), then smaller batches with more accumulation, then LoRA,
    then QLoRA (LoRA over the base held in 4 bits: about a quarter of its bf16 bytes, at some quality and
    speed), then FSDP over more GPUs. LoRA and QLoRA are one kind of change, like the batch sizes: alone, the
    first that fits is shown; combined, QLoRA replaces LoRA, and FSDP (which shards a full fine-tune) replaces
    both. A change this machine cannot plan (bitsandbytes missing for qlora) is left out.
    """
    t = est.inputs.cfg.training
    steps: list[tuple[str, dict[str, Any]]] = []
    if not est.layout.checkpointing:
        steps.append(("--set training.activation_checkpointing=true", {"training.activation_checkpointing": True}))
    batch, effective = t.batch_size, t.batch_size * t.gradient_accumulation_steps
    while batch > 1:
        batch //= 2
        steps.append((f"--batch-size {batch} --gradient-accumulation-steps {math.ceil(effective / batch)}",
                      {"training.batch_size": batch,
                       "training.gradient_accumulation_steps": math.ceil(effective / batch)}))
    if not t.adapters:
        steps.append((f"--finetune lora (r={t.lora.r})", {"training.finetune": "lora"}))
    if not t.four_bit_base:
        steps.append((f"--finetune qlora (r={t.lora.r})", {"training.finetune": "qlora"}))
    if not t.adapters:
        if est.target.kind == "cuda":
            steps += [(f"--nproc {n} --set training.distributed=fsdp ({n} GPUs)",
                       {"training.nproc": n, "training.distributed": "fsdp"}) for n in (2, 4, 8) if n > t.nproc]
    out: list[Suggestion] = []
    kinds: set[str] = set()
    for change, sets in steps:
        kind = change.split()[0]
        if kind not in kinds and (v := _fitting(est, sets)):
            out.append(Suggestion(change=change, peak=v.peak, note=_time_note(v)))
            kinds.add(kind)
    if out:
        return out
    chosen: dict[str, tuple[str, dict[str, Any]]] = {}  # kind -> change (a smaller batch replaces a larger one)
    for change, sets in steps:
        chosen[change.split()[0]] = (change, sets)
        if change.startswith("--nproc"):
            chosen.pop("--finetune", None)  # FSDP shards a full fine-tune; adapters run as DDP (the schema says)
        if _fitting(est, _union(chosen)):
            break
    else:
        return []
    batches = [st for st in steps if st[0].startswith("--batch-size")]
    if "--batch-size" in chosen:  # with the later changes a larger batch may fit again: keep the largest that does
        for candidate in batches:
            trial = {**chosen, "--batch-size": candidate}
            if _fitting(est, _union(trial)):
                chosen = trial
                break
    v = _variant(est, _union(chosen))
    return [Suggestion(change=" ".join(c for c, _ in chosen.values()), peak=v.peak, note=_time_note(v))]


def _fitting(est: Estimate, sets: dict[str, Any]) -> Estimate | None:
    """The variant's estimate when it fits; None when it does not, or when the runtime refuses it here (qlora
    without bitsandbytes installed: `runtime.resolve` says so, and the plan suggests only what can run)."""
    try:
        v = _variant(est, sets)
    except SmolforgeError:
        return None
    return v if v.fits else None


def _union(chosen: dict[str, tuple[str, dict[str, Any]]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for _, sets in chosen.values():
        out |= sets
    return out


def _time_note(v: Estimate) -> str:
    return f"about {duration(v.timing.total_s)}" if v.batches.steps else ""


def duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
