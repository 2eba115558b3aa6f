"""Quantized variants of a run's model with torchao, each measured: size on disk and eval loss.

Every variant is written to `quantized/<method>/` as a stand-alone folder (weights in
safetensors, config with its `quantization_config`, tokenizer, chat template), so
`AutoModelForCausalLM.from_pretrained(folder)` loads it with torchao installed. Its eval loss
is measured on the run's own eval split with the same data preparation, trainer class and
batching as training (`evaluate.py`), and the full-precision model is re-evaluated the same way
as a check on the method: that number must equal the eval loss training recorded.

What works where (torchao 0.18): int8 weight-only (`Int8WeightOnlyConfig`) on CPU and CUDA;
packed int4 (`Int4WeightOnlyConfig`, tinygemm tile packing) only on CUDA. torchao's CPU int4
option stores int8 values and saves nothing, so on CPU int4 is skipped and the card says why.

The `gguf-*` methods (files for llama.cpp and Ollama) are produced and verified by `smolforge.gguf`
from the same full-weight folder; this module only dispatches them.
"""

from __future__ import annotations

import logging
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from smolforge.config import SmolforgeConfig
from smolforge.config.outputs import GGUF_METHODS
from smolforge.errors import SmolforgeError, first_line
from smolforge.gguf.stage import produce_gguf
from smolforge.modelio import merged_model_folder, perplexity, save_for_publishing, torch_dtype
from smolforge.runfolder import RunFolder, place_atomically, scratch_dir, share_like_other_files
from smolforge.runtime import resolve
from smolforge.saved_model_loss import Evaluator
from smolforge.weightfiles import folder_bytes, main_dtype, weights_bytes

log = logging.getLogger("smolforge.quantize")

TORCHAO_METHODS = ("int8", "int4")
METHODS = TORCHAO_METHODS + GGUF_METHODS
INT4_CPU_SKIP = ("torchao's packed int4 (Int4WeightOnlyConfig) needs a CUDA GPU and none was found; torchao's "
                 "CPU int4 option (IntxWeightOnlyConfig) stores int8 values and would save nothing")


def _int4_group_size(model) -> int | None:
    """Largest torchao int4 group size that divides the in-features of every linear layer."""
    import torch

    widths = {m.in_features for m in model.modules() if isinstance(m, torch.nn.Linear)}
    return next((g for g in (128, 64, 32) if widths and all(w % g == 0 for w in widths)), None)


def plan(method: str, device: str) -> str | None:
    """None when `method` can be produced on `device`, else why not (recorded as `skipped`)."""
    if method not in METHODS:
        raise SmolforgeError(f"--method: unknown quantization {method!r}. Choose int8 or int4 (torchao), or gguf-f16, "
                             "gguf-q8_0 or gguf-q4_k_m (llama.cpp / Ollama files).")
    if method == "int4" and device != "cuda":
        return INT4_CPU_SKIP
    return None


def _torchao_config(method: str, model=None):
    """(torchao config, description of what it stores) for a method."""
    from torchao.quantization import Int4WeightOnlyConfig, Int8WeightOnlyConfig

    if method == "int8":
        return Int8WeightOnlyConfig(), ("torchao Int8WeightOnlyConfig",
                                        "int8 weights with one scale per output row, for every nn.Linear")
    group = _int4_group_size(model) if model is not None else 128
    if group is None:
        raise SmolforgeError("int4: no int4 group size (128, 64 or 32) divides the layer widths of this model.")
    return (Int4WeightOnlyConfig(group_size=group, int4_packing_format="tile_packed_to_4d"),
            ("torchao Int4WeightOnlyConfig", f"int4 weights packed for tinygemm, one scale/zero per {group} "
                                             "inputs, for every nn.Linear"))


def build_variant(method: str, source: Path, dest_tmp: Path, rt) -> dict[str, str]:
    """Quantize the weights in `source` with torchao and save a stand-alone folder at `dest_tmp`."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, TorchAoConfig

    if method == "int4":
        with torch.device("meta"):  # layer widths only, for the group size: no memory
            probe = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(str(source)))
        ao_config, (name, scheme) = _torchao_config(method, probe)
        del probe
        dtype = torch.bfloat16  # tinygemm packs bf16 weights
    else:
        ao_config, (name, scheme) = _torchao_config(method)
        dtype = torch_dtype(rt)
    model = AutoModelForCausalLM.from_pretrained(
        str(source), dtype=dtype, device_map=rt.device, quantization_config=TorchAoConfig(quant_type=ao_config))

    save_for_publishing(model, AutoTokenizer.from_pretrained(str(source)), dest_tmp)
    del model
    return {"method": name, "scheme": scheme, "compute_dtype": str(dtype).replace("torch.", "")}


def quantize_run(run: RunFolder, cfg: SmolforgeConfig, methods: list[str], console=None) -> dict[str, Any]:
    """Produce, measure and record each requested variant; returns results.json's `quantized` section."""
    for m in methods:
        plan(m, "cpu")  # validates the names before anything is loaded
    if not (run.model_dir / "config.json").exists() and not (run.model_dir / "adapter_config.json").exists():
        raise SmolforgeError(f"{run.model_dir} holds no model to quantize. Finish the run with `smolforge run` "
                             "first (or resume it with --resume).")

    rt = resolve(cfg)
    section: dict[str, Any] = dict(run.read_results().get("quantized") or {})
    todo = [m for m in dict.fromkeys(methods) if m not in GGUF_METHODS]
    gguf_todo = [m for m in dict.fromkeys(methods) if m in GGUF_METHODS]
    skipped = {m: why for m in todo if (why := plan(m, rt.device))}
    for m, why in skipped.items():
        section[m] = {"skipped": why}
        _say(console, f"{m}: skipped: {why}.")
    todo = [m for m in todo if m not in skipped]
    if not todo and not gguf_todo:
        run.update_results(quantized=section)
        return section

    run.quantized_dir.mkdir(parents=True, exist_ok=True)
    try:
        _make(run, cfg, todo, gguf_todo, rt, section, console)
    finally:  # what was made before a failure stays recorded
        run.update_results(quantized=section)
    return section


def _make(run: RunFolder, cfg: SmolforgeConfig, todo: list[str], gguf_todo: list[str], rt, section: dict[str, Any],
          console) -> None:
    with scratch_dir(run.quantized_dir, ".work-") as work:
        source = merged_model_folder(run, cfg, work, rt)
        if todo:
            evaluator = Evaluator(cfg, run, rt)
            try:
                _produce(run, todo, source, evaluator, rt, work, section, console)
            finally:
                evaluator.close()
        if gguf_todo:
            produce_gguf(run, cfg, gguf_todo, source, rt, work, section, lambda text: _say(console, text))


def _produce(run: RunFolder, todo: list[str], source: Path, evaluator, rt, work: Path, section: dict[str, Any],
             console) -> None:
    import torchao

    reference = {"path": "model", "dtype": main_dtype(source), "size_bytes": weights_bytes(source)}
    if source != run.model_dir:
        reference["note"] = "base model with the LoRA adapter merged in"
    if evaluator.available:
        _say(console, "Evaluating the full-precision model (the reference for the variants)...")
        reference["eval_loss"] = evaluator.eval_loss(source)
    for m in todo:
        _say(console, f"Quantizing to {m} with torchao...")
        tmp = work / m
        try:
            info = build_variant(m, source, tmp, rt)
        except (RuntimeError, NotImplementedError, ImportError, AssertionError) as e:
            # torchao raises these when a kernel is missing for this device: record why, keep going
            why = f"torchao could not quantize this model to {m} on {rt.device}: {first_line(e)}"
            section[m] = {"skipped": why}
            _say(console, f"{m}: skipped: {why}.")
            continue
        entry: dict[str, Any] = {
            "path": f"quantized/{m}", "subfolder": m, **info,
            "size_bytes": weights_bytes(tmp), "folder_bytes": folder_bytes(tmp),
            "size_counts": "bytes of the weight files (*.safetensors) in the folder",
            "reference": reference, "device": rt.device, "torchao": torchao.__version__,
            "quantized_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
        if evaluator.available:
            loss = evaluator.eval_loss(tmp)  # reloaded from disk: proves the folder loads stand-alone
            entry["eval_loss"] = loss
            if perplexity(loss) is not None:
                entry["perplexity"] = perplexity(loss)
        share_like_other_files(tmp)
        place_atomically(tmp, run.root / entry["path"])
        section[m] = entry
        _say(console, _summary_line(m, entry))


def _summary_line(method: str, e: dict[str, Any]) -> str:
    ref = e["reference"]
    size = f"{e['size_bytes'] / 1e6:.2f} MB weights ({e['size_bytes'] / ref['size_bytes']:.0%} of " \
           f"{ref['size_bytes'] / 1e6:.2f} MB {ref['dtype']})"
    loss = ""
    if "eval_loss" in e and "eval_loss" in ref:
        loss = f", eval loss {e['eval_loss']:.4f} (full precision {ref['eval_loss']:.4f})"
    return f"{method}: {e['path']}: {size}{loss}"


def _say(console, text: str) -> None:
    log.info(text)
    if console is not None:
        console.print(text, markup=False, highlight=False)
