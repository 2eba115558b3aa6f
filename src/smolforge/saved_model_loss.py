"""Eval loss of a saved model on a run's eval split, measured exactly as training measured it.

Same data preparation (`data.prepare` + the length filters), the tokenizer and chat template
saved with the run, the same TRL trainer class and arguments (batch size, batching, attention,
loss masking), and `Trainer.evaluate()`, with a new trainer per model so TRL's own model patches
apply. The full-precision model goes through it first; its number must equal the eval loss
training recorded, which is what makes the variants' numbers comparable to it.
"""

from __future__ import annotations

import logging
import tempfile
from contextlib import nullcontext
from dataclasses import replace
from pathlib import Path

from smolforge.config import SmolforgeConfig
from smolforge.data import apply_length_filters, completion_room, prepare
from smolforge.modelio import load_model, load_saved, load_tokenizer, model_source, release, weight_bytes
from smolforge.runfolder import RunFolder
from smolforge.trainers import loss_flags, make_trainer, trainer_arguments

log = logging.getLogger("smolforge.saved_model_loss")


class Evaluator:
    """Builds the eval data once; `eval_loss(folder)` loads a model folder and evaluates it."""

    def __init__(self, cfg: SmolforgeConfig, run: RunFolder, rt):
        self.cfg, self.run, self.rt = cfg, run, rt
        data = prepare(cfg.data, cfg.training.method)
        self.available = data.eval is not None and cfg.training.method != "grpo"  # GRPO has no loss to compare
        self._ref = None
        self._tmp = tempfile.TemporaryDirectory(prefix="smolforge-eval-")
        if not self.available:
            return
        self.tokenizer = load_tokenizer(cfg, str(run.model_dir), needs_markers=data.kind != "text")
        apply_length_filters(data, self.tokenizer, cfg.data, cfg.training.max_length, completion_room(cfg))
        # The trainer insists on a train set and tokenises it; evaluation never reads it, so one batch will do.
        n = min(len(data.train), cfg.training.batch_size)
        self.data = replace(data, train=data.train.select(range(n)))

    def _ref_model(self):
        """DPO's reference model in training was the base model: evaluate against the same one."""
        if self.cfg.training.method != "dpo":
            return None
        if self._ref is None:
            self._ref = load_model(self.cfg, model_source(self.cfg), self.rt)
        return self._ref

    def _build(self, model):
        common = trainer_arguments(self.cfg, self.rt, Path(self._tmp.name), True, 1)
        common.update(output_dir=self._tmp.name, report_to=[], save_strategy="no", eval_strategy="no",
                      eval_steps=None, logging_strategy="no", run_name=None)
        loss = loss_flags(self.cfg, self.data.kind) if self.cfg.training.method == "sft" else {}
        trainer = make_trainer(self.cfg, self.rt, model, self.tokenizer, self.data, common, loss,
                               ref_model=self._ref_model())
        from transformers.trainer_callback import PrinterCallback

        trainer.remove_callback(PrinterCallback)
        return trainer

    def eval_loss(self, folder: Path) -> float:
        """Mean eval loss of the model saved in `folder` (the trainer's own evaluate())."""
        from unittest import mock

        model = load_saved(folder, self.rt)
        # transformers' Trainer refuses, at construction, a quantized model without trainable adapters: a
        # guard for training. Evaluation only runs forward passes, so that one check is lifted while the trainer
        # for a quantized variant is built; everything else (TRL's patches, data, arguments) is the same.
        guard = mock.patch("transformers.trainer.validate_quantization_for_training") \
            if getattr(model, "is_quantized", False) else nullcontext()
        with guard:
            trainer = self._build(model)
        loss = float(trainer.evaluate()["eval_loss"])
        log.info("eval loss of %s: %.6f", folder, loss)
        size = weight_bytes(model)
        del trainer, model
        release(size)
        return loss

    def close(self) -> None:
        self._ref = None
        self._tmp.cleanup()
