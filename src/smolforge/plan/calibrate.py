"""`smolforge plan --calibrate`: a few real training steps of the config on this machine correct the estimate.

The steps run through `train.build_trainer`, exactly as `smolforge run` builds its trainer (model, data,
batching, attention, precision), in a temporary folder with nothing saved or tracked. Measured: the FLOP/s of
the steady steps (the first step's extra time is kept apart as start-up), an evaluation on a few batches,
and the peak memory (RSS on a CPU, torch's allocated bytes on a GPU), of which the formula's prediction for
the same batches is subtracted: that residual corrects later estimates. The calibration is stored in the
smolforge cache under a key of everything that changes the compute (model, training settings, data, device,
library versions), so `smolforge run` of the same config on the same machine shows the calibrated numbers.

On a CPU the rate is measured in CALIBRATION_PROCESSES processes, not one: on a virtual machine one process
can run the same steps at a steady rate that differs from another's by a quarter or more for its whole life
(measured on a 2-core KVM guest: 26-29 GFLOP/s in some processes, 34-42 in others, for the tiny preset), so
one process's rate predicts a run in another process only as well as they happen to match. The mean over
a few processes is what a run can expect.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import resource
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from smolforge import hardware, processenv
from smolforge.config import SmolforgeConfig, dump_dict
from smolforge.config.loading import deep_merge, validate
from smolforge.data import precheck, prepare
from smolforge.paths import cache_root
from smolforge.plan.estimate import Calibration, Estimate
from smolforge.plan.memory import estimate_memory
from smolforge.runfolder import RunFolder, atomic_write_text
from smolforge.train import build_trainer

CALIBRATION_STEPS = 3      # at least, per process: the first warms up, the rate comes from the others...
CALIBRATION_SECONDS = 3.0  # ...measured over at least this long (a tiny model's steps take milliseconds)
CALIBRATION_PROCESSES = 3  # on a CPU (see the module docstring); one on a GPU
MAX_CALIBRATION_STEPS = 200
EVAL_SECONDS = 1.0         # evaluation batches are timed for at least this long (or the whole eval split)
NOT_COMPUTE = ("card", "publish", "tracking", "evaluation", "quantize", "experiment_name", "output_dir", "preset")


def calibration_key(cfg: SmolforgeConfig, device_label: str) -> str:
    """Everything that changes how fast and how big a training step is, hashed."""
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
    path = _path(cal.key)
    atomic_write_text(path, json.dumps(cal.as_dict(), indent=2) + "\n")
    return path


def _probe_config(cfg: SmolforgeConfig) -> SmolforgeConfig:
    return validate(deep_merge(dump_dict(cfg), {
        "training": {"max_steps": MAX_CALIBRATION_STEPS, "gradient_accumulation_steps": 1, "eval_steps": 10**9,
                     "save_steps": 10**9, "logging_steps": 10**9},
        "tracking": {"backend": "none"}}), "the calibration settings")


def _step_timer(trainer):
    from transformers import TrainerCallback

    class StepTimer(TrainerCallback):
        """Wall time and processed tokens of each optimizer step (tokens from smolforge's token accounting); stops
        training once CALIBRATION_STEPS steps and CALIBRATION_SECONDS after the first one are measured.

        A step's time runs from the end of the one before (the first: from its own start), so what happens between
        steps in a run (the next batch collated, callbacks) is part of the rate, as it is of a run's time."""

        def __init__(self) -> None:
            self.steps: list[tuple[float, int]] = []
            self._t0, self._tokens = 0.0, 0

        def on_step_begin(self, args, state, control, **kwargs):
            if not self.steps:
                self._t0, self._tokens = time.perf_counter(), trainer._sf_counts()["processed"]

        def on_step_end(self, args, state, control, **kwargs):
            now, tokens = time.perf_counter(), trainer._sf_counts()["processed"]
            self.steps.append((now - self._t0, tokens - self._tokens))
            self._t0, self._tokens = now, tokens
            steady = sum(sec for sec, _ in self.steps[1:])
            if len(self.steps) >= CALIBRATION_STEPS and steady >= CALIBRATION_SECONDS:
                control.should_training_stop = True

    return StepTimer()


def _timed_steps(probe: SmolforgeConfig, data, after=None) -> tuple[list[tuple[float, int]], Any]:
    """Train `probe` on `data` until the timer stops it; (the steps' seconds and tokens, `after(trainer)`)."""
    with tempfile.TemporaryDirectory(prefix="smolforge-calibrate-") as tmp:
        built = build_trainer(probe, RunFolder(Path(tmp)), data)
        timer = _step_timer(built.trainer)
        built.trainer.add_callback(timer)
        built.trainer.train()
        extra = after(built.trainer) if after is not None else None
        del built
    return timer.steps, extra


def _steps_in_a_new_process(probe_settings: dict, result) -> None:
    """Runs in a spawned process: read the data as the run would, time the probe's steps there, send them back
    through the `result` pipe (or the error's text)."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)  # stdout belongs to the parent (`plan --json` prints only its JSON there)
    try:
        probe = validate(probe_settings, "the calibration settings")
        processenv.prepare(probe)
        data = prepare(probe.data, probe.training.method)
        precheck(probe, data)
        result.send(_timed_steps(probe, data)[0])
    except BaseException as e:  # noqa: BLE001 - reported by the parent, which goes on with what it measured
        result.send(f"{type(e).__name__}: {e}")
    finally:
        result.close()


def _more_processes(probe: SmolforgeConfig, count: int) -> list[list[tuple[float, int]]]:
    """The steps timed in `count` fresh processes, one after another (each gets its own memory). A process that
    fails is left out with a warning in the log: the calibration then rests on fewer processes."""
    import logging

    context = multiprocessing.get_context("spawn")  # fork would copy this process's pages and OpenMP state
    measured = []
    for _ in range(count):
        receive, send = context.Pipe(duplex=False)
        child = context.Process(target=_steps_in_a_new_process, args=(dump_dict(probe), send), daemon=True)
        child.start()
        send.close()
        try:
            got = receive.recv()
        except EOFError:
            got = f"the process exited with code {child.join() or child.exitcode}"
        child.join()
        if isinstance(got, str):
            logging.getLogger(__name__).warning("calibration in a second process failed: %s", got)
        else:
            measured.append(got)
    return measured


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
    """Run real steps of `cfg` on this machine (here, and on a CPU in more processes) and measure them against
    `est`: the rate from every process's steady steps, start-up, evaluation and memory from this one."""
    probe = _probe_config(cfg)
    device = est.target.kind
    if device == "cuda":
        import torch

        torch.cuda.reset_peak_memory_stats()
    steps, (peak, eval_rate) = _timed_steps(probe, data, lambda trainer: (_peak_bytes(device),
                                                                             _evaluate(trainer, est)))
    others = _more_processes(probe, CALIBRATION_PROCESSES - 1) if device == "cpu" else []
    steady = [s for timed in [steps, *others] for s in (timed[1:] or timed)]
    per_token = est.flops.executed
    rate = sum(tok for _, tok in steady) * per_token / max(1e-9, sum(sec for sec, _ in steady))
    first_s, first_tokens = steps[0]
    startup = max(0.0, first_s - first_tokens * per_token / rate)
    largest = max(tok for _, tok in steps)
    runtime = est.memory.runtime
    formula = estimate_memory(est.model, est.layout, largest, est.batches.context_per_token, runtime).total
    return Calibration(key=key, flops_rate=rate, eval_rate=eval_rate, startup_s=startup,
                       memory_residual=peak - formula, steps=len(steps) + sum(len(o) for o in others),
                       measured_at=datetime.now(timezone.utc).isoformat(timespec="seconds"), device=est.target.label,
                       processes=1 + len(others))


def describe(cal: Calibration) -> dict[str, Any]:
    return {"measured_at": cal.measured_at, "steps": cal.steps, "processes": cal.processes,
            "flops_per_second": round(cal.flops_rate),
            "startup_s": round(cal.startup_s, 2), "memory_residual_mib": round(cal.memory_residual / 2**20, 1)}
