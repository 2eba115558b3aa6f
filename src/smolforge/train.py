"""Train with TRL (SFT or DPO, full or LoRA) and record what was measured.

Reads the resolved config, writes model/ (weights, tokenizer, chat template) and the training
part of results.json. Every number written here comes from the trainer or from counting what
it processed; nothing is estimated.
"""

from __future__ import annotations

import logging
import math
import resource
import sys
import time
import weakref
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from smolforge import hardware, tracking
from smolforge.config import SmolforgeConfig
from smolforge.data import PreparedData, apply_length_filters
from smolforge.errors import SmolforgeError, first_line
from smolforge.runfolder import RunFolder
from smolforge.runtime import Runtime, resolve

log = logging.getLogger("smolforge.train")


class Interrupted(Exception):
    """Training stopped on a signal after saving a checkpoint."""

    def __init__(self, signum: int, step: int, checkpoint: str | None):
        self.signum, self.step, self.checkpoint = signum, step, checkpoint
        super().__init__(f"interrupted at step {step}")


def model_source(cfg: SmolforgeConfig) -> str:
    if cfg.model.is_tiny:
        from smolforge.tiny import ensure_tiny

        return str(ensure_tiny(cfg.model.tiny))
    return cfg.model.name_or_path


def load_tokenizer(cfg: SmolforgeConfig, source: str, needs_markers: bool):
    from transformers import AutoTokenizer
    from trl.chat_template_utils import has_generation_markers

    from smolforge.tiny import chat_template

    try:
        tok = AutoTokenizer.from_pretrained(source, revision=cfg.model.revision,
                                            trust_remote_code=cfg.model.trust_remote_code)
    except OSError as e:
        raise SmolforgeError(f"model.name_or_path: cannot load a tokenizer from {source!r}: "
                             f"{first_line(e)}. Check the id or path, and that you are online "
                             "(or the model is in the Hugging Face cache).") from None
    template = tok.chat_template if isinstance(tok.chat_template, str) else None
    is_smollm3 = "smollm3" in source.lower() or (template and "/no_think" in template)
    if needs_markers and (template is None or not has_generation_markers(template)) and is_smollm3:
        # SmolLM3's shipped template has no {% generation %} markers and TRL has no training variant
        # for it: use smolforge's SmolLM3-compatible template that marks assistant turns.
        tok.chat_template = chat_template()
        log.info("chat template: smolforge's SmolLM3 training template (assistant turns marked for the loss)")
    if tok.chat_template is None and needs_markers:
        raise SmolforgeError(f"The tokenizer of {source!r} has no chat template, so conversations cannot be "
                             "formatted. Use a chat model, or --set data.format=text for plain text.")
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def _torch_dtype(precision: str):
    import torch

    return {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision, torch.float32)


def load_model(cfg: SmolforgeConfig, source: str, rt: Runtime):
    from transformers import AutoModelForCausalLM

    if rt.attn_implementation == "varlen_sdpa":
        from smolforge.attention import register

        register()
    try:
        model = AutoModelForCausalLM.from_pretrained(
            source, revision=cfg.model.revision, trust_remote_code=cfg.model.trust_remote_code,
            dtype=_torch_dtype(rt.precision) if rt.device == "cuda" else _torch_dtype("fp32"),
            attn_implementation=rt.attn_implementation,
        )
    except OSError as e:
        raise SmolforgeError(f"model.name_or_path: cannot load {source!r}: {first_line(e)}. "
                             "Check the id or path, and that you are online (or the model is cached).") from None
    return model


def _lora_config(cfg: SmolforgeConfig):
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
    per_step = t.batch_size * t.gradient_accumulation_steps * world
    return max(1, math.ceil(t.epochs * math.ceil(train_rows / t.batch_size / world) / t.gradient_accumulation_steps)) \
        if per_step else 1


def _common_args(cfg: SmolforgeConfig, rt: Runtime, run: RunFolder, has_eval: bool, total_steps: int) -> dict:
    t, tr = cfg.training, cfg.tracking
    eval_steps = t.eval_steps or max(1, total_steps // 10)
    report_to = [] if tr.backend == "none" else [tr.backend]
    args = dict(
        output_dir=str(run.checkpoints_dir),
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
        report_to=report_to,
        run_name=cfg.experiment_name,
        disable_tqdm=True,
        dataloader_num_workers=0,
        save_only_model=False,
    )
    if rt.activation_checkpointing:
        args["activation_checkpointing_kwargs"] = {"use_reentrant": False}
    if tr.backend == "trackio":
        args.update(project=tr.project or cfg.experiment_name, trackio_space_id=tr.space_id,
                    hub_private_repo=True, trackio_static_space_id=False)
    if rt.batching == "grouped":
        args["train_sampling_strategy"] = "group_by_length"
    return args


def _loss_flags(cfg: SmolforgeConfig, kind: str) -> dict:
    """SFTConfig's loss-mask flags for data.loss_on (plus `loss_on` itself, resolved).

    completion_only_loss is False, not None, for loss_on=all: TRL reads None as "completion
    only" on prompt/completion data, which silently dropped the prompt tokens from the loss.
    """
    from smolforge.data import resolve_loss_on

    loss_on = resolve_loss_on(cfg.data.loss_on, kind)
    return {"assistant_only_loss": loss_on == "assistant",
            "completion_only_loss": loss_on == "completion" if kind == "prompt_completion" else None,
            "loss_on": loss_on}


def _peak_memory(rt: Runtime) -> dict[str, float]:
    out = {"cpu_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}
    if rt.device == "cuda":
        import torch

        out["gpu_allocated_mib"] = round(torch.cuda.max_memory_allocated() / 1024**2, 1)
    return out


@dataclass
class Built:
    """A ready-to-train trainer and the facts results.json needs about it."""

    trainer: Any
    tokenizer: Any
    runtime: Runtime
    loss_on: str
    params_total: int


def build_trainer(cfg: SmolforgeConfig, run: RunFolder, data: PreparedData) -> Built:
    """Tokenizer, length filters, model and the TRL trainer exactly as `smolforge run` trains them.

    Also used by benchmarks/throughput.py, so the benchmark measures the real default path.
    """
    tracking.setup_env(cfg)
    import torch
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()

    from smolforge.runtime import tune_malloc

    rt = resolve(cfg)
    rt.malloc_tuned = tune_malloc()  # measured +10% tokens/s on CPU (benchmarks/throughput.py); numerically a no-op
    t = cfg.training
    source = model_source(cfg)
    loss = _loss_flags(cfg, data.kind) if t.method == "sft" else {"loss_on": "completion"}
    tokenizer = load_tokenizer(cfg, source, needs_markers=data.kind != "text")
    apply_length_filters(data, tokenizer, cfg.data, t.max_length)
    model = load_model(cfg, source, rt)
    if t.finetune == "lora":
        check_lora_targets(model, t.lora.target_modules)
    params_total = sum(p.numel() for p in model.parameters())
    torch.manual_seed(t.seed)

    total_steps = planned_steps(cfg, len(data.train), rt.world_size)
    common = _common_args(cfg, rt, run, data.eval is not None, total_steps)
    peft_config = _lora_config(cfg) if t.finetune == "lora" else None

    trainer = make_trainer(cfg, rt, model, tokenizer, data, common, loss, peft_config=peft_config)
    from transformers.trainer_callback import PrinterCallback

    trainer.remove_callback(PrinterCallback)  # smolforge's ProgressLog prints and logs instead
    return Built(trainer, tokenizer, rt, loss["loss_on"], params_total)


def make_trainer(cfg: SmolforgeConfig, rt: Runtime, model, tokenizer, data: PreparedData, common: dict,
                 loss: dict, peft_config=None, ref_model=None):
    """The TRL trainer training uses; evaluate.py builds the same one to measure quantized variants."""
    from trl import DPOConfig, SFTConfig

    from smolforge.trainer_ext import make_dpo_trainer_class, make_sft_trainer_class

    t = cfg.training
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


def train(cfg: SmolforgeConfig, run: RunFolder, data: PreparedData, console=None,
          resume_from: str | None = None) -> dict[str, Any]:
    """Run the trainer; save model/; return the training section of results.json (rank 0)."""
    from smolforge.trainer_ext import ProgressLog, StopOnSignal

    started = datetime.now(timezone.utc)
    built = build_trainer(cfg, run, data)
    trainer, tokenizer, rt = built.trainer, built.tokenizer, built.runtime
    params_total = built.params_total
    loss = {"loss_on": built.loss_on}

    stopper = StopOnSignal()
    trainer.add_callback(stopper)
    if cfg.tracking.backend == "trackio":
        trainer.add_callback(tracking.config_callback(cfg))
    trainer.add_callback(ProgressLog(weakref.ref(trainer), console if trainer.is_world_process_zero() else None))
    trainable = sum(p.numel() for p in trainer.model.parameters() if p.requires_grad)
    log.info("runtime: %s", rt.as_dict())

    stopper.install()
    try:
        t0 = time.perf_counter()
        train_output = trainer.train(resume_from_checkpoint=resume_from)
        train_wall = time.perf_counter() - t0
    finally:
        stopper.uninstall()
    if stopper.received is not None:
        from transformers.trainer_utils import get_last_checkpoint

        raise Interrupted(stopper.received, trainer.state.global_step, get_last_checkpoint(str(run.checkpoints_dir)))

    train_log = dict(trainer.state.log_history[-1])  # the trainer's final summary (train_loss, runtime...)
    final_eval = _final_eval(trainer) if data.eval is not None else None
    counts = trainer.sf_total_counts()
    if not trainer.is_world_process_zero():
        return {}

    save_model(trainer, tokenizer, cfg, run, rt)
    return _results(cfg, rt, data, trainer, train_output, train_log, final_eval, counts, train_wall,
                    params_total, trainable, loss["loss_on"], started, resume_from)


def _final_eval(trainer) -> dict[str, Any]:
    """The evaluation of the final weights: the trainer's own end-of-training eval when it ran at
    the last step (no second pass, and no second tracking session), else a fresh evaluate()."""
    step = trainer.state.global_step
    last = next((h for h in reversed(trainer.state.log_history) if "eval_loss" in h), None)
    if last is not None and last.get("step") == step:
        return dict(last)
    return trainer.evaluate()


def save_model(trainer, tokenizer, cfg: SmolforgeConfig, run: RunFolder, rt: Runtime) -> None:
    """Write model/: full weights (or the LoRA adapter, or merged weights), tokenizer, chat template."""
    model = trainer.model
    if cfg.training.finetune == "lora" and cfg.training.lora.merge:
        model = model.merge_and_unload()
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    if rt.attn_implementation not in ("sdpa", "eager", "flash_attention_2"):
        # smolforge's training-only attention must not leak into the published config
        base.config._attn_implementation = "sdpa"
    if hasattr(base, "generation_config") and base.generation_config is not None:
        base.generation_config.pad_token_id = tokenizer.pad_token_id
        base.generation_config.eos_token_id = tokenizer.eos_token_id
    run.model_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(run.model_dir), safe_serialization=True)
    tokenizer.save_pretrained(str(run.model_dir))


def _results(cfg, rt, data, trainer, train_output, train_log, final_eval, counts, train_wall,
             params_total, trainable, loss_on, started, resume_from) -> dict[str, Any]:
    history = trainer.state.log_history
    step_losses = [(h["step"], h["loss"]) for h in history if "loss" in h]
    by_step = {h["step"]: {"step": h["step"], "epoch": h.get("epoch"), "eval_loss": h["eval_loss"]}
               for h in history if "eval_loss" in h}  # the final evaluate() may repeat the last step's
    eval_history = [by_step[s] for s in sorted(by_step)]
    runtime_s = float(train_log.get("train_runtime", train_wall))
    results: dict[str, Any] = {
        "schema_version": 1,
        "experiment_name": cfg.experiment_name,
        "started_at": started.isoformat(timespec="seconds"),
        "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "method": cfg.training.method,
        "finetune": cfg.training.finetune,
        "base_model": cfg.model.name_or_path,
        "train_loss": train_log.get("train_loss", train_output.training_loss),
        "global_steps": trainer.state.global_step,
        "epochs": train_log.get("epoch", trainer.state.epoch),
        "train_runtime_s": runtime_s,
        "train_samples_per_second": train_log.get("train_samples_per_second"),
        "train_steps_per_second": train_log.get("train_steps_per_second"),
        "total_flos": train_log.get("total_flos"),
        "tokens": {
            "supervised": counts["supervised"],
            "real": counts["real"],
            "processed": counts["processed"],
            "padding_fraction": round(1 - counts["real"] / counts["processed"], 4) if counts["processed"] else None,
        },
        "tokens_per_second": round(counts["supervised"] / runtime_s, 1) if runtime_s > 0 else None,
        "parameters": {"total": params_total, "trainable": trainable},
        "loss_on": loss_on,
        "runtime": rt.as_dict(),
        "peak_memory": _peak_memory(rt),
        "hardware": hardware.detect(),
        "versions": hardware.versions(),
        "dataset": data.stats,
        "train_log": train_log,
        "eval_history": eval_history,
        "log_history": [dict(h) for h in history],
    }
    if step_losses:
        results["final_train_loss"] = step_losses[-1][1]
        results["final_train_loss_step"] = step_losses[-1][0]
    if resume_from:
        results["resumed_from"] = Path(resume_from).name
    if final_eval is not None:
        eval_loss = float(final_eval["eval_loss"])
        results["eval_loss"] = eval_loss
        results["eval_log"] = dict(final_eval)
        results["eval_split"] = data.stats.get("eval_source")
        # perplexity is exp(token cross-entropy): it means nothing for DPO's preference loss.
        # exp() overflows beyond ~709: an unmeasurable perplexity is left out.
        if cfg.training.method == "sft" and eval_loss < 700:
            results["perplexity"] = math.exp(eval_loss)
    tracked = tracking.info(cfg)
    if tracked:
        results["tracking"] = tracked
    argv = " ".join(sys.argv[1:]) if sys.argv and Path(sys.argv[0]).name == "smolforge" else None
    if argv:
        results["command"] = f"smolforge {argv}"
    return results
