"""The plan's memory check for a launcher's GPU, said the same way by `smolforge slurm` and `smolforge skypilot`."""

from __future__ import annotations

from collections.abc import Callable

from smolforge import processenv
from smolforge.config import SmolforgeConfig
from smolforge.plan.fit import gpu_fit
from smolforge.plan.gpus import Gpu
from smolforge.plan.report import size


def check_gpu(cfg: SmolforgeConfig, plan_name: str | None, asked: str, console,
              flag_for: Callable[[Gpu], str]) -> None:
    """Stop when the plan says the run does not fit on the GPU (gpu_fit raises); say what was checked."""
    if plan_name is None:
        console.print(f"Memory not checked: {asked} is not in the plan's GPU table (`smolforge plan --gpu` lists it).",
                      markup=False)
        return
    processenv.prepare(cfg, console)  # quiet libraries; offline when the Hub is not needed or not reachable
    fit = gpu_fit(cfg, plan_name, console, flag_for)
    if fit.estimate is None:
        console.print(f"Memory not checked on {fit.gpu.label}: {fit.unchecked}.", markup=False)
        return
    console.print(f"Fits: the plan predicts {size(fit.estimate.needed)} per GPU of the {size(fit.gpu.memory_bytes)} "
                  f"on {fit.gpu.label}.", markup=False)
