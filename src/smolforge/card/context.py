"""Every variable the card can use, each from the most trusted source that has it.

Order of trust: the run (config.yaml as trained, results.json) -> detection (hardware and
versions recorded in results.json) -> the user (the config's `card:` section, from YAML, flags,
`smolforge card` or the wizard) -> defaults (`card.defaults`). A metric that was not measured is
None here and absent from the card. Every `card:` setting is a template variable of the same
name, so a new card input needs no code here. Nothing here is a local path: the card is published.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from smolforge.card import citations, defaults, facts
from smolforge.card.gguf import gguf_rows
from smolforge.card.grpo import grpo_facts
from smolforge.config import SmolforgeConfig
from smolforge.data import is_hub_dataset_id
from smolforge.hardware import run_summary
from smolforge.hubclient import endpoint_from_env
from smolforge.identifiers import slugify
from smolforge.localpaths import public_text
from smolforge.modelio import perplexity as perplexity_of
from smolforge.runfolder import RunFolder

# The variables an older tool's card templates use: every one exists here with that name.
LEGACY_TEMPLATE_VARIABLES = [
    "model_name", "model_description", "repo_name", "base_model", "training_config_type", "trainer_type",
    "batch_size", "gradient_accumulation_steps", "learning_rate", "max_epochs", "max_seq_length",
    "dataset_name", "dataset_size", "dataset_format", "dataset_sample_size", "training_loss",
    "validation_loss", "perplexity", "hardware_info", "experiment_name", "trackio_url", "dataset_repo",
    "author_name", "model_name_slug", "quantized_models",
]
USER_CARD_VARIABLES = ["license", "tags", "usage_examples", "limitations", "citation"]
LOSS_PLOT = "loss_curve.png"
HARNESS_URL = "https://github.com/EleutherAI/lm-evaluation-harness"
LOCAL_MODEL_ID = "model"  # the run folder's model/ (the card's snippets before the model has a repo id)
PROMPT = "What is the capital of France?"  # the example question of every snippet (and of template_facts)


def _fmt_lr(lr: float) -> str:
    return f"{lr:.0e}".replace("e-0", "e-") if lr < 1e-3 else f"{lr:g}"


def _quantized_rows(quantized: dict[str, dict], repo_name: str | None, quantized_as: str) -> list[dict[str, Any]]:
    """One row per variant that exists, with where it lives on the Hub (a subfolder or its own repo)."""
    rows = []
    for name, v in quantized.items():
        ref_size = (v.get("reference") or {}).get("size_bytes")
        row = {**v, "name": name, "size": facts.sizes(v.get("size_bytes")),
               "size_ratio": v["size_bytes"] / ref_size if v.get("size_bytes") and ref_size else None,
               "repo_id": f"{repo_name}-{name}" if repo_name and quantized_as == "repos" else None}
        rows.append(row)
    return rows


def _quantized_reference(quantized: dict[str, dict]) -> dict[str, Any] | None:
    """The full-precision model the variants were measured against (same eval, same size accounting)."""
    for v in quantized.values():
        ref = v.get("reference")
        if isinstance(ref, dict) and ref.get("size_bytes"):
            out = {**ref, "size": facts.sizes(ref["size_bytes"])}
            if perplexity_of(ref.get("eval_loss")) is not None:
                out["perplexity"] = perplexity_of(ref["eval_loss"])
            return out
    return None


def _dpo_eval(results: dict[str, Any]) -> dict[str, float]:
    """DPO's measured preference metrics from the final evaluation (absent when not measured)."""
    log = results.get("eval_log") or {}
    names = {"reward_accuracy": "eval_rewards/accuracies", "reward_margin": "eval_rewards/margins"}
    return {k: float(log[v]) for k, v in names.items() if isinstance(log.get(v), (int, float))}


def _benchmarks(evaluation: dict[str, Any]) -> list[dict[str, Any]]:
    """The fine-tune vs base rows, each with the share of its items that overlap the training data."""
    overlap = ((evaluation.get("contamination") or {}).get("tasks")) or {}
    rows = []
    for row in evaluation.get("results") or []:
        if row.get("status") != "ok":
            continue
        task = overlap.get(row["task"]) or {}
        rows.append({**row, "overlap_share": task.get("share"), "overlap_items": task.get("overlapping"),
                     "overlap_whole": task.get("found_whole")})
    return rows


def _held_out_task(evaluation: dict[str, Any], cfg: SmolforgeConfig) -> dict[str, Any] | None:
    """The `held-out` benchmark's facts for its sentence on the card (None when the run did not evaluate it)."""
    task = next((t for t in evaluation.get("tasks") or [] if t.get("kind") == "held-out"), None)
    if task is None:
        return None
    cap = (evaluation.get("settings") or {}).get("max_gen_tokens") or cfg.training.grpo.max_completion_length
    return {"name": task["task"], "n": task["items"], "max_tokens": cap}


def _overlap_counts(rows: list[dict[str, Any]]) -> dict[str, int] | None:
    """How many flagged benchmark items were short ones found whole (None when none was flagged or not counted)."""
    counted = [r for r in rows if r.get("overlap_whole") is not None]
    flagged = sum(r.get("overlap_items") or 0 for r in counted)
    return {"flagged": flagged, "whole": sum(r["overlap_whole"] for r in counted)} if flagged else None


def _benchmark_notes(rows: list[dict[str, Any]], is_tiny: bool) -> list[str]:
    """What a row's score hides, said on the card: models that never answered in the form the task scores."""
    names = {"base": "the model before training" if is_tiny else "the base", "tuned": "this model"}
    notes = []
    for r in rows:
        unanswered = r.get("unanswered") or ({"models": [], "why": None} if not r.get("format_problem") else None)
        if unanswered is None:  # recorded before the structured field: the recorded sentence
            notes.append(f"`{r['task']}` ({r['mode']}): {r['format_problem']}.")
            continue
        who = " and ".join(names.get(m, m) for m in unanswered["models"])
        if unanswered["why"] == "format":
            notes.append(f"`{r['task']}` ({r['mode']}): {who} never produced an answer in the form the task "
                         "extracts, so the score there is 0 by format, not by knowledge.")
        elif unanswered["why"] == "empty":
            notes.append(f"`{r['task']}` ({r['mode']}): {who} generated only empty answers.")
    return notes


def _loss_baseline(results: dict[str, Any]) -> dict[str, Any] | None:
    """The validation loss next to what it is compared with: the model before training (and chance for a model
    trained from random weights)."""
    if results.get("eval_loss") is None or results.get("baseline_eval_loss") is None:
        return None
    return {"before": results["baseline_eval_loss"], "after": results["eval_loss"],
            "delta": results["eval_loss"] - results["baseline_eval_loss"], "chance": results.get("chance_loss")}


def _weights(model_files: dict[str, Any]) -> dict[str, Any]:
    """The published weight files: sha256 of each and their total size, recorded when they were written."""
    size = model_files.get("weights_bytes")
    return {"sha256": model_files.get("weights_sha256") or {}, "size_bytes": size, "size": facts.sizes(size)}


def _install(adapter: bool, quantized: bool, floor: str | None) -> str:
    packages = [f'"transformers>={floor}"' if floor else "transformers", "torch"]
    packages += ["peft"] if adapter else []
    packages += ["torchao"] if quantized else []
    return "pip install " + " ".join(packages)


def _tracking(results: dict[str, Any]) -> dict[str, Any]:
    """The tracking record without where it lived on this machine."""
    return {k: v for k, v in (results.get("tracking") or {}).items() if k != "dir"}


def build_context(run: RunFolder, cfg: SmolforgeConfig, results: dict[str, Any],
                  username: str | None = None) -> dict[str, Any]:
    """All template variables for this run. Raises SmolforgeError when the license cannot be known."""
    t, d = cfg.training, results.get("dataset") or {}
    lic = defaults.license_for(cfg)
    experiment, repo_name, display = defaults.names(cfg, results.get("experiment_name"), run.root.name, username)
    dataset_name = facts.public_name(d.get("name") or cfg.data.name, d.get("source"))
    started = results.get("started_at")
    year = datetime.fromisoformat(started).year if started else datetime.now().year

    adapter = t.adapters and not t.lora.merge
    quantized = {k: v for k, v in (results.get("quantized") or {}).items() if isinstance(v, dict) and v.get("path")
                 and v.get("format") != "gguf" and (run.root / v["path"]).exists()}  # GGUF files: `gguf` below
    quantized_skipped = {k: v["skipped"] for k, v in (results.get("quantized") or {}).items()
                         if isinstance(v, dict) and v.get("skipped")}
    tracking = _tracking(results)
    tags = list(dict.fromkeys([*cfg.card.tags, "smolforge", t.method, "trl",
                               *(["lora"] if t.adapters else []), *(["qlora"] if t.four_bit_base else [])]))
    eval_loss, perplexity = results.get("eval_loss"), results.get("perplexity")
    model_files = results.get("model_files") or {}
    arch = model_files.get("architecture") or {}
    evaluation = results.get("evaluation") or {}

    world_size = int((results.get("topology") or {}).get("world_size") or t.world_size)  # every process, every node
    ctx: dict[str, Any] = {
        **cfg.card.model_dump(),  # every card input, by its own name
        # ---- the older tool's variables
        "model_name": display,
        "model_description": defaults.description(cfg, dataset_name),
        "repo_name": repo_name,
        "hub_url": endpoint_from_env(cfg.publish.endpoint),
        "base_model": defaults.base_label(cfg),
        "base_facts": defaults.base_facts(cfg),
        "training_config_type": cfg.preset or "custom",
        "trainer_type": t.method.upper(),
        "batch_size": t.batch_size,
        "gradient_accumulation_steps": t.gradient_accumulation_steps,
        "learning_rate": t.learning_rate,
        "max_epochs": t.epochs if t.max_steps <= 0 else None,
        "max_seq_length": t.max_length,
        "dataset_name": dataset_name,
        "dataset_size": (d.get("train_size", 0) + d.get("eval_size", 0)) if d else None,
        "dataset_format": d.get("format"),
        "dataset_sample_size": d.get("max_samples"),
        "training_loss": results.get("final_train_loss", results.get("train_loss")),
        "validation_loss": eval_loss,
        "perplexity": perplexity,
        "hardware_info": run_summary(results.get("hardware") or {}, results.get("topology")),
        "experiment_name": experiment,
        "trackio_url": tracking.get("url"),
        "dataset_repo": tracking.get("dataset_repo"),
        "author_name": defaults.author(cfg, username),
        "model_name_slug": slugify(experiment, "_"),
        "quantized_models": bool(quantized),
        # ---- user inputs with a derived value
        "license": lic.id,
        "tags": tags,
        "intended_use": defaults.uses_text(cfg, "intended_use"),
        "out_of_scope": defaults.uses_text(cfg, "out_of_scope"),
        "training_data": cfg.card.training_data or facts.data_description(cfg, d),
        # ---- what the model is and how it was made
        "license_name": lic.name,
        "license_link": lic.link,
        "license_source": lic.source,
        "base_model_id": defaults.base_hub_id(cfg),
        "base_model_is_local": not cfg.model.is_tiny and not defaults.base_is_hub(cfg),
        "is_tiny": cfg.model.is_tiny,
        "origin": facts.origin(cfg, results),
        "is_adapter": adapter,
        "finetune": t.finetune,
        "lora": t.lora.model_dump() if t.adapters else None,
        "adapter_name": facts.adapter_name(cfg),
        "four_bit_base": _four_bit_base(results) if t.four_bit_base else None,
        "dpo": t.dpo.model_dump() if t.method == "dpo" else None,
        "method_name": defaults.method_name(cfg),
        "training": t.model_dump(),
        "max_steps": t.max_steps if t.max_steps > 0 else None,
        "world_size": world_size,
        "effective_batch_size": t.batch_size * t.gradient_accumulation_steps * world_size,
        "learning_rate_display": _fmt_lr(t.learning_rate),
        "runtime": results.get("runtime") or {},
        "dataset": d,
        "dataset_hub_id": dataset_name if d.get("source") == "hub" and is_hub_dataset_id(dataset_name) else None,
        "eval_split": results.get("eval_split"),
        "eval_ratio": cfg.data.eval_ratio,
        "eval_history": results.get("eval_history") or [],
        "global_steps": results.get("global_steps"),
        "epochs_completed": results.get("epochs"),
        "train_runtime_s": results.get("train_runtime_s"),
        "device_hours": facts.device_hours(results),
        "tokens": results.get("tokens") or {},
        "tokens_per_second": results.get("tokens_per_second"),
        "processed_per_second": ((results.get("tokens") or {}).get("processed") or 0) / results["train_runtime_s"]
        if results.get("train_runtime_s") else None,
        "row_tokens": ((results.get("dataset") or {}).get("train_token_lengths") or {}).get("total"),
        "peak_memory": results.get("peak_memory") or {},
        "parameters": results.get("parameters") or {},
        "parameters_short": facts.human_count((results.get("parameters") or {}).get("total")),
        "loss_on": results.get("loss_on"),
        "train_loss_window": facts.train_loss_window(results),
        "segments": results.get("segments") or [],
        "tracking": tracking,
        "quantized": _quantized_rows(quantized, repo_name, cfg.publish.quantized_as),
        "quantized_reference": _quantized_reference(quantized),
        "quantized_skipped": quantized_skipped,
        "gguf": gguf_rows(results, run, cfg, repo_name),
        "loss_plot": LOSS_PLOT if (run.model_dir / LOSS_PLOT).exists() else None,
        "recorded": facts.card_summary(run),  # what manifest.json holds, for the reproduce section
        "reproduction": results.get("reproduction"),  # the verdict, when this run is a `smolforge reproduce`
        "plan_check": facts.plan_check(results.get("plan")),  # predicted memory/time next to the measured
        "trained": bool(results.get("global_steps")),
        "dpo_eval": _dpo_eval(results) if t.method == "dpo" else {},
        "grpo": grpo_facts(results),
        "evaluation": evaluation,
        "benchmarks": _benchmarks(evaluation),
        "benchmark_intervals": sorted({r.get("interval", "bootstrap") for r in _benchmarks(evaluation)}),
        "benchmark_notes": _benchmark_notes(_benchmarks(evaluation), cfg.model.is_tiny),
        "overlap_counts": _overlap_counts(_benchmarks(evaluation)),
        "held_out_task": _held_out_task(evaluation, cfg),
        "reasoning_check": (evaluation.get("retention") or {}).get("modes") or {},
        "loss_baseline": _loss_baseline(results),
        "harness_url": HARNESS_URL,
        # ---- how to run it
        "model_id": repo_name or LOCAL_MODEL_ID,
        "published_id": bool(repo_name),
        "install_line": _install(adapter, bool(quantized), facts.transformers_floor(adapter)),
        "prompt": PROMPT,
        "template": model_files.get("chat_template") or {},
        "reasoning": facts.reasoning(model_files, cfg),
        "generation_defaults": model_files.get("generation_defaults"),
        "weights_dtype": model_files.get("dtype"),
        "tokenizer_class": model_files.get("tokenizer_class"),
        "serving": facts.serving(arch, adapter, defaults.base_hub_id(cfg)),
        # ---- technical specifications and provenance
        "architecture": arch,
        "kv_cache_per_1k_tokens": facts.sizes(facts.kv_cache_bytes(arch, model_files.get("dtype"), 1000)),
        "weights": _weights(model_files),
        "versions": results.get("versions") or {},
        "versions_split": facts.versions(results.get("versions") or {}, adapter, bool(quantized)),
        "smolforge_version": (results.get("versions") or {}).get("smolforge"),
        "deterministic": facts.deterministic(results, cfg),
        "citation_year": year,
        "reproduce_command": "smolforge run config.yaml --yes",
        "local_data": facts.local_data(run, results.get("dataset") or {}),
        "command": public_text(results["command"]) if results.get("command") else None,
    }
    ctx["headline"] = facts.headline(ctx)
    ctx["bibtex"] = citations.model_entry(ctx)
    ctx["references"] = citations.references(ctx)
    return ctx


def _four_bit_base(results: dict[str, Any]) -> dict[str, Any] | None:
    """The 4-bit base a qlora run trained over, as training recorded it (None for a run that recorded none)."""
    fb = results.get("four_bit_base")
    return {**fb, "size": facts.sizes(fb.get("base_bytes"))} if isinstance(fb, dict) else None
