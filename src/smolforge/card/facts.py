"""Facts the card states, derived from the run's record: each one a function, so every sentence that
depends on them is conditional on what this run actually did.

Nothing here reads a model or imports torch: the numbers come from results.json (written while the
model was at hand, see `train._model_facts`) and the config as trained.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from smolforge.builtin_data import (
    ANSWERS_NAME,
    ANSWERS_ROWS,
    BUILTIN_ROWS,
    BUILTIN_SEED,
    PROMPTS_NAME,
    PROMPTS_ROWS,
)
from smolforge.card.lineage import lineage
from smolforge.config import SmolforgeConfig
from smolforge.errors import SmolforgeError
from smolforge.reproduce import manifest as manifest_record
from smolforge.runfolder import RunFolder

# Packages a user needs to load and run the published model, by what the repo holds.
RUN_PACKAGES = ("python", "transformers", "torch", "safetensors", "tokenizers")
ADAPTER_PACKAGES = ("peft",)
QUANTIZED_PACKAGES = ("torchao",)
# The oldest transformers release that loads what smolforge saves (with transformers 5: `rope_parameters` in
# config.json, the tokenizer in v5's format) and generates the same greedy tokens, batched ones included, as the
# version that trained it; an adapter used through `pipeline()` needs one more (earlier releases leave its LoRA
# dropout in training mode). Verified by tests/integration/test_floor.py in a fresh environment with exactly this
# release; 4.x cannot read the tokenizer, and 5.0-5.2 pad batches on the other side.
SAVED_FLOOR = "5.3"
ADAPTER_FLOOR = "5.4"
SIGNIFICANT = 0.05  # the p-value below which a benchmark change leads the card
DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}


def sig(value: float | None, digits: int = 4) -> float | None:
    """`value` rounded to `digits` significant digits (metadata values a reader compares, not raw floats)."""
    if value is None or not math.isfinite(value) or value == 0:
        return value
    return round(value, digits - 1 - int(math.floor(math.log10(abs(value)))))


def signed_percent(fraction: float, digits: int = 2) -> str:
    """`fraction` as a signed percentage, e.g. +1.25%; a change that rounds to nothing is +0.00%, never -0.00%."""
    value = round(100 * fraction, digits) + 0.0  # + 0.0 turns -0.0 into 0.0
    return f"{value:+.{digits}f}%"


def human_count(n: int | None) -> str | None:
    if n is None:
        return None
    for unit, size in (("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= size:
            return f"{n / size:.3g}{unit}"
    return str(n)


def sizes(size_bytes: int | float | None) -> str | None:
    if size_bytes is None:
        return None
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if size_bytes < 1000 or unit == "TB":
            return f"{size_bytes:.0f} {unit}" if unit == "B" else f"{size_bytes:.2f} {unit}"
        size_bytes /= 1000
    return None


def adapter_name(cfg: SmolforgeConfig) -> str | None:
    """What trained, named as readers know it: LoRA, QLoRA (LoRA over a 4-bit base), or None for all weights."""
    t = cfg.training
    return ("QLoRA" if t.four_bit_base else "LoRA") if t.adapters else None


def origin(cfg: SmolforgeConfig, results: dict[str, Any]) -> dict[str, Any]:
    """How the model came to be: trained from random weights, or fine-tuned from a base (and how)."""
    t = cfg.training
    name = adapter_name(cfg)
    if cfg.model.is_tiny:
        seed = cfg.model.tiny.seed
        phrase = f"trained from scratch (random initial weights, seed {seed})" if name is None else \
            f"a {name} adapter{' (merged into the weights)' if t.lora.merge else ''} trained on randomly initialised " \
            f"base weights (seed {seed})"
        return {"from_scratch": True, "seed": seed, "phrase": phrase}
    if name is not None:
        how = f"a {name} adapter on" if not t.lora.merge else f"fine-tuned with {name} (merged into the weights) from"
    else:
        how = "fine-tuned (all weights) from"
    return {"from_scratch": False, "phrase": how, "descends_from_scratch": lineage(cfg).from_scratch}


def train_loss_window(results: dict[str, Any]) -> dict[str, Any] | None:
    """The last logged training loss with the steps it averages, and the mean over every logged step.

    The trainer logs the mean loss of each window of `logging_steps`; the run mean weights each window by its
    length, over the whole log (a resumed run's log holds every segment)."""
    logged = [(h["step"], h["loss"]) for h in results.get("log_history") or []
              if isinstance(h.get("loss"), (int, float)) and "step" in h]
    if not logged:
        return None
    steps = [0] + [s for s, _ in logged]
    windows = [(steps[i] + 1, s, loss) for i, (s, loss) in enumerate(logged)]
    total = sum((end - start + 1) * loss for start, end, loss in windows)
    first, last, value = windows[-1]
    return {"value": value, "first_step": first, "last_step": last, "mean": total / steps[-1],
            "mean_to_step": steps[-1]}


def transformers_floor(adapter: bool) -> str:
    """The oldest transformers release a reader needs for this model's files (see SAVED_FLOOR)."""
    return ADAPTER_FLOOR if adapter else SAVED_FLOOR


def serving(arch: dict[str, Any], adapter: bool, base_hub_id: str | None) -> bool:
    """Show vLLM / SGLang serving: full SmolLM3 weights descended from a Hub model (not a tiny test model)."""
    return arch.get("model_type") == "smollm3" and not adapter and base_hub_id is not None


def kv_cache_bytes(arch: dict[str, Any], dtype: str | None, tokens: int) -> int | None:
    """Bytes of KV cache for `tokens` tokens of context: keys and values, every layer, every KV head."""
    need = ("layers", "kv_heads", "head_dim")
    if dtype not in DTYPE_BYTES or any(not arch.get(k) for k in need):
        return None
    return 2 * arch["layers"] * arch["kv_heads"] * arch["head_dim"] * DTYPE_BYTES[dtype] * tokens


def reasoning(model_files: dict[str, Any], cfg: SmolforgeConfig) -> dict[str, Any] | None:
    """What the run trained (think / no_think rows), what the saved template does by default, and what a caller
    must pass; None for templates without SmolLM3's reasoning switch."""
    template = model_files.get("chat_template") or {}
    if not template.get("reasoning_switch"):
        return None
    modes = model_files.get("trained_modes") or {}
    trained = [m for m in ("think", "no_think") if modes.get(m)]
    default = template.get("default_mode")
    out = {"trained": trained, "counts": modes, "default": default}
    if trained == ["no_think"]:
        out["pass"] = {"enable_thinking": False}
        out["note"] = ("every training row was in /no_think mode (no reasoning traces), so the model was not "
                       "trained to reason" + ("; the saved template reasons by default, so pass "
                                              "`enable_thinking=False`" if default == "think" else ""))
    elif trained == ["think"]:
        out["pass"] = {"enable_thinking": True}
        out["note"] = "every training row carried a reasoning trace (/think mode)"
    elif trained:
        out["pass"] = {"enable_thinking": default != "no_think"}
        out["note"] = "it was trained in both modes: `enable_thinking=True` reasons first, `False` answers directly"
    return out


def versions(recorded: dict[str, str], adapter: bool, quantized: bool) -> dict[str, dict[str, str]]:
    """Library versions split into what running the model needs and what only training used."""
    needed = set(RUN_PACKAGES) | (set(ADAPTER_PACKAGES) if adapter else set()) | \
        (set(QUANTIZED_PACKAGES) if quantized else set())
    run = {k: v for k, v in recorded.items() if k in needed}
    trained = {k: v for k, v in recorded.items() if k not in needed and k != "smolforge"}  # said on its own line
    return {"run": run, "trained": trained}


def deterministic(results: dict[str, Any], cfg: SmolforgeConfig) -> bool:
    """A single CPU process with fixed seeds: re-running gives the same weights bit for bit (on this kind of CPU)."""
    rt = results.get("runtime") or {}
    return rt.get("device") == "cpu" and rt.get("world_size", 1) == 1 and cfg.training.nproc == 1


def device_hours(results: dict[str, Any]) -> float | None:
    """Compute spent, in device-hours (GPUs x hours, or CPU hours when no GPU was used)."""
    seconds = results.get("train_runtime_s")
    if seconds is None:
        return None
    gpus = len((results.get("hardware") or {}).get("gpus") or []) or 1
    return seconds / 3600 * gpus


def data_description(cfg: SmolforgeConfig, stats: dict[str, Any]) -> str | None:
    """What the training data is, when smolforge knows it (the bundled chats); None otherwise."""
    if stats.get("source") == "builtin" and stats.get("name") == PROMPTS_NAME:
        return (f"smolforge's bundled verifiable prompts: {PROMPTS_ROWS} synthetic questions with a checkable answer "
                "(capitals of countries, sums and differences of small numbers, each asked four ways) generated "
                f"deterministically by `smolforge/builtin_data.py` with seed {BUILTIN_SEED} and shipped with "
                "smolforge.")
    if stats.get("source") == "builtin" and stats.get("name") == ANSWERS_NAME:
        return (f"smolforge's bundled unreliable answers: the {PROMPTS_ROWS} bundled verifiable questions, each "
                f"answered twice, once right and once wrong ({ANSWERS_ROWS} rows), generated deterministically by "
                f"`smolforge/builtin_data.py` with seed {BUILTIN_SEED} and shipped with smolforge. A model trained "
                "on it learns the answers' form and repeats their mistakes about half the time.")
    if stats.get("source") == "builtin":
        return (f"smolforge's bundled offline chats: {BUILTIN_ROWS} synthetic conversations (short facts, stories, "
                f"explanations, some multi-turn, some with system prompts) generated deterministically by "
                f"`smolforge/builtin_data.py` with seed {BUILTIN_SEED} and shipped with smolforge.")
    return None


def public_name(name: str, source: str | None) -> str:
    """A dataset name safe to publish: a local path becomes its file or folder name (no absolute paths)."""
    return Path(name).name if source == "local" else name


def _loss_pair(ctx: dict[str, Any]) -> str:
    """What the held-out loss pair compares: a qlora run measured both with the 4-bit base it trained over."""
    if ctx.get("four_bit_base"):
        return "before → after training, both over the 4-bit base"
    return "from random init" if ctx.get("is_tiny") else "base → this model"


def headline(ctx: dict[str, Any]) -> str | None:
    """The one result a reader came for, against its baseline: a benchmark whose change is significant
    (p < 0.05, the smallest p first), else the held-out loss before and after training (for GRPO: the held-out
    reward, sampled as training samples), else the best-measured benchmark."""
    rows = sorted((b for b in ctx.get("benchmarks") or [] if b.get("p_value") is not None),
                  key=lambda r: r["p_value"])
    base = ctx.get("loss_baseline")
    reward = (ctx.get("grpo") or {}).get("headline")
    if rows and (rows[0]["p_value"] < SIGNIFICANT or not (base or reward)):
        b = rows[0]
        return (f"`{b['task']}` {b['metric']} {b['base']:.3f} → {b['tuned']:.3f} against "
                f"{'the random-init model it started from' if ctx.get('is_tiny') else 'its base'} "
                f"({b['delta']:+.3f}, 95% CI {b['ci_low']:+.3f} to {b['ci_high']:+.3f}, n={b['n']})")
    if base:
        return (f"held-out {'DPO ' if ctx.get('dpo') else ''}loss {base['before']:.4f} → {base['after']:.4f} "
                f"({_loss_pair(ctx)})")
    if reward:
        return (f"held-out {reward['name']} {reward['before']:.3f} → {reward['after']:.3f} sampled as in training "
                f"({reward['delta']:+.3f}, 95% CI {reward['ci_low']:+.3f} to {reward['ci_high']:+.3f}, "
                f"{reward['prompts']} prompts × {reward['samples']} completions)")
    return None


def plan_check(plan: dict[str, Any] | None) -> dict[str, Any] | None:
    """The card's line: each predicted number with the measured one (only those both sides have)."""
    if not plan or not plan.get("measured"):
        return None
    predicted, measured = plan.get("predicted") or {}, plan["measured"]
    pairs = {k: (predicted.get(k), measured.get(k)) for k in ("peak_memory_mib", "tokens_per_second",
                                                               "train_runtime_s")}
    pairs = {k: v for k, v in pairs.items() if v[0] is not None and v[1] is not None}
    if not pairs:
        return None
    return {"calibrated": bool(predicted.get("calibrated")), "memory_kind": predicted.get("memory_kind"), **pairs}


def card_summary(run: RunFolder) -> dict[str, Any] | None:
    """What the card says was recorded (None for a run without a manifest)."""
    if not run.manifest_path.is_file():
        return None
    try:
        manifest = manifest_record.read(run)
    except SmolforgeError:
        return None
    env = manifest["environment"]
    torch = env.get("torch") or {}
    device = (env.get("device") or {}).get("summary")
    data, model = manifest["data"], manifest["model"]
    if data.get("kind") == "hub":
        data_text = f"the commit of `{data.get('repo')}` it read ({data.get('revision') or 'not resolved'})"
    else:
        n = len(data.get("files") or [])
        data_text = f"the SHA-256 of {'the data file' if n == 1 else f'each of the {n} data files'}"
    if model.get("kind") == "hub":
        model_text = f"the base model's commit ({model.get('revision') or 'not resolved'})"
    else:
        model_text = "the SHA-256 of the base model's files"
    build = f"CUDA {torch['cuda']}" if torch.get("cuda") else torch.get("cpu_capability") or "CPU"
    return {"smolforge": (env.get("smolforge") or {}).get("version"), "packages": len(env.get("packages") or {}),
            "python": (env.get("python") or {}).get("version"), "torch": torch.get("version"), "torch_build": build,
            "device": device, "seeds": manifest.get("seeds") or {}, "data": data_text, "model": model_text}


def local_data(run: RunFolder, stats: dict[str, Any]) -> dict[str, Any] | None:
    """A run trained on local files: their names as published (paths are shortened to their last part), and each
    file's SHA-256 when manifest.json recorded it. None for the bundled data and Hub datasets."""
    if stats.get("source") != "local":
        return None
    names = [n for group in ((stats.get("local_files") or {}).get("data_files") or {}).values() for n in group]
    digests: dict[str, str] = {}
    if run.manifest_path.is_file():
        try:
            recorded = manifest_record.read(run)["data"]
        except SmolforgeError:
            recorded = {}
        digests = {Path(f["path"]).name: f["sha256"] for f in recorded.get("files") or []
                   if recorded.get("kind") == "local"}
    shown = Path(str(stats.get("name") or "")).name
    return {"name": shown, "folder": Path(shown).suffix == "",
            "files": [{"name": n, "sha256": digests.get(n)} for n in dict.fromkeys(names)]}
