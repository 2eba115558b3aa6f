"""Train with TRL (SFT or DPO, full or LoRA) and record what was measured.

Reads the resolved config, writes model/ (weights, tokenizer, chat template) and the training
part of results.json. Every number written here comes from the trainer or from counting what
it processed; nothing is estimated.
"""

from __future__ import annotations

import json
import logging
import math
import resource
import shlex
import time
import weakref
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from smolforge import hardware, lmhead, tracking
from smolforge.config import SmolforgeConfig
from smolforge.data import PreparedData, apply_length_filters, completion_room
from smolforge.errors import Interrupted
from smolforge.evaluation.stats import compare_paired
from smolforge.launch import this_command
from smolforge.modelio import (
    architecture,
    four_bit_facts,
    generation_defaults,
    load_model,
    load_tokenizer,
    merge_adapter,
    model_source,
    parameter_count,
    perplexity,
    save_for_publishing,
    template_facts,
    torch_dtype,
)
from smolforge.nodes import single_process
from smolforge.resume import last_checkpoint, read_progress
from smolforge.rewards import RewardSpec, reward_functions, reward_specs, samples_thinking
from smolforge.rollouts import score_rollouts
from smolforge.runfolder import RunFolder
from smolforge.runtime import Runtime, resolve, tune_malloc
from smolforge.trainers import (
    check_lora_targets,
    lora_config,
    loss_flags,
    make_trainer,
    planned_steps,
    trainer_arguments,
)

log = logging.getLogger("smolforge.train")


def _peak_memory(rt: Runtime) -> dict[str, float]:
    """This process's peak memory; with several processes (a collective), the largest of any of them."""
    out = {"cpu_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}
    if rt.device == "cuda":
        import torch

        out["gpu_allocated_mib"] = round(torch.cuda.max_memory_allocated() / 1024**2, 1)
    if rt.world_size > 1:
        import torch.distributed as dist

        every: list[dict[str, float]] = [{} for _ in range(dist.get_world_size())]
        dist.all_gather_object(every, out)
        out = {k: max(m[k] for m in every) for k in out}
    return out


@dataclass
class Built:
    """A ready-to-train trainer and the facts results.json needs about it."""

    trainer: Any
    tokenizer: Any
    runtime: Runtime
    loss_on: str
    params_total: int
    rewards: list[RewardSpec] | None = None  # GRPO: the reward functions, as results.json records them
    reward_funcs: list[Any] | None = None


def build_trainer(cfg: SmolforgeConfig, run: RunFolder, data: PreparedData, baseline: bool = False) -> Built:
    """Tokenizer, length filters, model and the TRL trainer exactly as `smolforge run` trains them.

    `baseline`: evaluate the untrained model first (step 0), the number the final eval loss is compared
    with. Also used by `smolforge plan --calibrate`, so its measured steps are the real default path.
    """
    tracking.setup_env(cfg)
    import torch
    from transformers.trainer_callback import PrinterCallback
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    rt = resolve(cfg)
    rt.malloc_tuned = tune_malloc()  # measured +10% tokens/s on CPU (benchmarks/throughput.py); numerically a no-op
    if cfg.training.method == "sft":
        levers = lmhead.enable()  # same loss and gradients; see lmhead.py for the measurement
        rt.supervised_lm_head, rt.whole_lm_head = levers["supervised_only"], levers["whole"]
    t = cfg.training
    source = model_source(cfg)
    loss = loss_flags(cfg, data.kind) if t.method == "sft" else {"loss_on": "completion"}
    tokenizer = load_tokenizer(cfg, source, needs_markers=data.kind != "text")
    apply_length_filters(data, tokenizer, cfg.data, t.max_length, completion_room(cfg))
    model = load_model(cfg, source, rt, four_bit=t.four_bit_base)
    if t.adapters:
        check_lora_targets(model, t.lora.target_modules)
    params_total = parameter_count(model)
    torch.manual_seed(t.seed)

    total_steps = planned_steps(cfg, len(data.train), rt.world_size)
    # GRPO has no loss to evaluate: its held-out prompts are sampled and scored before and after training instead
    has_eval = data.eval is not None and t.method != "grpo"
    common = trainer_arguments(cfg, rt, run.checkpoints_dir, has_eval, total_steps)
    common["eval_on_start"] = baseline and has_eval
    peft_config = lora_config(cfg) if t.adapters else None
    specs = reward_specs(cfg) if t.method == "grpo" else None
    funcs = reward_functions(cfg, specs) if specs is not None else None
    trainer = make_trainer(cfg, rt, model, tokenizer, data, common, loss, peft_config=peft_config,
                           reward_funcs=funcs)
    if t.four_bit_base:
        _adapters_in_run_dtype(trainer.model, rt)
    trainer.remove_callback(PrinterCallback)  # smolforge's ProgressLog prints and logs instead
    return Built(trainer, tokenizer, rt, loss["loss_on"], params_total, specs, funcs)


def _adapters_in_run_dtype(model, rt) -> None:
    """TRL casts the adapters of a 4-bit model to bf16 (the QLoRA paper's GPU recipe). Keep them in the run's own
    dtype instead: the same bf16 on a bf16 GPU, fp32 where the run computes in fp32 (a CPU, where bf16 math is
    slower and AdamW in bf16 loses small updates). Runs before the optimizer exists, so its state follows."""
    dtype = torch_dtype(rt)
    for param in model.parameters():
        if param.requires_grad and param.dtype != dtype:
            param.data = param.data.to(dtype)


def train(cfg: SmolforgeConfig, run: RunFolder, data: PreparedData, console=None,
          resume_from: Path | None = None, topology: dict[str, Any] | None = None) -> dict[str, Any]:
    """Run the trainer; save model/; return the training section of results.json (rank 0). `topology`: the
    nodes and processes the run met on (`nodes.meet`); None for one process."""
    from smolforge.callbacks import ProgressLog, StopOnSignal  # lazy: they subclass transformers' TrainerCallback

    started = datetime.now(timezone.utc)
    built = build_trainer(cfg, run, data, baseline=resume_from is None)  # a resumed run has its step-0 eval
    trainer, tokenizer, rt = built.trainer, built.tokenizer, built.runtime
    trainer.sf_previous = read_progress(resume_from)
    trainer.sf_segment = {"started_at": started.isoformat(timespec="seconds"), "command": this_command(),
                          "from_step": trainer.sf_previous.get("step", 0),
                          **({"resumed_from": resume_from.name} if resume_from else {})}

    stopper = StopOnSignal(world_size=rt.world_size)
    trainer.add_callback(stopper)
    if cfg.tracking.backend == "trackio":
        trainer.add_callback(tracking.config_callback(cfg))
        tracking.quiet_callbacks(trainer)
        if resume_from is not None and trainer.is_world_process_zero():
            tracking.drop_points_after(cfg, int(resume_from.name.rsplit("-", 1)[-1]))
    trainer.add_callback(ProgressLog(weakref.ref(trainer), console if trainer.is_world_process_zero() else None))
    log.info("runtime: %s", rt.as_dict())

    before = _held_out_rollouts(cfg, run, built, data, "before", resume_from)
    stopper.install()
    try:
        trainer.sf_segment_t0 = time.perf_counter()
        train_output = trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
    finally:
        stopper.uninstall()
    if stopper.received is not None:
        ckpt = last_checkpoint(run)
        step = trainer.state.global_step
        where = f" in {ckpt}" if ckpt else ""
        raise Interrupted(f"Training stopped at step {step}; checkpoint saved{where}. Resume with: "
                          f"smolforge run {shlex.quote(str(run.root))} --resume", stopper.received, step,
                          str(ckpt) if ckpt else None)

    train_log = dict(trainer.state.log_history[-1])  # the trainer's final summary (train_loss, runtime...)
    final_eval = _final_eval(trainer) if data.eval is not None and cfg.training.method != "grpo" else None
    after = _held_out_rollouts(cfg, run, built, data, "after") if trainer.is_world_process_zero() else None
    counts = trainer.sf_total_counts()
    gathered = _full_weights(trainer)  # every process takes part in an FSDP gather
    peak = _peak_memory(rt)  # and in the peak-memory gather
    if not trainer.is_world_process_zero():
        return {}
    weights = save_model(trainer, tokenizer, cfg, run, rt, state_dict=gathered)
    segment = {**trainer.sf_segment_record(counts, trainer.state.global_step,
                                           float(train_log.get("train_runtime", 0.0))),
               "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    results = _results(cfg, rt, data, trainer, train_output, train_log, final_eval, counts, built, segment)
    results["model_files"] = {"weights_sha256": weights,
                              "weights_bytes": sum((run.model_dir / name).stat().st_size for name in weights),
                              **_model_facts(trainer, tokenizer, data)}

    results.update(peak_memory=peak, topology=topology or single_process())
    if built.rewards is not None:
        results["grpo"] = _grpo_results(cfg, built, trainer, before, after)
    if cfg.training.four_bit_base:
        results["four_bit_base"] = four_bit_facts(trainer.model)
    return results


GRPO_BEFORE = "grpo_held_out_before.json"  # in checkpoints/: the base's held-out rollouts, kept for a resume


def _held_out_rollouts(cfg: SmolforgeConfig, run: RunFolder, built: Built, data: PreparedData, when: str,
                       resume_from: Path | None = None) -> dict[str, Any] | None:
    """GRPO: sample and score the held-out prompts (`before` training: the starting model; `after`: the trained
    one), with the run's sampling settings and a fixed seed. A resumed run reads the first segment's `before`.
    Not under FSDP: there rank 0 holds a shard of each weight and cannot sample alone (the run says so)."""
    g = cfg.training.grpo
    if built.reward_funcs is None or data.eval is None or g.eval_prompts == 0:
        return None
    if getattr(built.trainer, "is_fsdp_enabled", False):
        log.warning("held-out rollouts skipped: under FSDP no single process holds the whole model to sample from")
        return None
    saved = run.checkpoints_dir / GRPO_BEFORE
    if when == "before" and resume_from is not None:
        return json.loads(saved.read_text(encoding="utf-8")) if saved.is_file() else None
    if not built.trainer.is_world_process_zero():
        return None
    rows = [dict(data.eval[i]) for i in range(min(g.eval_prompts, len(data.eval)))]
    columns = {k: [r[k] for r in rows] for k in rows[0] if k not in ("prompt", "chat_template_kwargs")}
    model = built.trainer.accelerator.unwrap_model(built.trainer.model)
    scored = score_rollouts(model, built.tokenizer, [r["prompt"] for r in rows], columns, built.reward_funcs,
                            cfg.training.grpo.weights, samples=g.num_generations,
                            max_new_tokens=g.max_completion_length, temperature=g.temperature,
                            think=samples_thinking(cfg), seed=cfg.training.seed)
    log.info("held-out rollouts %s training: %s", when, {k: v for k, v in scored.items() if k != "examples"})
    if when == "before":
        saved.parent.mkdir(parents=True, exist_ok=True)
        saved.write_text(json.dumps(scored, indent=2) + "\n", encoding="utf-8")
    return scored


def _grpo_results(cfg: SmolforgeConfig, built: Built, trainer, before, after) -> dict[str, Any]:
    """results.json's `grpo` section: the rewards (user functions with their file's SHA-256), the settings, the
    training curve of the rewards, and the held-out rollouts before and after training."""
    g = cfg.training.grpo
    curve = [{"step": h["step"], "reward": h["reward"], "reward_std": h.get("reward_std"),
              **{k: v for k, v in h.items() if k.startswith("rewards/") or k in (
                  "kl", "completions/mean_length", "completions/clipped_ratio", "frac_reward_zero_std")}}
             for h in trainer.state.log_history if "reward" in h]
    return {"rewards": [s.record() for s in built.rewards], "weights": g.weights,
            "num_generations": g.num_generations, "max_completion_length": g.max_completion_length,
            "temperature": g.temperature, "beta": g.beta, "loss_type": g.loss_type,
            "mode": "think" if samples_thinking(cfg) else "no_think",
            "generation": "vLLM (colocate)" if built.runtime.generation == "vllm" else "transformers generate",
            "training_curve": curve, "held_out": {"before": before, "after": after,
                                                  "change": held_out_change(before, after, cfg)}}


def held_out_change(before: dict[str, Any] | None, after: dict[str, Any] | None,
                    cfg: SmolforgeConfig) -> dict[str, Any] | None:
    """Each reward's change on the held-out prompts (and the weighted total's), paired by prompt: a prompt's score
    is its mean over its completions, before and after training. evaluation.stats.compare_paired gives the 95%
    interval of the mean difference (a bootstrap; Newcombe's for 0/1 scores) and its exact test, as for the
    benchmarks' base-vs-fine-tune rows."""
    if not before or not after or not before.get("per_prompt") or not after.get("per_prompt"):
        return None
    out = {}
    for name, scores in after["per_prompt"].items():
        pairs = [(b, a) for b, a in zip(before["per_prompt"].get(name) or [], scores, strict=False)
                 if b is not None and a is not None]
        if len(pairs) < 2:
            continue
        c = compare_paired([b for b, _ in pairs], [a for _, a in pairs], cfg.evaluation.bootstrap_resamples,
                           cfg.training.seed)
        out[name] = {"prompts": c.n, "delta": round(c.delta, 4), "ci_low": round(c.ci_low, 4),
                     "ci_high": round(c.ci_high, 4), "p_value": round(c.p_value, 6), "test": c.test,
                     "interval": c.interval}
    return out or None


def _model_facts(trainer, tokenizer, data: PreparedData) -> dict[str, Any]:
    """What the card's usage and specification sections need, recorded while the model is at hand."""
    from collections import Counter

    model = trainer.model
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    facts: dict[str, Any] = {"architecture": architecture(base.config), "generation_defaults":
                             generation_defaults(base), "chat_template": template_facts(tokenizer),
                             "tokenizer_class": type(tokenizer).__name__,
                             "dtype": str(base.dtype).removeprefix("torch.")}
    if data.kind != "text" and "chat_template_kwargs" in data.train.column_names:
        modes = Counter("think" if (kw or {}).get("enable_thinking") else "no_think"
                        for kw in data.train["chat_template_kwargs"])
        facts["trained_modes"] = dict(modes)
    return facts


def _final_eval(trainer) -> dict[str, Any]:
    """The evaluation of the final weights: the trainer's own end-of-training eval when it ran at
    the last step (no second pass, and no second tracking session), else a fresh evaluate()."""
    step = trainer.state.global_step
    last = next((h for h in reversed(trainer.state.log_history) if "eval_loss" in h), None)
    if last is not None and last.get("step") == step:
        return dict(last)
    return trainer.evaluate()


def _full_weights(trainer) -> dict[str, Any] | None:
    """Under FSDP each process holds a shard of every weight: the full weights for model/, gathered on rank 0
    (on the CPU) by accelerate. None when every process holds the whole model."""
    if not getattr(trainer, "is_fsdp_enabled", False):
        return None
    state = trainer.accelerator.get_state_dict(trainer.model)
    # The gathered tensors no longer share storage, so save_pretrained cannot tell tied weights apart: leave out
    # the tied copies (lm_head.weight when it is the embedding matrix), as it does for an unsharded model.
    tied = getattr(trainer.accelerator.unwrap_model(trainer.model), "all_tied_weights_keys", None) or {}
    return {k: v for k, v in state.items() if k not in tied}


def save_model(trainer, tokenizer, cfg: SmolforgeConfig, run: RunFolder, rt: Runtime,
               state_dict: dict[str, Any] | None = None) -> dict[str, str]:
    """Write model/: full weights (or the LoRA adapter, or merged weights), tokenizer, chat template; returns
    the sha256 of each weight file. `state_dict`: the full weights gathered from an FSDP run's shards."""
    model, t = trainer.model, cfg.training
    if t.adapters and t.lora.merge:
        if t.four_bit_base:  # merging into 4-bit weights would round them again: merge into the base's own weights
            import tempfile

            with tempfile.TemporaryDirectory(prefix="smolforge-adapter-") as adapter:
                model.save_pretrained(adapter)
                model = merge_adapter(cfg, rt, Path(adapter))
        else:
            model = model.merge_and_unload()
    return save_for_publishing(model, tokenizer, run.model_dir, state_dict=state_dict)


def _results(cfg, rt, data, trainer, train_output, train_log, final_eval, counts, built: Built,
             segment: dict[str, Any]) -> dict[str, Any]:
    history = trainer.state.log_history
    step_losses = [(h["step"], h["loss"]) for h in history if "loss" in h]
    by_step = {h["step"]: {"step": h["step"], "epoch": h.get("epoch"), "eval_loss": h["eval_loss"]}
               for h in history if "eval_loss" in h}  # the final evaluate() may repeat the last step's
    eval_history = [by_step[s] for s in sorted(by_step)]
    segments = [*trainer.sf_previous.get("segments", []), segment]
    runtime_s = sum(s["runtime_s"] for s in segments)  # every segment up to the checkpoint the next one resumed
    results: dict[str, Any] = {
        "schema_version": 1,
        "experiment_name": cfg.experiment_name,
        "started_at": segments[0]["started_at"],
        "finished_at": segment["finished_at"],
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
        "parameters": {"total": built.params_total,
                       "trainable": sum(p.numel() for p in trainer.model.parameters() if p.requires_grad)},
        "loss_on": built.loss_on,
        "runtime": rt.as_dict(),
        "hardware": hardware.detect(),
        "versions": hardware.versions(),
        "dataset": data.stats,
        "train_log": train_log,
        "eval_history": eval_history,
        "log_history": [dict(h) for h in history],
        "segments": segments,
    }
    if step_losses:
        results["final_train_loss"] = step_losses[-1][1]
        results["final_train_loss_step"] = step_losses[-1][0]
    if segment.get("resumed_from"):
        results["resumed_from"] = segment["resumed_from"]
    baseline = next((h["eval_loss"] for h in history if h.get("step") == 0 and "eval_loss" in h), None)
    if baseline is not None:
        results["baseline_eval_loss"] = baseline  # the model before training, same eval split and loss
    if cfg.model.is_tiny and cfg.training.method == "sft":
        # trained from random weights: the reference is chance, a uniform guess over the vocabulary
        results["chance_loss"] = math.log(trainer.model.config.vocab_size)
    if final_eval is not None:
        eval_loss = float(final_eval["eval_loss"])
        results["eval_loss"] = eval_loss
        results["eval_log"] = dict(final_eval)
        results["eval_split"] = data.stats.get("eval_source")
        # perplexity is exp(token cross-entropy): it means nothing for DPO's preference loss.
        if cfg.training.method == "sft" and perplexity(eval_loss) is not None:
            results["perplexity"] = perplexity(eval_loss)
    tracked = tracking.info(cfg)
    if tracked:
        results["tracking"] = tracked
    command = next((s.get("command") for s in segments if s.get("command")), None)
    if command:
        results["command"] = command  # the command that started the run, not the one that resumed it
    return results
