"""The device a plan is for: this machine (detected), or a GPU named with --gpu.

For each it gives the runtime the run would resolve there (precision, batching, attention, checkpointing:
`runtime.resolve`'s own rules), the memory one process may use, and the FLOP/s the time estimate divides
by: a named GPU's datasheet peak at the assumed MFU; a detected GPU from the table when it is in it; else,
and on a CPU, a matmul measured on this machine at an assumed efficiency.
"""

from __future__ import annotations

import os
import resource
from dataclasses import dataclass, replace

from smolforge import hardware
from smolforge.config import SmolforgeConfig
from smolforge.plan.gpus import ASSUMED_MFU, Gpu, lookup, match_detected
from smolforge.plan.memory import Layout
from smolforge.plan.model import ModelFacts
from smolforge.plan.speed import CPU_EFFICIENCY, Rate, measured_copy_rate, measured_matmul_rate
from smolforge.runtime import Runtime, resolve


@dataclass(frozen=True)
class Target:
    kind: str               # cpu | cuda
    label: str
    detected: bool          # this machine (False: a GPU named with --gpu)
    capacity: int | None    # bytes one process may use: the GPU's memory, or RAM available to this process
    memory_kind: str        # what the peak is compared with: cpu_rss | gpu_allocated
    runtime: Runtime
    gpu: Gpu | None = None

    @property
    def dtype_name(self) -> str:
        """The dtype the model is loaded in (modelio.torch_dtype: the run's precision on a GPU, fp32 on a CPU)."""
        return self.runtime.precision if self.kind == "cuda" else "fp32"


def current_rss() -> int:
    """Resident bytes of this process now (the baseline a CPU run starts training from)."""
    try:
        with open("/proc/self/statm", encoding="ascii") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _available_ram() -> int | None:
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return None


def _with_world(rt: Runtime, cfg: SmolforgeConfig) -> Runtime:
    return replace(rt, world_size=cfg.training.nproc)


def detect(cfg: SmolforgeConfig) -> Target:
    """This machine, as `smolforge run` would use it."""
    rt = _with_world(resolve(cfg), cfg)
    info = hardware.detect(with_gpu=True)
    if rt.device == "cuda":
        import torch

        props = torch.cuda.get_device_properties(0)
        gpu = match_detected(props.name)
        return Target(kind="cuda", label=f"{props.name} (detected)", detected=True, capacity=int(props.total_memory),
                      memory_kind="gpu_allocated", runtime=rt, gpu=gpu)
    ram = _available_ram()
    return Target(kind="cpu", label=f"{info['summary']} (detected)", detected=True,
                  capacity=ram + current_rss() if ram is not None else None, memory_kind="cpu_rss", runtime=rt)


def named(cfg: SmolforgeConfig, name: str) -> Target:
    """A GPU from the table, as if the run were started there with the same config and installed libraries."""
    gpu = lookup(name)
    rt = _with_world(resolve(cfg, cuda=(True, gpu.bf16)), cfg)
    return Target(kind="cuda", label=gpu.label, detected=False, capacity=gpu.memory_bytes,
                  memory_kind="gpu_allocated", runtime=rt, gpu=gpu)


def retarget(cfg: SmolforgeConfig, target: Target) -> Target:
    """The same device for a changed config (the runtime follows the config: checkpointing, batching...)."""
    if not target.detected and target.gpu is not None:
        return named(cfg, target.gpu.name)
    return replace(target, runtime=_with_world(resolve(cfg), cfg))


def layout(cfg: SmolforgeConfig, target: Target) -> Layout:
    t, rt = cfg.training, target.runtime
    distributed = "none" if t.nproc == 1 else t.distributed
    return Layout(adapters=t.adapters, method=t.method, distributed=distributed, world=t.nproc,
                  # under FSDP the accelerate config checkpoints activations itself (fsdp_activation_checkpointing)
                  checkpointing=rt.activation_checkpointing or distributed == "fsdp",
                  attention=rt.attn_implementation,
                  padded=rt.batching in ("padded", "grouped") or t.method in ("dpo", "grpo"),
                  activation_bytes=2 if rt.precision in ("bf16", "fp16") else 4, on_gpu=target.kind == "cuda",
                  reference=t.method == "dpo" or (t.method == "grpo" and t.grpo.beta > 0))  # GRPO: a KL term


def memory_bandwidth(target: Target) -> float:
    """Bytes/s of the device's memory: the datasheet's for a named GPU, a copy measured here otherwise."""
    if target.gpu is not None:
        return target.gpu.bandwidth_gbs * 1e9
    return measured_copy_rate(target.kind)


def rate(target: Target, model: ModelFacts, micro_tokens: int) -> Rate:
    """The FLOP/s of one device the uncalibrated time divides by, and how it was obtained."""
    if target.gpu is not None:
        return Rate(flops=target.gpu.peak_flops * ASSUMED_MFU,
                    how=f"{target.gpu.peak_tflops:,.0f} TFLOP/s peak ({target.gpu.name}) x assumed MFU "
                        f"{ASSUMED_MFU:.0%}")
    measured = measured_matmul_rate(model, target.kind, target.dtype_name, micro_tokens)
    share = ASSUMED_MFU if target.kind == "cuda" else CPU_EFFICIENCY
    return Rate(flops=measured * share,
                how=f"matmul measured here at {measured / 1e9:,.1f} GFLOP/s x assumed {share:.0%} in training")
