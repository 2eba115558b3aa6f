"""What a plan is computed from: the config, the data's token lengths and this process's memory, for
`smolforge plan` and for the plan `smolforge run` shows before it asks to start (calibrated when `plan
--calibrate` measured the same config here).

Both read the data the way the run reads it (`data.prepare` + `data.precheck`: the chat-template token
lengths, with only the tokenizer). When the data cannot be read here (a Hub dataset offline, a tokenizer
that is not cached) the plan still gives memory for full micro-batches and says why; a local data file
that is broken is an error, as it would be for the run.
"""

from __future__ import annotations

import gc
from typing import Any

from smolforge import processenv
from smolforge.config import SmolforgeConfig
from smolforge.data import is_local_source, precheck, prepare
from smolforge.errors import DataError, SmolforgeError
from smolforge.plan import calibrate
from smolforge.plan.estimate import Estimate, PlanInputs, estimate
from smolforge.plan.target import current_rss, detect


def process_baseline() -> int:
    """Resident bytes of this process with the training libraries loaded: what a CPU run starts training from."""
    import peft  # noqa: F401 - loaded by training; its memory is part of the baseline
    import trl  # noqa: F401

    gc.collect()
    return current_rss()


def inputs_from_data(cfg: SmolforgeConfig, data) -> PlanInputs:
    """The plan's inputs from prepared, length-checked data (what `smolforge run` has before it confirms)."""
    return PlanInputs(cfg=cfg, train_lengths=data.lengths.get("train"), eval_lengths=data.lengths.get("eval"),
                      baseline_rss=process_baseline())


def read_inputs(cfg: SmolforgeConfig, console) -> tuple[PlanInputs, Any]:
    """Prepare the data as the run would; (inputs, data), or inputs without lengths and why."""
    try:
        data = prepare(cfg.data, cfg.training.method)
        precheck(cfg, data)
    except DataError as e:
        if is_local_source(cfg.data.name):
            raise  # the run would stop on it too
        note = f"{cfg.data.name} is not in the local cache and the Hub is offline" if processenv.offline_by_env() \
            else f"{cfg.data.name} cannot be read: {_first_sentence(str(e))}"
    except SmolforgeError as e:  # the tokenizer (a Hub model offline): lengths need it
        note = f"no tokenizer to measure the rows with: {_first_sentence(str(e))}"
    else:
        return inputs_from_data(cfg, data), data
    console.print(f"Data: {note}. Memory is planned for full micro-batches.", markup=False)
    return PlanInputs(cfg=cfg, train_lengths=None, eval_lengths=None, data_note=note,
                      baseline_rss=process_baseline()), None


def _first_sentence(text: str, limit: int = 160) -> str:
    sentence = text.split(". ")[0].rstrip(".")
    return sentence if len(sentence) <= limit else sentence[: limit - 3] + "..."


def for_run(cfg: SmolforgeConfig, data) -> tuple[Estimate, Estimate | None]:
    """The plan `smolforge run` shows, calibrated when `smolforge plan --calibrate` measured this config on this
    machine; and then also the formula's own estimate (results.json keeps both against the measurement)."""
    target = detect(cfg)
    inputs = inputs_from_data(cfg, data)
    formula = estimate(inputs, target)
    stored = calibrate.load(calibrate.calibration_key(cfg, target.label))
    if stored is None:
        return formula, None
    return estimate(inputs, target, stored, model=formula.model), formula


