"""`smolforge plan --calibrate`: a few real training steps of the config on this machine correct the estimate.

The steps run through `train.build_trainer`, exactly as `smolforge run` builds its trainer (model, data,
batching, attention, precision), in a temporary folder with nothing saved or tracked. Measured: the FLOP/s of
the steady steps (the first step's extra time is kept apart as start-up), an evaluation on a few batches,
and the peak memory (RSS on a CPU, torch's allocated bytes on a GPU), of which the formula's prediction for
the same batches is subtracted: that residual corrects later estimates. The calibration is stored in the
smolforge cache under a key of everything that changes the compute (model, training settings, data, device,
library versions), so `smolforge run` of the same config on the same machine shows the calibrated numbers.
"""

from __future__ import annotations

import hashlib
import json
import resource
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from smolforge.config import SmolforgeConfig, dump_dict
from smolforge.paths import cache_root
from smolforge.plan.estimate import Calibration, Estimate
from smolforge.plan.memory import estimate_memory

CALIBRATION_STEPS = 3      # at least: the first warms up, the rate comes from the others...
CALIBRATION_SECONDS = 6.0  # ...measured over at least this long (a tiny model's steps take milliseconds)
MAX_CALIBRATION_STEPS = 200
EVAL_SECONDS = 1.0         # evaluation batches are timed for at least this long (or the whole eval split)
NOT_COMPUTE = ("card", "publish", "tracking", "evaluation", "quantize", "experiment_name", "output_dir", "preset")


def calibration_key(cfg: SmolforgeConfig, device_label: str) -> str:
    """Everything that changes how fast and how big a training step is, hashed."""
    from smolforge import hardware

    compute = {k: v for k, v in dump_dict(cfg).items() if k not in NOT_COMPUTE}
    versions = hardware.versions()
    blob = json.dumps({"config": compute, "device": device_label, "torch": versions.get("torch"),
                       "transformers": versions.get("transformers"), "trl": versions.get("trl")}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


def _path(key: str) -> Path:
    return cache_root() / "calibration" / f"{key}.json"


def load(key: str) -> Calibration | None:
    try:
        data = json.loads(_path(key).read_text(encoding="utf-8"))
        return Calibration(**data)
    except (OSError, ValueError, TypeError):
        return None


def save(cal: Calibration) -> Path:
    from smolforge.runfolder import atomic_write_text

    path = _path(cal.key)
    atomic_write_text(path, json.dumps(cal.as_dict(), indent=2) + "\n")
    return path


def _probe_config(cfg: SmolforgeConfig) -> SmolforgeConfig:
    from smolforge.config.loading import deep_merge, validate

    return validate(deep_merge(dump_dict(cfg), {
        "training": {"max_steps": MAX_CALIBRATION_STEPS, "gradient_accumulation_steps": 1, "eval_steps": 10**9,
                     "save_steps": 10**9, "logging_steps": 10**9},
        "tracking": {"backend": "none"}}), "the calibration settings")


def _step_timer(trainer):
    from transformers import TrainerCallback

    class StepTimer(TrainerCallback):
        """Wall time and processed tokens of each optimizer step (tokens from smolforge's token accounting); stops
        training once CALIBRATION_STEPS steps and CALIBRATION_SECONDS after the first one are measured."""

        def __init__(self) -> None:
            self.steps: list[tuple[float, int]] = []
            self._t0, self._tokens = 0.0, 0

        def on_step_begin(self, args, state, control, **kwargs):
            self._t0, self._tokens = time.perf_counter(), trainer._sf_counts()["processed"]

        def on_step_end(self, args, state, control, **kwargs):
            self.steps.append((time.perf_counter() - self._t0, trainer._sf_counts()["processed"] - self._tokens))
            steady = sum(sec for sec, _ in self.steps[1:])
            if len(self.steps) >= CALIBRATION_STEPS and steady >= CALIBRATION_SECONDS:
                control.should_training_stop = True

    return StepTimer()


def _peak_bytes(device: str) -> float:
    if device == "cuda":
        import torch

        return float(torch.cuda.max_memory_allocated())
    return float(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)


def _evaluate(trainer, est: Estimate) -> float | None:
    """FLOP/s of evaluation (SFT; DPO evaluates at the training rate): whole passes over the first eval batches,
    growing until one takes EVAL_SECONDS or covers the eval split, so a pass's fixed cost is included."""
    ds = trainer.eval_dataset
    if ds is None or est.layout.method != "sft" or "input_ids" not in ds.column_names:
        return None
    b = est.inputs.cfg.training.batch_size
    n = b
    while True:
        subset = ds.select(range(min(n, len(ds))))
        lengths = [len(ids) for ids in subset["input_ids"]]
        tokens = sum(max(lengths[i:i + b]) * len(lengths[i:i + b]) if est.layout.padded else sum(lengths[i:i + b])
                     for i in range(0, len(lengths), b))
        start = time.perf_counter()
        trainer.evaluate(eval_dataset=subset)
        seconds = time.perf_counter() - start
        if seconds >= EVAL_SECONDS or n >= len(ds):
            return tokens * est.flops.evaluation / seconds
        n *= 4


def calibrate(cfg: SmolforgeConfig, data, est: Estimate, key: str) -> Calibration:
    """Run CALIBRATION_STEPS real steps of `cfg` on this machine and measure them against `est`."""
    from smolforge.runfolder import RunFolder
    from smolforge.train import build_trainer

    probe = _probe_config(cfg)
    device = est.target.kind
    if device == "cuda":
        import torch

        torch.cuda.reset_peak_memory_stats()
    with tempfile.TemporaryDirectory(prefix="smolforge-calibrate-") as tmp:
        built = build_trainer(probe, RunFolder(Path(tmp)), data)
        timer = _step_timer(built.trainer)
        built.trainer.add_callback(timer)
        built.trainer.train()
        peak = _peak_bytes(device)
        eval_rate = _evaluate(built.trainer, est)
        del built
    steady = timer.steps[1:] or timer.steps
    per_token = est.flops.executed
    rate = sum(tok for _, tok in steady) * per_token / max(1e-9, sum(sec for sec, _ in steady))
    first_s, first_tokens = timer.steps[0]
    startup = max(0.0, first_s - first_tokens * per_token / rate)
    largest = max(tok for _, tok in timer.steps)
    runtime = est.memory.runtime
    formula = estimate_memory(est.model, est.layout, largest, est.batches.context_per_token, runtime).total
    return Calibration(key=key, flops_rate=rate, eval_rate=eval_rate, startup_s=startup,
                       memory_residual=peak - formula, steps=len(timer.steps),
                       measured_at=datetime.now(timezone.utc).isoformat(timespec="seconds"), device=est.target.label)


def describe(cal: Calibration) -> dict[str, Any]:
    return {"measured_at": cal.measured_at, "steps": cal.steps, "flops_per_second": round(cal.flops_rate),
            "startup_s": round(cal.startup_s, 2), "memory_residual_mib": round(cal.memory_residual / 2**20, 1)}
