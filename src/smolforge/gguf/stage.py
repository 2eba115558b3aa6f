"""The GGUF part of the quantize stage: convert once, quantize per method, verify every file, gate it.

Each variant lands in `quantized/<method>/` as one `.gguf` file, an Ollama `Modelfile` and
`verification.json` (every check with its evidence, including the per-tensor error table). results.json's
`quantized.<method>` holds the summary the card and `publish` read: sizes, the quality drop, the gate,
and whether every check passed (`verified`). A variant that fails a check or the gate is kept, and
`publish` leaves it out unless `--force`.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from smolforge.card.facts import signed_percent
from smolforge.config import SmolforgeConfig
from smolforge.gguf import behaviour, verify
from smolforge.gguf.convert import FILE_TYPES, add_turn_metadata, check_disk, file_name, quantize_file, run_converter
from smolforge.gguf.llamarun import LlamaCppModel
from smolforge.gguf.modelfile import modelfile
from smolforge.gguf.source import export_chat_template, stage_source
from smolforge.gguf.toolchain import find
from smolforge.modelio import load_saved, model_source
from smolforge.runfolder import RunFolder, atomic_write_text, place_atomically, share_like_other_files
from smolforge.saved_model_loss import Evaluator
from smolforge.weightfiles import main_dtype, weights_bytes

SCHEMES = {"gguf-f16": "16-bit floats (norms stay f32): the reference GGUF, no quantization",
           "gguf-q8_0": "8-bit blocks of 32 weights with one f16 scale each",
           "gguf-q4_k_m": "4-bit K-quant super-blocks of 256 weights (Q4_K), Q6_K for half of the attention value "
                          "and feed-forward down projections; tensors whose width is not a multiple of 256 fall "
                          "back to Q5_0/Q8_0"}
KV_BYTES = 2  # llama.cpp's default KV cache type is f16


def file_stem(cfg: SmolforgeConfig, run: RunFolder) -> str:
    return (cfg.publish.repo_id or cfg.experiment_name or run.root.name).split("/")[-1]


def memory_estimate(size_bytes: int, config: dict[str, Any], n_ctx: int) -> int:
    """Weights plus llama.cpp's f16 KV cache for `n_ctx` tokens (compute buffers not counted)."""
    layers = int(config.get("num_hidden_layers", 0))
    heads = int(config.get("num_attention_heads", 1))
    kv_heads = int(config.get("num_key_value_heads") or heads)
    head_dim = int(config.get("head_dim") or config.get("hidden_size", 0) // heads)
    return size_bytes + 2 * layers * n_ctx * kv_heads * head_dim * KV_BYTES


class Reference:
    """The full-precision fine-tune in transformers and the eval tokens both sides are scored on."""

    def __init__(self, cfg: SmolforgeConfig, run: RunFolder, source: Path, rt):
        evaluator = Evaluator(cfg, run, rt)
        try:
            self.model = load_saved(source, rt)
            self.seqs = behaviour.eval_sequences(evaluator, self.model, cfg.quantize.gguf_eval_rows)
        finally:
            evaluator.close()
        self.nll = behaviour.transformers_nll(self.model, self.seqs) if self.seqs.sequences else None

    def longest(self) -> int:
        return max((len(ids) for ids, _ in self.seqs.sequences), default=0)


def _checks(path: Path, source: Path, tokenizer, facts, ref: Reference, conversations, method: str,
            n_ctx: int) -> dict[str, Any]:
    import gguf

    config = json.loads((source / "config.json").read_text(encoding="utf-8"))
    reader = gguf.GGUFReader(str(path), "r")
    fields = verify.read_fields(reader)
    structure, numbers = verify.check_tensors(reader, source, config)
    del reader
    checks: dict[str, Any] = {"structure": structure, "tensors": numbers,
                              "template": verify.check_template(fields, tokenizer, conversations)}
    llama = LlamaCppModel(path, n_ctx=n_ctx)
    try:
        checks["tokenizer"] = verify.check_tokenizer(llama, tokenizer, conversations)
        checks["special_tokens"] = verify.check_special_tokens(llama, facts)
        if ref.nll is not None:
            checks["loss"] = behaviour.compare_loss(llama, ref.nll, ref.seqs)
        if method == "gguf-f16" and ref.seqs.prompts:
            stop = {i for i in (facts.end_of_turn_id, facts.eos_id) if i is not None}
            checks["greedy"] = behaviour.compare_greedy(llama, ref.model, tokenizer, ref.seqs.prompts, stop)
    finally:
        llama.close()
    checks["metadata"] = {k: v for k, v in fields.items() if k != "tokenizer.chat_template"}
    return checks


def _summary(checks: dict[str, Any], max_drop: float) -> dict[str, Any]:
    gated = [k for k in ("structure", "tensors", "template", "tokenizer", "special_tokens", "greedy") if k in checks]
    failed = [k for k in gated if not checks[k]["passed"]]
    out: dict[str, Any] = {"verified": not failed, "failed_checks": failed, "max_quality_drop": max_drop}
    loss = checks.get("loss")
    if loss is not None:
        out.update(quality_drop=loss["quality_drop"], loss_llama_cpp=loss["loss_llama_cpp"],
                   loss_transformers=loss["loss_transformers"], perplexity=loss["perplexity_llama_cpp"],
                   scored_rows=loss["rows"], scored_tokens=loss["tokens"])
        out["gate"] = "passed" if loss["quality_drop"] <= max_drop else "failed"
    else:
        out["gate"] = "not measured"  # no eval split: nothing to measure the drop on
    out["publishable"] = out["verified"] and out["gate"] == "passed"
    return out


def _display(method: str, entry: dict[str, Any]) -> str:
    size = f"{entry['size_bytes'] / 1e6:.2f} MB"
    drop = f", quality drop {signed_percent(entry['quality_drop'])}" if "quality_drop" in entry else ""
    state = "verified" if entry["verified"] else \
        f"FAILED {', '.join(entry['failed_checks'])} (kept, not published without --force)"
    gate = {"passed": "", "failed": f" (above quantize.max_quality_drop {100 * entry['max_quality_drop']:.1f}%: "
                                     "kept, not published without --force)",
            "not measured": " (no eval split, so no quality drop: not published without --force)"}[entry["gate"]]
    return f"{method}: {entry['path']}/{entry['file']}: {size}{drop}; {state}{gate}"



def default_reasoning_mode(run: RunFolder) -> str:
    """/no_think when every training row was in that mode (the model never learned to reason), else /think."""
    modes = (run.read_results().get("model_files") or {}).get("trained_modes") or {}
    return "/no_think" if modes and not modes.get("think") else "/think"


def produce_gguf(run: RunFolder, cfg: SmolforgeConfig, methods: list[str], source: Path, rt, work: Path,
                 section: dict[str, Any], say) -> None:
    """Convert `source` (full weights) once and write, verify and record every requested GGUF variant."""
    from transformers import AutoTokenizer

    tc = find()
    run.quantized_dir.mkdir(parents=True, exist_ok=True)
    check_disk(source, work, run.quantized_dir, methods)
    tokenizer = AutoTokenizer.from_pretrained(str(source))
    staged, facts = stage_source(source, work / "gguf-source", model_source(cfg))
    stem = file_stem(cfg, run)
    say("Converting to GGUF with llama.cpp's converter...")
    t0 = time.perf_counter()
    raw, f16 = work / "converted.gguf", work / "reference-f16.gguf"
    run_converter(tc, staged, raw, cfg.card.model_name or stem, cfg.model.name_or_path)
    add_turn_metadata(raw, f16, facts)
    raw.unlink()
    convert_s = time.perf_counter() - t0
    say("Scoring the full-precision model on the eval split (the reference for every GGUF file)...")
    ref = Reference(cfg, run, source, rt)
    conversations = verify.conversations_for_checks(ref.seqs.conversations)
    prompt_tokens = max((len(behaviour.prompt_ids(tokenizer, p)) for p in ref.seqs.prompts), default=0)
    n_ctx = max(ref.longest(), prompt_tokens + behaviour.GREEDY_TOKENS, 512)
    config = json.loads((source / "config.json").read_text(encoding="utf-8"))
    generation = json.loads((source / "generation_config.json").read_text(encoding="utf-8")) \
        if (source / "generation_config.json").is_file() else {}
    reference = {"path": "model", "dtype": main_dtype(source), "size_bytes": weights_bytes(source)}
    if source != run.model_dir:
        reference["note"] = "base model with the LoRA adapter merged in"
    for method in methods:
        folder = work / method
        folder.mkdir()
        target = folder / file_name(stem, method)
        t1 = time.perf_counter()
        if method == "gguf-f16":
            os.link(f16, target)
        else:
            say(f"Quantizing to {FILE_TYPES[method][0]} with llama.cpp...")
            quantize_file(f16, target, method)
        quantize_s = time.perf_counter() - t1
        say(f"Verifying {target.name} (structure, tensors, template, tokenizer, llama.cpp loss)...")
        t2 = time.perf_counter()
        checks = _checks(target, source, tokenizer, facts, ref, conversations, method, n_ctx)
        verify_s = time.perf_counter() - t2
        size = target.stat().st_size
        entry: dict[str, Any] = {
            "format": "gguf", "path": f"quantized/{method}", "file": target.name, "file_type": FILE_TYPES[method][0],
            "method": f"llama.cpp {FILE_TYPES[method][0]}", "scheme": SCHEMES[method], "size_bytes": size,
            "memory_bytes": memory_estimate(size, config, cfg.training.max_length),
            "memory_context_tokens": cfg.training.max_length, "reference": reference,
            "tensor_types": checks["tensors"]["tensor_types"], "worst_relative_error":
                checks["tensors"]["worst_relative_error"],
            "special_tokens": facts.as_dict(), "llama_cpp": tc.describe(),
            "seconds": {"convert_f16": round(convert_s, 3), "quantize": round(quantize_s, 3),
                        "verify": round(verify_s, 3)},
            "quantized_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            **_summary(checks, cfg.quantize.max_quality_drop),
        }
        if "greedy" in checks:
            entry["greedy_identical"] = f"{checks['greedy']['identical']}/{checks['greedy']['prompts']}"
        text = modelfile(target.name, export_chat_template(tokenizer.chat_template) if isinstance(
            tokenizer.chat_template, str) else None, facts.stop_tokens, generation, cfg.training.max_length,
            f"{stem} ({FILE_TYPES[method][0]})", default_mode=default_reasoning_mode(run))
        (folder / "Modelfile").write_text(text, encoding="utf-8")
        atomic_write_text(folder / "verification.json", json.dumps(checks, indent=2, default=str) + "\n")
        entry["modelfile"] = "Modelfile"
        share_like_other_files(folder)
        place_atomically(folder, run.root / entry["path"])
        section[method] = entry
        say(_display(method, entry))
    f16.unlink(missing_ok=True)
    shutil.rmtree(staged, ignore_errors=True)
