"""What smolforge adds to TRL's trainers: token accounting, truncation for padding-free batches,
a progress display, a plain-text training log, and a clean stop on Ctrl-C / SIGTERM.
"""

from __future__ import annotations

import logging
import math
import signal
import sys
import time

import torch
from transformers import TrainerCallback

log = logging.getLogger("smolforge.train")


class TokenAccounting:
    """Mixin for a TRL trainer: counts processed, real (non-pad) and supervised tokens per step.

    `supervised` counts loss terms: positions whose next-token label is not -100. These numbers
    are what tokens/s and padding waste in results.json are computed from.
    """

    def create_model_card(self, *args, **kwargs) -> None:
        """smolforge writes the real card from results.json; TRL's auto-card would land in checkpoints/."""

    def _sf_init_counts(self) -> None:
        self.sf_counts = {"processed": 0, "real": 0, "supervised": 0}

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if model.training:
            ids = inputs.get("input_ids")
            if ids is not None:
                if not hasattr(self, "sf_counts"):
                    self._sf_init_counts()
                self.sf_counts["processed"] += ids.numel()
                mask = inputs.get("attention_mask")
                self.sf_counts["real"] += int(mask.sum()) if mask is not None else ids.numel()
                labels = inputs.get("labels")
                if labels is None and "completion_mask" in inputs:  # DPO marks the loss span with a mask
                    self.sf_counts["supervised"] += int(inputs["completion_mask"][:, 1:].sum())
                elif labels is not None:
                    self.sf_counts["supervised"] += int((labels[..., 1:] != -100).sum())
        return super().compute_loss(model, inputs, return_outputs=return_outputs,
                                    num_items_in_batch=num_items_in_batch)

    def sf_total_counts(self) -> dict[str, int]:
        counts = getattr(self, "sf_counts", {"processed": 0, "real": 0, "supervised": 0})
        t = torch.tensor([counts["processed"], counts["real"], counts["supervised"]], dtype=torch.long,
                         device=self.accelerator.device)
        if self.accelerator.num_processes > 1:
            t = self.accelerator.reduce(t, reduction="sum")
        processed, real, supervised = (int(x) for x in t.tolist())
        return {"processed": processed, "real": real, "supervised": supervised}


def make_sft_trainer_class():
    """SFTTrainer + token accounting + truncation to `sf_truncate_to` after TRL tokenises.

    TRL refuses `max_length` with padding-free batches that are not packed (it cannot truncate
    them for us), so smolforge passes max_length=None and truncates the tokenised rows here,
    keeping one row = one sequence and `batch_size` = sequences per step.
    """
    from trl import SFTTrainer

    class SmolforgeSFTTrainer(TokenAccounting, SFTTrainer):
        sf_truncate_to: int | None = None

        def _prepare_dataset(self, dataset, processing_class, args, packing, formatting_func, dataset_name):
            ds = super()._prepare_dataset(dataset, processing_class, args, packing, formatting_func, dataset_name)
            n = self.sf_truncate_to
            if n and not packing and "labels" in ds.column_names:
                ds = ds.map(lambda ex: {"input_ids": ex["input_ids"][:n], "labels": ex["labels"][:n]},
                            desc=f"Truncating {dataset_name} to {n} tokens")
                ds = ds.filter(lambda ex: any(x != -100 for x in ex["labels"][1:]))
            return ds

    return SmolforgeSFTTrainer


def make_dpo_trainer_class():
    from trl import DPOTrainer

    class SmolforgeDPOTrainer(TokenAccounting, DPOTrainer):
        pass

    return SmolforgeDPOTrainer


class StopOnSignal(TrainerCallback):
    """Ctrl-C or SIGTERM: finish the current step, save a checkpoint, stop cleanly."""

    def __init__(self):
        self.received: int | None = None
        self._previous: dict[int, object] = {}

    def install(self) -> None:
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._previous[sig] = signal.signal(sig, self._handle)

    def uninstall(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    def _handle(self, signum, frame) -> None:
        if self.received is not None:  # a second Ctrl-C: stop now
            raise KeyboardInterrupt
        self.received = signum
        print("\nStopping after this step and saving a checkpoint (press Ctrl-C again to abort)...",
              file=sys.stderr, flush=True)

    def on_step_end(self, args, state, control, **kwargs):
        if self.received is not None:
            control.should_save = True
            control.should_training_stop = True
        return control


class ProgressLog(TrainerCallback):
    """Step, loss, tokens/s and ETA: a live bar in a terminal, plain lines otherwise, and logs/."""

    def __init__(self, trainer_ref, console=None):
        self.trainer_ref = trainer_ref
        self.console = console
        self.progress = None
        self.task = None
        self.t0 = None
        self.step0 = 0
        self.last_loss: float | None = None

    def _tokens_per_s(self) -> float | None:
        trainer = self.trainer_ref()
        counts = getattr(trainer, "sf_counts", None)
        if not counts or not self.t0:
            return None
        dt = time.perf_counter() - self.t0
        return counts["supervised"] / dt if dt > 0 else None

    def on_train_begin(self, args, state, control, **kwargs):
        self.t0 = time.perf_counter()
        self.step0 = state.global_step
        if not state.is_world_process_zero:
            return
        log.info("training: %d steps (starting at step %d)", state.max_steps, state.global_step)
        if self.console is not None and self.console.is_terminal:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self.progress = Progress(TextColumn("[bold]train"), BarColumn(), MofNCompleteColumn(),
                                     TextColumn("{task.fields[info]}"), TimeRemainingColumn(),
                                     console=self.console, transient=False)
            self.progress.start()
            self.task = self.progress.add_task("train", total=state.max_steps, completed=state.global_step,
                                               info="")

    def _info(self) -> str:
        parts = []
        if self.last_loss is not None:
            parts.append(f"loss {self.last_loss:.4f}")
        tps = self._tokens_per_s()
        if tps:
            parts.append(f"{tps:,.0f} tok/s")
        return "  ".join(parts)

    def on_step_end(self, args, state, control, **kwargs):
        if self.progress is not None:
            self.progress.update(self.task, completed=state.global_step, info=self._info())

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or not logs:
            return
        if "loss" in logs:
            self.last_loss = float(logs["loss"])
        # full precision (repr): the log is the independent record results.json is checked against
        line = f"step {state.global_step}/{state.max_steps} " + " ".join(f"{k}={v!r}" for k, v in logs.items())
        log.info(line)
        if self.progress is None and self.console is not None and ("loss" in logs or "eval_loss" in logs):
            done = state.global_step - self.step0
            eta = ""
            if done > 0 and self.t0:
                remaining = (time.perf_counter() - self.t0) / done * (state.max_steps - state.global_step)
                eta = f"  eta {math.ceil(remaining)}s"
            what = f"eval_loss {logs['eval_loss']:.4f}" if "eval_loss" in logs else self._info()
            self.console.print(f"  step {state.global_step}/{state.max_steps}  {what}{eta}", highlight=False)

    def on_train_end(self, args, state, control, **kwargs):
        if self.progress is not None:
            self.progress.update(self.task, completed=state.global_step, info=self._info())
            self.progress.stop()
            self.progress = None
