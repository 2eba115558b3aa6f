"""`smolforge quantize` through the real CLI: torchao variants that reload, measured sizes and losses, the card."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from tests.conftest import kill_when, run_cli


def _results(run: Path) -> dict:
    return json.loads((run / "results.json").read_text())


def _weights(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.glob("*.safetensors"))


def test_int8_variant_is_measured_against_the_same_eval(quantized_tiny_run):
    run = quantized_tiny_run
    results = _results(run)
    q = results["quantized"]["int8"]
    assert q["path"] == "quantized/int8" and q["subfolder"] == "int8"
    assert q["method"] == "torchao Int8WeightOnlyConfig"
    # sizes are the bytes on disk of the weight files, for the variant and for the full-precision model
    assert q["size_bytes"] == _weights(run / "quantized" / "int8")
    assert q["reference"]["size_bytes"] == _weights(run / "model")
    assert q["reference"]["dtype"] == "float32"
    assert q["size_bytes"] < 0.6 * q["reference"]["size_bytes"]  # int8 linears; the tied fp32 embedding stays
    # the method check: the full-precision model evaluated by the quantize stage gives training's own number
    assert q["reference"]["eval_loss"] == pytest.approx(results["eval_loss"], abs=1e-6)
    # int8 weight-only is close to full precision, and really is a different model
    assert math.isfinite(q["eval_loss"]) and abs(q["eval_loss"] - results["eval_loss"]) < 0.05
    assert q["eval_loss"] != q["reference"]["eval_loss"]
    assert q["perplexity"] == pytest.approx(math.exp(q["eval_loss"]), rel=1e-12)


def test_int4_on_cpu_is_skipped_with_the_reason(quantized_tiny_run):
    import torch

    if torch.cuda.is_available():
        pytest.skip("int4 is produced on CUDA")
    entry = _results(quantized_tiny_run)["quantized"]["int4"]
    assert set(entry) == {"skipped"}
    assert "CUDA" in entry["skipped"] and "int8" in entry["skipped"]
    assert not (quantized_tiny_run / "quantized" / "int4").exists()
    assert sorted(p.name for p in (quantized_tiny_run / "quantized").iterdir()) == ["int8"]


def test_variant_folder_reloads_standalone_and_generates(quantized_tiny_run):
    import torch
    from torchao.quantization import Int8Tensor
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = quantized_tiny_run / "quantized" / "int8"
    assert {"config.json", "model.safetensors", "tokenizer.json", "chat_template.jinja"} <= \
        {p.name for p in folder.iterdir()}
    model = AutoModelForCausalLM.from_pretrained(folder)
    tok = AutoTokenizer.from_pretrained(folder)
    assert isinstance(model.model.layers[0].mlp.down_proj.weight, Int8Tensor)
    assert json.loads((folder / "config.json").read_text())["quantization_config"]["quant_method"] == "torchao"
    inputs = tok.apply_chat_template([{"role": "user", "content": "What is 2 plus 2?"}], add_generation_prompt=True,
                                     enable_thinking=False, return_tensors="pt", return_dict=True)
    out = model.generate(**inputs, max_new_tokens=8, do_sample=False)
    assert out.shape[1] > inputs["input_ids"].shape[1]
    full = AutoModelForCausalLM.from_pretrained(quantized_tiny_run / "model")
    with torch.no_grad():
        a, b = model(**inputs).logits, full(**inputs).logits
    assert 0 < (a - b).abs().max() < 0.5  # quantized, and close


def test_card_numbers_equal_results(quantized_tiny_run):
    from huggingface_hub import ModelCard

    results = _results(quantized_tiny_run)
    q = results["quantized"]["int8"]
    text = ModelCard.load(quantized_tiny_run / "model" / "README.md").text
    row = next(line for line in text.splitlines() if line.startswith("| int8 |"))
    assert f"| {q['eval_loss']:.4f} | {q['perplexity']:.2f} |" in row
    assert f"{q['size_bytes'] / 1000:.2f} KB ({100 * q['size_bytes'] / q['reference']['size_bytes']:.0f}% of" in row
    ref = next(line for line in text.splitlines() if line.startswith("| full precision (float32) |"))
    assert f"| {q['reference']['eval_loss']:.4f} |" in ref
    assert 'from_pretrained("quantized/int8")' in text  # no repo yet: the local path
    assert "Not produced: int4 (" in text
    assert "~50%" not in text and "N/A" not in text


def test_quantized_models_flag_follows_the_variants(tiny_run, quantized_tiny_run):
    from smolforge.card.context import build_context
    from smolforge.runfolder import RunFolder

    for path, expected in ((tiny_run, False), (quantized_tiny_run, True)):
        run = RunFolder(path)
        cfg = run.read_config()
        ctx = build_context(run, cfg, run.read_results())
        assert ctx["quantized_models"] is expected


def test_unknown_method_exits_2_before_loading(run_copy):
    proc = run_cli("quantize", str(run_copy), "--method", "int3", cwd=run_copy.parent, check=False)
    assert proc.returncode == 2
    assert "--method" in proc.stderr and "int8 or int4" in proc.stderr and "Traceback" not in proc.stderr
    assert not (run_copy / "quantized").exists()


def test_hand_edited_card_is_kept(run_copy):
    card = run_copy / "model" / "README.md"
    card.write_text(card.read_text() + "\nMy own note.\n")
    proc = run_cli("quantize", str(run_copy), "--method", "int8", cwd=run_copy.parent)
    assert "edited by hand" in proc.stdout and "--force" in proc.stdout
    assert card.read_text().endswith("My own note.\n")
    assert _results(run_copy)["quantized"]["int8"]["size_bytes"] == _weights(run_copy / "quantized" / "int8")


def test_a_killed_quantize_leaves_no_work_folder_after_the_next_one(run_copy, tmp_path):
    """Killed while it works, the stage cannot clean up; the next quantize of the run removes what it left."""
    quantized = run_copy / "quantized"
    kill_when(["quantize", str(run_copy), "--method", "int8"], tmp_path,
              lambda: quantized.is_dir() and any(quantized.glob(".work-*")))
    assert list(quantized.glob(".work-*")), "the kill left the work folder behind, as a crash does"
    run_cli("quantize", str(run_copy), "--method", "int8", cwd=tmp_path)
    assert sorted(p.name for p in quantized.iterdir()) == ["int8"]
