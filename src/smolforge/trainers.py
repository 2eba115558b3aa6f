"""TRL's trainers as smolforge runs them: the arguments built from the config, and what smolforge adds.

Training and evaluation (`evaluate.py`, which measures saved models exactly as training did) build
their trainers here, from `trainer_arguments` and `make_trainer`. The additions: token accounting
(processed, real and supervised tokens), truncation for padding-free batches, and checkpoints that
count only when complete (`smolforge_progress.json` is written last, with the totals so far), with
a clear error when the disk fills up while one is saved.
"""

from __future__ import annotations

import errno
import json
import math
import shutil
import time
from pathlib import Path
from typing import Any

from smolforge import fsdp
from smolforge.config import SmolforgeConfig
from smolforge.data import resolve_loss_on
from smolforge.errors import SmolforgeError
from smolforge.resume import PROGRESS_FILE
from smolforge.rewards import samples_thinking
from smolforge.runtime import Runtime

COUNTS = ("processed", "real", "supervised")


class CheckpointNoSpace(SmolforgeError):
    """The disk filled up while a checkpoint was written; the partial checkpoint was removed."""


def _no_space(e: BaseException) -> bool:
    text = str(e).lower()
    return getattr(e, "errno", None) == errno.ENOSPC or "no space left" in text or \
        ("enforce fail" in text and "write" in text) or "failed writing file" in text


def _mb(n: float) -> str:
    return f"{n / 1e6:,.0f} MB"


class TokenAccounting:
    """Mixin for a TRL trainer: token counts per step, totals across processes, and complete checkpoints.

    `supervised` counts loss terms: positions whose next-token label is not -100. tokens/s and
    padding waste in results.json are computed from these numbers. `sf_previous` holds what the
    segments before a resume counted (read back from the checkpoint resumed from).
    """

    sf_previous: dict[str, Any] = {}  # set per run by train(); class defaults keep a bare trainer usable
    sf_segment: dict[str, Any] = {}

    def create_accelerator_and_postprocess(self) -> None:
        """The trainer's Accelerator; FSDP on CPU processes needs `fsdp.allow_on_cpu`."""
        with fsdp.allow_on_cpu(bool(self.args.fsdp) and self.args.use_cpu):
            super().create_accelerator_and_postprocess()

    def create_model_card(self, *args, **kwargs) -> None:
        """smolforge writes the real card from results.json; TRL's auto-card would land in checkpoints/."""

    def _sf_counts(self) -> dict[str, int]:
        if not hasattr(self, "sf_counts"):
            self.sf_counts = dict.fromkeys(COUNTS, 0)
        return self.sf_counts

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if model.training:
            ids = inputs.get("input_ids")
            if ids is None and "completion_ids" in inputs:  # GRPO: a prompt and a sampled completion (the loss's)
                counts = self._sf_counts()
                counts["processed"] += inputs["prompt_ids"].numel() + inputs["completion_ids"].numel()
                counts["real"] += int(inputs["prompt_mask"].sum()) + int(inputs["completion_mask"].sum())
                counts["supervised"] += int(inputs["completion_mask"].sum())
            if ids is not None:
                counts = self._sf_counts()
                counts["processed"] += ids.numel()
                mask = inputs.get("attention_mask")
                counts["real"] += int(mask.sum()) if mask is not None else ids.numel()
                labels = inputs.get("labels")
                if labels is None and "completion_mask" in inputs:  # DPO marks the loss span with a mask
                    counts["supervised"] += int(inputs["completion_mask"][:, 1:].sum())
                elif labels is not None:
                    counts["supervised"] += int((labels[..., 1:] != -100).sum())
        return super().compute_loss(model, inputs, return_outputs=return_outputs,
                                    num_items_in_batch=num_items_in_batch)

    def sf_total_counts(self) -> dict[str, int]:
        """This segment's counts summed over processes, plus the earlier segments' totals."""
        import torch

        counts = self._sf_counts()
        t = torch.tensor([counts[k] for k in COUNTS], dtype=torch.long, device=self.accelerator.device)
        if self.accelerator.num_processes > 1:
            t = self.accelerator.reduce(t, reduction="sum")
        before = self.sf_previous.get("tokens") or {}
        return {k: int(v) + int(before.get(k, 0)) for k, v in zip(COUNTS, t.tolist(), strict=True)}

    def sf_segment_seconds(self) -> float:
        """Training time of this segment so far."""
        started = getattr(self, "sf_segment_t0", None)
        return time.perf_counter() - started if started is not None else 0.0

    def _save_checkpoint(self, model, trial):
        folder = Path(self.args.output_dir) / f"checkpoint-{self.state.global_step}"
        counts = self.sf_total_counts()  # every process takes part in the sum, before anything is written
        try:
            super()._save_checkpoint(model, trial)
        except (OSError, RuntimeError) as e:
            if not _no_space(e):
                raise
            shutil.rmtree(folder, ignore_errors=True)
            free = shutil.disk_usage(folder.parent).free
            params = sum(p.numel() * p.element_size() for p in self.model.parameters())
            raise CheckpointNoSpace(
                f"No space left on the disk of {folder.parent} while saving {folder.name} (it needs about "
                f"{_mb(3 * params)}: the weights and the optimizer state; {_mb(free)} is free). The partial "
                "checkpoint was removed. Free some space (or lower training.save_total_limit), then continue with "
                f"`smolforge run {folder.parent.parent} --resume`, which starts from the last complete "
                "checkpoint.") from None
        self.accelerator.wait_for_everyone()  # every process wrote its part (RNG state, FSDP shards) first
        if self.args.should_save:
            segment = self.sf_segment_record(counts, self.state.global_step, self.sf_segment_seconds())
            progress = {"step": self.state.global_step, "tokens": counts,
                        "segments": [*self.sf_previous.get("segments", []), segment]}
            (folder / PROGRESS_FILE).write_text(json.dumps(progress, indent=2) + "\n", encoding="utf-8")

    def sf_segment_record(self, totals: dict[str, int], to_step: int, seconds: float) -> dict[str, Any]:
        """This segment as results.json lists it: where it started and ended, its time and its own tokens."""
        before = self.sf_previous.get("tokens") or {}
        return {**self.sf_segment, "to_step": to_step, "runtime_s": seconds,
                "tokens": {k: totals[k] - int(before.get(k, 0)) for k in COUNTS}}


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


def make_grpo_trainer_class():
    """GRPOTrainer + token accounting: prompt and completion tokens processed, completion tokens trained."""
    from trl import GRPOTrainer

    class SmolforgeGRPOTrainer(TokenAccounting, GRPOTrainer):
        pass

    return SmolforgeGRPOTrainer


def trainer_arguments(cfg: SmolforgeConfig, rt: Runtime, output_dir: Path, has_eval: bool,
                      total_steps: int) -> dict[str, Any]:
    """The TrainingArguments shared by SFTConfig and DPOConfig, from the config and the resolved runtime."""
    t, tr = cfg.training, cfg.tracking
    eval_steps = t.eval_steps or max(1, total_steps // 10)
    args: dict[str, Any] = dict(
        output_dir=str(output_dir),
        per_device_train_batch_size=t.batch_size,
        per_device_eval_batch_size=t.batch_size,
        gradient_accumulation_steps=t.gradient_accumulation_steps,
        learning_rate=t.learning_rate,
        lr_scheduler_type=t.lr_scheduler,
        warmup_steps=t.warmup_ratio,  # a float < 1 is a ratio of total steps in transformers 5
        weight_decay=t.weight_decay,
        max_grad_norm=t.max_grad_norm,
        num_train_epochs=t.epochs,
        max_steps=t.max_steps,
        logging_steps=t.logging_steps,
        logging_first_step=True,
        eval_strategy="steps" if has_eval else "no",
        eval_steps=eval_steps if has_eval else None,
        save_strategy="steps",
        save_steps=t.save_steps,
        save_total_limit=t.save_total_limit,
        seed=t.seed,
        data_seed=t.seed,
        bf16=rt.precision == "bf16",
        fp16=rt.precision == "fp16",
        use_cpu=rt.device == "cpu",
        activation_checkpointing=rt.activation_checkpointing,
        report_to=[] if tr.backend == "none" else [tr.backend],
        run_name=cfg.experiment_name,
        disable_tqdm=True,
        dataloader_num_workers=0,
        save_only_model=False,
    )
    if rt.liger_kernel:
        args["use_liger_kernel"] = True  # TRL applies Liger's layer kernels and keeps its own fused LM head
    if rt.activation_checkpointing:
        args["activation_checkpointing_kwargs"] = {"use_reentrant": False}
    if tr.backend == "trackio":
        args.update(project=tr.project or cfg.experiment_name, trackio_space_id=tr.space_id,
                    hub_private_repo=True, trackio_static_space_id=False)
    if t.distributed == "fsdp" and rt.world_size > 1:
        args.update(fsdp.trainer_arguments())
    if rt.batching == "grouped":
        args["train_sampling_strategy"] = "group_by_length"
    return args


def loss_flags(cfg: SmolforgeConfig, kind: str) -> dict[str, Any]:
    """SFTConfig's loss-mask flags for data.loss_on (plus `loss_on` itself, resolved).

    completion_only_loss is False, not None, for loss_on=all: TRL reads None as "completion
    only" on prompt/completion data, which silently dropped the prompt tokens from the loss.
    """
    loss_on = resolve_loss_on(cfg.data.loss_on, kind)
    return {"assistant_only_loss": loss_on == "assistant",
            "completion_only_loss": loss_on == "completion" if kind == "prompt_completion" else None,
            "loss_on": loss_on}


def grpo_arguments(cfg: SmolforgeConfig, rt: Runtime) -> dict[str, Any]:
    """GRPOConfig's GRPO settings: the sampling, the loss, the rewards' weights; vLLM in colocate mode (inside the
    training processes, sharing their GPUs) when the runtime chose it."""
    g = cfg.training.grpo
    args: dict[str, Any] = dict(
        num_generations=g.num_generations, max_completion_length=g.max_completion_length, temperature=g.temperature,
        beta=g.beta, loss_type=g.loss_type, reward_weights=g.weights,
        chat_template_kwargs={"enable_thinking": samples_thinking(cfg)}, log_completions=False)
    if rt.generation == "vllm":
        args.update(use_vllm=True, vllm_mode="colocate", vllm_gpu_memory_utilization=g.vllm_gpu_memory,
                    vllm_max_model_length=cfg.training.max_length)
    return args


def make_trainer(cfg: SmolforgeConfig, rt: Runtime, model, tokenizer, data, common: dict, loss: dict,
                 peft_config=None, ref_model=None, reward_funcs=None):
    """The TRL trainer for the config's method, with smolforge's additions."""
    from trl import DPOConfig, GRPOConfig, SFTConfig

    t = cfg.training
    if t.method == "grpo":
        args = GRPOConfig(**common, **grpo_arguments(cfg, rt))
        train = data.train.remove_columns(["chat_template_kwargs"])  # the mode is the run's, not a reward's input
        return make_grpo_trainer_class()(model=model, reward_funcs=reward_funcs, args=args, train_dataset=train,
                                         processing_class=tokenizer, peft_config=peft_config)
    if t.method == "sft":
        padding_free = rt.batching == "padding_free"
        args = SFTConfig(
            **common,
            max_length=None if padding_free else t.max_length,
            packing=rt.batching == "packed",
            padding_free=padding_free,
            assistant_only_loss=loss["assistant_only_loss"],
            completion_only_loss=loss["completion_only_loss"],
            dataset_num_proc=None,
        )
        trainer_cls = make_sft_trainer_class()
        trainer_cls.sf_truncate_to = t.max_length if padding_free else None
        return trainer_cls(model=model, args=args, train_dataset=data.train, eval_dataset=data.eval,
                           processing_class=tokenizer, peft_config=peft_config)
    args = DPOConfig(**common, max_length=t.max_length, beta=t.dpo.beta, loss_type=[t.dpo.loss_type])
    return make_dpo_trainer_class()(model=model, ref_model=ref_model, args=args, train_dataset=data.train,
                                    eval_dataset=data.eval, processing_class=tokenizer, peft_config=peft_config)


def lora_config(cfg: SmolforgeConfig):
    from peft import LoraConfig

    lc = cfg.training.lora
    return LoraConfig(r=lc.r, lora_alpha=lc.alpha, lora_dropout=lc.dropout, target_modules=lc.target_modules,
                      task_type="CAUSAL_LM")


def check_lora_targets(model, target_modules: list[str] | str) -> None:
    """Every name in training.lora.target_modules must match a linear layer.

    PEFT only fails when *no* name matches, so a typo in one of several names would silently
    train fewer layers than configured.
    """
    import torch

    if isinstance(target_modules, str):  # "all-linear"
        return
    linear = {name.rsplit(".", 1)[-1] for name, m in model.named_modules() if isinstance(m, torch.nn.Linear)}
    unknown = [t for t in target_modules if t.rsplit(".", 1)[-1] not in linear]
    if unknown:
        raise SmolforgeError(f"training.lora.target_modules: {', '.join(repr(t) for t in unknown)} matches no linear "
                             f"layer of the model. Its linear layers are: {', '.join(sorted(linear))}. "
                             "Use those names, or all-linear.")


def planned_steps(cfg: SmolforgeConfig, train_rows: int, world: int) -> int:
    t = cfg.training
    if t.max_steps > 0:
        return t.max_steps
    if t.method == "grpo":  # a step trains on global batch / num_generations prompts, each sampled that often
        per_step = t.batch_size * t.gradient_accumulation_steps * world
        return max(1, math.ceil(t.epochs * train_rows * t.grpo.num_generations / per_step))
    per_step = t.batch_size * t.gradient_accumulation_steps * world
    return max(1, math.ceil(t.epochs * math.ceil(train_rows / t.batch_size / world) / t.gradient_accumulation_steps)) \
        if per_step else 1
