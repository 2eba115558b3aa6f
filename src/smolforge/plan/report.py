"""The plan in words and numbers: the `smolforge plan` table, the rows of `run`'s summary, the JSON record,
and results.json's `plan` section (the prediction next to what the run measured)."""

from __future__ import annotations

from typing import Any

from smolforge.config import TrainingSection
from smolforge.plan.estimate import Estimate, duration
from smolforge.plan.gpus import ASSUMED_MFU
from smolforge.plan.memory import quantized_bytes

MIB, GIB = 2**20, 2**30
KIND_LABEL = {"cpu_rss": "process RSS", "gpu_allocated": "GPU memory allocated by torch"}


def size(n: float) -> str:
    return f"{n / GIB:,.1f} GiB" if abs(n) >= GIB else f"{n / MIB:,.0f} MiB"


def count(n: float) -> str:
    for unit, scale in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= scale:
            return f"{n / scale:,.2f}{unit}"
    return f"{n:,.0f}"


def finetune_label(t: TrainingSection) -> str:
    """Which weights train, in words: the 4-bit base is named because it is what makes a qlora run smaller."""
    if not t.adapters:
        return "full fine-tune"
    return f"QLoRA r={t.lora.r} over a 4-bit NF4 base" if t.four_bit_base else f"LoRA r={t.lora.r}"


def _model_row(e: Estimate) -> str:
    m = e.model
    return (f"{e.inputs.cfg.model.name_or_path}: {count(m.params)} parameters, {count(m.trainable)} trained "
            f"({finetune_label(e.inputs.cfg.training)}); "
            f"{m.layers} layers, hidden {m.hidden}, {m.heads}/{m.kv_heads} heads, vocab {m.vocab:,}")


def _device_row(e: Estimate) -> str:
    rt, lay = e.target.runtime, e.layout
    procs = f" x {lay.world} processes ({lay.distributed})" if lay.world > 1 else ""
    return (f"{e.target.label}{procs}; {e.target.dtype_name} weights, {rt.batching.replace('_', '-')} batches, "
            f"{rt.attn_implementation} attention, activation checkpointing {'on' if lay.checkpointing else 'off'}")


def _data_row(e: Estimate) -> str:
    b = e.batches
    if b.source != "data":
        return (f"not read ({e.inputs.data_note or 'no token lengths'}): every micro-batch is assumed full, "
                f"{e.inputs.cfg.training.batch_size} rows x {e.inputs.cfg.training.max_length} tokens (an upper bound)")
    return (f"{b.rows:,} training {'bins' if e.target.runtime.batching == 'packed' else 'rows'}, token lengths "
            "from the run's own chat-template tokenisation")


def _steps_row(e: Estimate) -> str:
    b, t = e.batches, e.inputs.cfg.training
    if not b.steps:
        return "unknown without the data (set training.max_steps to plan a number of steps)"
    per_epoch = f" ({b.steps_per_epoch:,} per epoch)" if b.steps_per_epoch else ""
    return (f"{b.steps:,}{per_epoch}; {b.tokens_per_step:,.0f} tokens per step ({100 * b.padding_fraction:.1f}% "
            f"padding), effective batch {t.batch_size * t.gradient_accumulation_steps * t.nproc} rows; largest "
            f"micro-batch {b.peak_micro_tokens:,} tokens ({b.peak_micro_rows} rows)")


def _flops_row(e: Estimate) -> str:
    formula = "4N + 6N_adapter" if e.layout.adapters else "6N"
    extra = []
    if e.layout.checkpointing:
        extra.append("checkpointing re-runs the forward")
    if e.layout.reference:
        extra.append(f"the {e.layout.method.upper()} reference scores the tokens")
    executed = f"; {e.flops.executed / 1e9:,.2f} GFLOP executed ({', '.join(extra)})" if extra else ""
    dequantized = ("; the 4-bit weights are dequantized for every matmul, memory-bound work priced in the time "
                   "below" if e.inputs.cfg.training.four_bit_base else "")
    return f"{e.flops.model / 1e9:,.2f} GFLOP per token ({formula} + attention){executed}{dequantized}"


def _weights_note(e: Estimate) -> str:
    """What the weights term is made of: the base (4-bit and the rest, for qlora), adapters, a DPO reference."""
    m, lay = e.model, e.layout
    if m.quantized:
        four_bit = quantized_bytes(m) / m.quantized_params
        base = (f"{count(m.quantized_params)} in 4-bit NF4 x {four_bit:.3f} bytes + "
                f"{count(m.params - m.quantized_params)} x {m.param_bytes} bytes")
    else:
        base = f"{count(m.params)} x {m.param_bytes} bytes"
    adapters = f" + {count(m.adapter_params)} adapter x {m.adapter_bytes}" if m.adapter_params else ""
    reference = ", + the DPO reference copy" if lay.method == "dpo" and not lay.adapters else ""
    return base + adapters + reference


def _memory_lines(e: Estimate) -> list[tuple[str, str]]:
    mem, m, lay = e.memory, e.model, e.layout
    rows = [("  weights", f"{size(mem.weights)} ({_weights_note(e)})"),
            ("  gradients", f"{size(mem.gradients)} ({count(m.trainable)} trained parameters)"),
            ("  optimizer", f"{size(mem.optimizer)} (AdamW: 2 moments per trained parameter)"),
            ("  activations", f"{size(mem.activations)} ({e.batches.peak_micro_tokens:,} tokens x "
                              f"{mem.activations / max(1, e.batches.peak_micro_tokens) / 1024:,.1f} KiB, checkpointing "
                              f"{'on' if lay.checkpointing else 'off'})"),
            ("  loss", f"{size(mem.loss)} (TRL's chunked log-probabilities over {m.vocab:,} tokens: one logits "
                       "tile, fp32 gradient accumulators)")]
    if mem.buffers:
        what = "DDP gradient buckets" if lay.distributed == "ddp" else "FSDP layers gathered for compute"
        rows.append(("  " + what.split()[0], f"{size(mem.buffers)} ({what})"))
    if e.rollouts is not None and e.rollouts.generation == "vllm":
        share = e.inputs.cfg.training.grpo.vllm_gpu_memory
        rows.append(("  generation", f"{size(mem.generation)} (vLLM's reservation: {share:.0%} of the GPU for its copy "
                                     "of the weights and its KV cache, held beside training)"))
    elif e.rollouts is not None:
        r = e.rollouts
        rows.append(("  generation", f"{size(mem.generation)} (KV cache of {r.sequences} completions x "
                                     f"{r.prompt_tokens + r.completion_tokens:,} tokens: {size(r.kv_cache)}, beyond "
                                     "what the backward pass holds; the two never coexist)"))
    if mem.runtime:
        rows.append(("  process", f"{size(mem.runtime)} (Python, libraries and data before training, measured)"))
    if e.calibration:
        rows.append(("  calibration", f"{size(e.calibration.memory_residual):>} (measured minus formula in "
                                      f"{e.calibration.steps} real steps)"))
    return rows


def _fit_row(e: Estimate) -> str:
    cap = e.target.capacity
    if cap is None:
        return "unknown (the device's memory could not be read)"
    extra = " incl. the CUDA context and allocator reserve" if e.target.kind == "cuda" else ""
    verdict = "fits" if e.fits else "DOES NOT FIT"
    where = "per GPU" if e.target.kind == "cuda" else "of the RAM available"
    return f"{verdict}: needs {size(e.needed)}{extra}, {size(cap)} {where}"


def _time_row(e: Estimate) -> str:
    tm, b = e.timing, e.batches
    if not b.steps:
        dequant = (f", of which 4-bit dequantization {e.dequant_step_s:,.2f} s (an estimate from memory bandwidth)"
                   if e.dequant_step_s else "")
        return f"{e.step_seconds:,.2f} s per optimizer step{dequant} (the number of steps is unknown)"
    parts = [f"training {duration(tm.train_s)}"]
    if b.evals:
        parts.append(f"{b.evals} evaluations {duration(tm.eval_s)}")
    if b.saves:
        parts.append(f"{b.saves} checkpoints {duration(tm.save_s)}")
    if tm.startup_s:
        parts.append(f"start-up {duration(tm.startup_s)}")
    if tm.dequant_s:
        parts.append(f"4-bit dequantization {duration(tm.dequant_s)} (an estimate from memory bandwidth)")
    if tm.rollout_s:
        parts.append(f"sampling {duration(tm.rollout_s)} (at most: every completion to max_completion_length)")
    return f"{duration(tm.total_s)} ({', '.join(parts)})"


def _rollouts_row(e: Estimate) -> str:
    r, g = e.rollouts, e.inputs.cfg.training.grpo
    return (f"{r.sequences} completions per process and step ({r.sequences // g.num_generations} prompts x "
            f"{g.num_generations}), up to {r.completion_tokens:,} tokens each after a prompt of up to "
            f"{r.prompt_tokens:,}: KV cache {size(r.kv_cache)}; at most {r.step_s:,.2f} s of sampling per step with "
            "transformers' generate" + (" (vLLM samples them, faster than that)" if r.generation == "vllm" else "")
            + f", and the held-out prompts before and after training {duration(r.held_out_s)}")


def _speed_row(e: Estimate) -> str:
    tps = e.tokens_per_second
    mfu = f"; MFU {100 * e.mfu:.0f}%" + (" (assumed)" if e.calibration is None else "") if e.mfu else ""
    speed = f"{tps:,.0f} tokens/s{'' if e.batches.steps else ' in training steps'}" if tps else "unknown"
    return f"{speed}{mfu}; rate: {e.rate.how}"


def table_rows(e: Estimate) -> list[tuple[str, str]]:
    rows = [("Model", _model_row(e)), ("Device", _device_row(e)), ("Data", _data_row(e)), ("Steps", _steps_row(e)),
            ("FLOPs", _flops_row(e)), *([("Rollouts", _rollouts_row(e))] if e.rollouts else []),
            ("Peak memory", f"{size(e.peak)} ({KIND_LABEL[e.target.memory_kind]})"), *_memory_lines(e),
            ("Fit", _fit_row(e)), ("Time", _time_row(e)), ("Throughput", _speed_row(e))]
    rows += [("Would fit", f"{s.change}: peak {size(s.peak)}" + (f", {s.note}" if s.note else ""))
             for s in e.suggestions]
    if e.fits is False and not e.suggestions:
        rows.append(("Would fit", "nothing tried fits: a smaller model, a shorter training.max_length, or a GPU "
                                  "with more memory"))
    return rows


def summary_rows(e: Estimate) -> list[tuple[str, str]]:
    """The plan's rows in `smolforge run`'s pre-run summary."""
    how = "calibrated on this machine" if e.calibration else \
        "estimate" if e.rollouts else "estimate; `smolforge plan --calibrate` measures it"
    rows = [("Plan: memory", f"{size(e.peak)} peak {KIND_LABEL[e.target.memory_kind]}; {_fit_row(e)}"),
            ("Plan: steps", _steps_row(e)),
            ("Plan: time", f"{_time_row(e)}; {_speed_row(e).split('; rate')[0]} ({how})")]
    rows += [("Would fit", f"{s.change}: peak {size(s.peak)}") for s in e.suggestions]
    return rows


def not_fitting_message(e: Estimate) -> str | None:
    if e.fits is not False:
        return None
    fixes = "; ".join(s.change for s in e.suggestions) or "a smaller model, shorter max_length or more memory"
    return (f"warning: this config is predicted not to fit on {e.target.label}: it needs {size(e.needed)} and "
            f"{size(e.target.capacity or 0)} is there. What would fit: {fixes}.")


def record(e: Estimate) -> dict[str, Any]:
    """The prediction as data (results.json, `smolforge plan --json`)."""
    tm, b = e.timing, e.batches
    out = {
        "device": e.target.label, "memory_kind": e.target.memory_kind, "calibrated": e.calibration is not None,
        "parameters": {"total": e.model.params, "trainable": e.model.trainable},
        "data": b.source, "steps": b.steps or None, "tokens_per_step": round(b.tokens_per_step, 1),
        "processed_tokens": round(b.total_tokens) if b.steps else None,
        "padding_fraction": round(b.padding_fraction, 4), "peak_micro_batch_tokens": b.peak_micro_tokens,
        "peak_memory_mib": round(e.peak / MIB, 1),
        "memory_mib": {k: round(v / MIB, 1) for k, v in e.memory.as_dict().items()},
        "capacity_mib": round(e.target.capacity / MIB, 1) if e.target.capacity else None, "fits": e.fits,
        "flops_per_token": {"model": e.flops.model, "executed": e.flops.executed},
        "rate": {"flops_per_second": e.rate.flops, "how": e.rate.how},
        "train_runtime_s": round(tm.total_s, 2) if b.steps else None,
        "time_s": {"training": round(tm.train_s, 2), "evaluation": round(tm.eval_s, 2), "checkpoints": round(
            tm.save_s, 2), "startup": round(tm.startup_s, 2), "dequantization": round(tm.dequant_s, 2),
            "sampling": round(tm.rollout_s, 2)},
        "tokens_per_second": round(e.tokens_per_second, 1) if e.tokens_per_second else None,
        "assumed_mfu": ASSUMED_MFU if e.target.gpu is not None and e.calibration is None else None,
        "suggestions": [{"change": s.change, "peak_memory_mib": round(s.peak / MIB, 1)} for s in e.suggestions],
    }
    if e.rollouts is not None:
        r = e.rollouts
        out["rollouts"] = {"sequences_per_process": r.sequences, "prompt_tokens": r.prompt_tokens,
                           "completion_tokens": r.completion_tokens, "kv_cache_mib": round(r.kv_cache / MIB, 1),
                           "sampling_s_per_step": round(r.step_s, 3), "held_out_s": round(r.held_out_s, 2),
                           "generation": "vLLM (colocate)" if r.generation == "vllm" else "transformers generate"}
    if e.calibration is not None:
        out["memory_mib"]["calibration"] = round(e.calibration.memory_residual / MIB, 1)
    return out


def against_measured(predicted: dict[str, Any], results: dict[str, Any],
                     formula: dict[str, Any] | None = None) -> dict[str, Any]:
    """results.json's `plan`: the prediction, what the run measured, and prediction / measured - 1."""
    peak = results.get("peak_memory") or {}
    key = "gpu_allocated_mib" if predicted.get("memory_kind") == "gpu_allocated" else "cpu_rss_mib"
    runtime = results.get("train_runtime_s")
    processed = (results.get("tokens") or {}).get("processed")
    measured = {"peak_memory_mib": peak.get(key), "train_runtime_s": runtime, "processed_tokens": processed,
                "steps": results.get("global_steps"),
                "tokens_per_second": round(processed / runtime, 1) if processed and runtime else None}
    error = {k: round(predicted[k] / measured[k] - 1, 4) for k in measured
             if isinstance(predicted.get(k), (int, float)) and measured.get(k)}
    out = {"predicted": predicted, "measured": measured, "error": error}
    if formula is not None:
        out["formula"] = formula
        out["formula_error"] = {k: round(formula[k] / measured[k] - 1, 4) for k in measured
                                if isinstance(formula.get(k), (int, float)) and measured.get(k)}
    return out
