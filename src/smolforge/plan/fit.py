"""Whether a launcher's GPU holds the run: the plan's peak memory on that GPU (the same estimate as
`smolforge plan --gpu NAME`), and, when it does not fit, the GPUs of the table that do and the setting
changes the plan suggests. A launcher asks this before it writes a file that would rent the GPU."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from smolforge.config import SmolforgeConfig
from smolforge.errors import SmolforgeError
from smolforge.plan.estimate import Estimate, estimate
from smolforge.plan.gpus import GPUS, Gpu, lookup
from smolforge.plan.inputs import read_inputs
from smolforge.plan.model import read_model
from smolforge.plan.report import size
from smolforge.plan.target import named


@dataclass
class Fit:
    """The plan for one GPU of the table, or why none could be made here."""

    gpu: Gpu
    estimate: Estimate | None
    unchecked: str | None = None  # why the memory was not checked


def _first_sentence(err: Exception) -> str:
    return str(err).split(". ")[0].rstrip(".")


def _planned(cfg: SmolforgeConfig, gpu: Gpu, inputs, suggest: bool = True) -> Estimate:
    target = named(cfg, gpu.name)
    return estimate(inputs, target, None, model=read_model(cfg, target.dtype_name), suggest=suggest)


def gpu_fit(cfg: SmolforgeConfig, gpu_name: str, console, flag_for: Callable[[Gpu], str]) -> Fit:
    """The plan on `gpu_name` (a name of the plan's table). A run it cannot plan (a model whose config cannot be
    read offline) is reported as unchecked, not refused; one that does not fit raises the plan's
    numbers, the GPUs that fit (as `flag_for` writes them) and the plan's suggested changes."""
    gpu = lookup(gpu_name)
    inputs, _ = read_inputs(cfg, console)  # a problem with local data stops here, as it would stop the run
    try:
        est = _planned(cfg, gpu, inputs)
    except SmolforgeError as e:  # the model's config.json cannot be read here (an uncached Hub model offline)
        return Fit(gpu, None, unchecked=_first_sentence(e))
    if est.fits is not False:
        return Fit(gpu, est)
    larger = sorted((g for g in GPUS if g.memory_bytes > gpu.memory_bytes), key=lambda g: g.memory_bytes)
    fitting: list[Gpu] = []
    for other in larger:  # the three smallest that hold it (whether it fits needs no suggestions of its own)
        if len(fitting) < 3 and _planned(cfg, other, inputs, suggest=False).fits:
            fitting.append(other)
    options = []
    if fitting:
        options.append("a GPU that fits: " + ", ".join(flag_for(g) for g in fitting))
    options += [f"`{s.change}` (predicted peak {size(s.peak)})" for s in est.suggestions[:2]]
    raise SmolforgeError(
        f"{gpu.label} does not hold this run: the plan predicts {size(est.needed)} per GPU and it has "
        f"{size(gpu.memory_bytes)} (`smolforge plan` of the same config with --gpu {gpu.name} shows the breakdown). "
        + ("Use " + "; or ".join(options) + "." if options else "No GPU of the plan's table holds it: shorten "
           "training.max_length, lower training.batch_size, or train adapters (--finetune lora)."))
