"""Every number on the card, original against reproduced, and the weights tensor by tensor.

The card's numbers all come from results.json (losses and their curve, perplexity, the validation history,
steps and epochs, token counts, the data's statistics, parameter counts, quantized variants, benchmark
results). They are compared exactly when both runs trained on a CPU (smolforge's CPU runs are
bit-reproducible: same order, same kernels, same float rounding); elsewhere within GPU_RTOL, since GPU
kernels reduce in an order that can change between runs. Counts must match exactly everywhere. Wall time,
throughput and memory are measurements of the machine, shown but not judged.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

GPU_RTOL = 1e-2  # relative tolerance for measured losses and scores when a GPU was involved
MEASURED_ONLY = ("train_runtime_s", "tokens_per_second", "peak_memory")


@dataclass(frozen=True)
class Row:
    name: str
    original: Any
    reproduced: Any
    judged: bool   # False: a measurement of the machine (time, memory), or added after the run: shown only
    match: bool
    later: bool = False  # made by a stage run on the finished run later (smolforge quantize), which a re-run omits


def card_numbers(results: dict[str, Any]) -> dict[str, Any]:
    """The numbers the card shows, by a stable name."""
    out: dict[str, Any] = {}

    def put(name: str, value: Any) -> None:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            out[name] = value

    for key in ("train_loss", "final_train_loss", "eval_loss", "perplexity", "baseline_eval_loss", "chance_loss",
                "global_steps", "epochs", "train_runtime_s", "tokens_per_second"):
        put(key, results.get(key))
    for key, value in (results.get("tokens") or {}).items():
        put(f"tokens.{key}", value)
    for key, value in (results.get("parameters") or {}).items():
        put(f"parameters.{key}", value)
    for key, value in (results.get("peak_memory") or {}).items():
        put(f"peak_memory.{key}", value)
    for key, value in (results.get("eval_log") or {}).items():
        if key.startswith("eval_rewards/"):
            put(f"eval_log.{key}", value)
    data = results.get("dataset") or {}
    for key in ("rows_read", "rows_dropped", "train_size", "eval_size", "train_truncated_rows"):
        put(f"dataset.{key}", data.get(key))
    for key, value in (data.get("train_token_lengths") or {}).items():
        put(f"dataset.train_token_lengths.{key}", value)
    for row in results.get("log_history") or []:
        if "loss" in row:
            put(f"training loss at step {row.get('step')}", row["loss"])
    for row in results.get("eval_history") or []:
        put(f"validation loss at step {row.get('step')}", row.get("eval_loss"))
    for name, variant in (results.get("quantized") or {}).items():
        if isinstance(variant, dict):
            for key in ("eval_loss", "size_bytes"):
                put(f"quantized.{name}.{key}", variant.get(key))
    for row in (results.get("evaluation") or {}).get("results") or []:
        label = f"benchmark {row.get('task')} {row.get('metric')} ({row.get('mode')})"
        for key in ("base", "tuned", "delta", "ci_low", "ci_high", "p_value", "n"):
            put(f"{label} {key}", row.get(key))
    return out


def _same(a: Any, b: Any, exact: bool) -> bool:
    if a is None or b is None:
        return a is b
    if exact or isinstance(a, int) and isinstance(b, int):
        return a == b
    return math.isclose(float(a), float(b), rel_tol=GPU_RTOL, abs_tol=1e-12)


def later_variants(original: dict[str, Any], configured: list[str]) -> list[str]:
    """Quantized variants the original run has that its config did not ask for: a later `smolforge quantize`
    made them, so a re-run of the run's config does not."""
    return [m for m, v in (original.get("quantized") or {}).items() if isinstance(v, dict) and m not in configured]


def compare_numbers(original: dict[str, Any], reproduced: dict[str, Any], exact: bool,
                    later: list[str] = ()) -> list[Row]:
    """Each card number, original against reproduced. Numbers of the variants in `later` (added after the run)
    are listed apart and not judged: the re-run is compared with what the original had at the same stage."""
    a, b = card_numbers(original), card_numbers(reproduced)
    rows = []
    for name in list(a) + [n for n in b if n not in a]:
        added = any(name.startswith(f"quantized.{m}.") for m in later) and name not in b
        judged = not name.startswith(MEASURED_ONLY) and not added
        rows.append(Row(name, a.get(name), b.get(name), judged, _same(a.get(name), b.get(name), exact), added))
    return rows


@dataclass(frozen=True)
class WeightsCheck:
    tensors: int
    identical: int
    max_abs_diff: float
    missing: list[str]

    def match(self, exact: bool) -> bool:
        if self.missing or not self.tensors:
            return False
        return self.identical == self.tensors if exact else self.max_abs_diff <= GPU_RTOL


def compare_weights(original: Path, reproduced: Path) -> WeightsCheck:
    """Each tensor of the saved weights (model or adapter safetensors), bit for bit."""
    import torch
    from safetensors import safe_open

    def tensors(folder: Path) -> dict[str, Path]:
        out = {}
        for f in sorted(folder.glob("*.safetensors")):
            with safe_open(str(f), framework="pt") as st:
                out.update(dict.fromkeys(st.keys(), f))
        return out

    old, new = tensors(original), tensors(reproduced)
    missing = sorted(set(old) ^ set(new))
    identical, worst = 0, 0.0
    for name in sorted(set(old) & set(new)):
        with safe_open(str(old[name]), framework="pt") as a, safe_open(str(new[name]), framework="pt") as b:
            x, y = a.get_tensor(name), b.get_tensor(name)
        if x.shape == y.shape and x.dtype == y.dtype and torch.equal(x, y):
            identical += 1
        elif x.shape == y.shape:
            worst = max(worst, float((x.float() - y.float()).abs().max()))
        else:
            missing.append(f"{name} (shape {tuple(x.shape)} vs {tuple(y.shape)})")
    return WeightsCheck(tensors=len(set(old) & set(new)), identical=identical, max_abs_diff=worst, missing=missing)
