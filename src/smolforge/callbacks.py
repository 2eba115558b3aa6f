"""Trainer callbacks: a progress display and the plain-text training log, and a clean stop on
Ctrl-C / SIGTERM (finish the step, save a checkpoint, exit with the command that resumes).
"""

from __future__ import annotations

import logging
import math
import signal
import sys
import time

from transformers import TrainerCallback

log = logging.getLogger("smolforge.train")


# Under a launcher the same stop can reach a training process twice within milliseconds: from the scheduler
# (SLURM signals every process of a job step) and again from torchrun, which forwards what it receives. A repeat
# inside this window is that one request; a later one aborts.
REPEAT_WINDOW_S = 2.0


class StopOnSignal(TrainerCallback):
    """Ctrl-C or SIGTERM: finish the current step, save a checkpoint, stop cleanly.

    With several processes every one must stop after the same step (saving a checkpoint is a collective
    operation), but the signal reaches them at different moments: after each step they agree, through one
    small all-reduce, on whether any of them was asked to stop, and which signal asked.
    """

    def __init__(self, world_size: int = 1):
        self.received: int | None = None
        self.world_size = world_size
        self._received_at = 0.0
        self._previous: dict[int, object] = {}

    def install(self) -> None:
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._previous[sig] = signal.signal(sig, self._handle)

    def uninstall(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    def _handle(self, signum, frame) -> None:
        if self.received is not None:
            if self.world_size > 1 and time.monotonic() - self._received_at < REPEAT_WINDOW_S:
                return  # the same stop, delivered by the scheduler and forwarded by the launcher
            raise KeyboardInterrupt  # a second Ctrl-C: stop now
        self.received, self._received_at = signum, time.monotonic()
        print("\nStopping after this step and saving a checkpoint (press Ctrl-C again to abort)...",
              file=sys.stderr, flush=True)

    def _agreed(self, args) -> int | None:
        """The signal any process received (the same answer in every process)."""
        if self.world_size < 2:
            return self.received
        import torch
        import torch.distributed as dist

        flag = torch.tensor([self.received or 0], dtype=torch.int32, device=args.device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        return int(flag.item()) or None

    def on_step_end(self, args, state, control, **kwargs):
        signum = self._agreed(args)
        if signum is not None:
            self.received = self.received or signum
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
        self.last_reward: float | None = None

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
        if self.last_reward is not None:  # GRPO: the mean reward of the step's sampled completions
            parts.append(f"reward {self.last_reward:.3f}")
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
        if "reward" in logs:
            self.last_reward = float(logs["reward"])
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
