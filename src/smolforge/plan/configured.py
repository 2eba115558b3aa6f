"""The plan of a loaded config on a named GPU or this machine: what `smolforge plan` prints and the web UI shows."""

from __future__ import annotations

from smolforge import processenv
from smolforge.config import SmolforgeConfig
from smolforge.plan import calibrate
from smolforge.plan.estimate import Estimate, PlanInputs, estimate
from smolforge.plan.inputs import read_inputs
from smolforge.plan.model import read_model
from smolforge.plan.target import Target, detect, named


def plan_config(cfg: SmolforgeConfig, gpu: str | None, console, use_stored: bool = True) \
        -> tuple[Estimate, PlanInputs, object, str]:
    """(estimate, inputs, prepared data or None, calibration key) on `gpu` (None: this machine, with the
    calibration stored for it unless `use_stored` is False)."""
    processenv.prepare(cfg, console)
    target: Target = named(cfg, gpu) if gpu else detect(cfg)
    model = read_model(cfg, target.dtype_name)  # config.json only: an uncached model offline stops here
    inputs, data = read_inputs(cfg, console)
    key = calibrate.calibration_key(cfg, target.label)
    stored = calibrate.load(key) if target.detected and use_stored else None
    return estimate(inputs, target, stored, model=model), inputs, data, key
