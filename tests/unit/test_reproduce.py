"""The reproducibility record's parts: environment differences, data and model identity, the card's numbers."""

from __future__ import annotations

import hashlib
import json
from types import SimpleNamespace

import pytest

from smolforge.errors import SmolforgeError
from smolforge.reproduce import compare, environment, identity
from smolforge.runfolder import RunFolder

SHA = "0123456789abcdef0123456789abcdef01234567"


def test_every_environment_difference_is_one_line():
    now = environment.capture()
    assert now["packages"]["torch"].startswith("2.13.0") and now["packages"]["trl"] == "1.16.0"
    assert len(now["packages"]) > 50  # the whole environment, not only the training libraries
    assert now["torch"]["cpu_capability"] and now["python"]["version"]
    assert environment.differences(now, json.loads(json.dumps(now))) == []
    before = json.loads(json.dumps(now))
    before["packages"]["trl"] = "1.15.0"
    before["packages"]["left-pad"] = "1.0"
    del before["packages"]["torch"]
    before["torch"]["threads"] = 64
    before["smolforge"]["source_sha256"] = "0" * 64
    lines = environment.differences(before, now)
    assert "package trl: 1.15.0 -> 1.16.0" in lines
    assert "package left-pad: 1.0 -> not installed" in lines
    assert any(line.startswith("package torch: not installed -> 2.13.0") for line in lines)
    assert any(line.startswith("torch.threads: 64 -> ") for line in lines)
    assert any(line.startswith("smolforge.source_sha256:") for line in lines)
    assert len(lines) == 5


def test_local_data_identity_names_the_changed_file(tmp_path):
    from smolforge.config.loading import load_config

    folder = tmp_path / "data"
    folder.mkdir()
    (folder / "train.jsonl").write_text('{"text": "a"}\n')
    (folder / "test.jsonl").write_text('{"text": "b"}\n')
    cfg = load_config(None, "tiny", [f"data.name={folder}"])
    before = identity.data_identity(cfg, None)
    assert before["kind"] == "local"
    assert {f["path"]: f["sha256"] for f in before["files"]} == {
        str(folder / "train.jsonl"): hashlib.sha256(b'{"text": "a"}\n').hexdigest(),
        str(folder / "test.jsonl"): hashlib.sha256(b'{"text": "b"}\n').hexdigest()}
    (folder / "train.jsonl").write_text('{"text": "A"}\n')
    (folder / "test.jsonl").unlink()
    lines = identity.identity_differences("data", before, identity.data_identity(cfg, None))
    assert len(lines) == 2
    assert lines[0].startswith(f"data file {folder / 'test.jsonl'} is missing")
    assert lines[1].startswith(f"data file {folder / 'train.jsonl'} changed: sha256 ")


def test_hub_revisions_are_commits_from_the_cache(tmp_path, monkeypatch):
    from huggingface_hub import constants

    snapshot = tmp_path / "models--org--model" / "snapshots" / SHA
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").write_text("{}")
    (tmp_path / "models--org--model" / "refs").mkdir()
    (tmp_path / "models--org--model" / "refs" / "main").write_text(SHA)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    assert identity._hub_commit("org/model", "config.json", None, "model") == SHA
    assert identity._hub_commit("org/model", "config.json", "b" * 40, "model") == "b" * 40  # a commit pins itself
    assert identity._hub_commit("org/other", "config.json", None, "model") is None
    arrow = f"/cache/datasets/org___data/default/0.0.0/{SHA}/data-train.arrow"
    data = SimpleNamespace(train=SimpleNamespace(cache_files=[{"filename": arrow}]), eval=None)
    assert identity._dataset_commit_from_cache_files(data) == SHA
    moved = identity.identity_differences("data", {"kind": "hub", "repo": "org/data", "revision": SHA},
                                          {"kind": "hub", "repo": "org/data", "revision": "c" * 40})
    assert moved == [f"data org/data: recorded at commit {SHA}, now {'c' * 40}"]


RESULTS = {
    "train_loss": 4.5, "final_train_loss": 4.4, "eval_loss": 4.6, "perplexity": 99.48, "global_steps": 24,
    "epochs": 0.42, "train_runtime_s": 9.1, "tokens_per_second": 1000.0,
    "tokens": {"supervised": 100, "real": 200, "processed": 200, "padding_fraction": 0.0},
    "parameters": {"total": 10, "trainable": 10}, "peak_memory": {"cpu_rss_mib": 600.0},
    "dataset": {"rows_read": 600, "train_size": 450, "train_token_lengths": {"p50": 100}},
    "log_history": [{"step": 1, "loss": 6.2}, {"step": 4, "loss": 6.1}],
    "eval_history": [{"step": 0, "eval_loss": 6.24}, {"step": 24, "eval_loss": 4.6}],
    "quantized": {"int8": {"eval_loss": 4.61, "size_bytes": 1000}},
    "evaluation": {"results": [{"task": "facts", "metric": "acc", "mode": "no_think", "base": 0.25, "tuned": 0.5,
                                "delta": 0.25, "n": 8}]},
}


def test_card_numbers_compare_exactly_on_cpu_and_within_tolerance_elsewhere():
    numbers = compare.card_numbers(RESULTS)
    for name in ("eval_loss", "perplexity", "tokens.supervised", "training loss at step 4",
                 "validation loss at step 24", "quantized.int8.eval_loss", "benchmark facts acc (no_think) tuned",
                 "dataset.train_token_lengths.p50"):
        assert name in numbers
    same = compare.compare_numbers(RESULTS, json.loads(json.dumps(RESULTS)), exact=True)
    assert all(r.match for r in same)
    moved = json.loads(json.dumps(RESULTS))
    moved["eval_loss"] = 4.6 * (1 + 1e-9)
    moved["train_runtime_s"] = 20.0  # a measurement of the machine: shown, never judged
    moved["tokens"]["supervised"] = 101
    rows = {r.name: r for r in compare.compare_numbers(RESULTS, moved, exact=True)}
    assert not rows["eval_loss"].match and not rows["tokens.supervised"].match
    assert not rows["train_runtime_s"].judged
    tolerant = {r.name: r for r in compare.compare_numbers(RESULTS, moved, exact=False)}
    assert tolerant["eval_loss"].match and not tolerant["tokens.supervised"].match  # counts are always exact


def test_variants_a_later_quantize_added_are_listed_apart_not_judged():
    """The original was quantized after it trained; its config asked for no variant, so the re-run has none: those
    numbers are shown as added later, and every other number still decides the verdict."""
    original = json.loads(json.dumps(RESULTS))
    original["quantized"]["gguf-q8_0"] = {"format": "gguf", "size_bytes": 1234, "eval_loss": 4.7}
    rerun = json.loads(json.dumps(RESULTS))
    assert compare.later_variants(original, ["int8"]) == ["gguf-q8_0"]
    rows = {r.name: r for r in compare.compare_numbers(original, rerun, exact=True, later=["gguf-q8_0"])}
    added = rows["quantized.gguf-q8_0.size_bytes"]
    assert added.later and not added.judged and added.reproduced is None
    assert all(r.match for r in rows.values() if r.judged)
    judged_without = {r.name for r in compare.compare_numbers(original, rerun, exact=True) if r.judged and not r.match}
    assert judged_without == {"quantized.gguf-q8_0.size_bytes", "quantized.gguf-q8_0.eval_loss"}  # what was wrong


def test_weights_are_compared_tensor_by_tensor(tmp_path):
    import torch
    from safetensors.torch import save_file

    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    tensors = {"w": torch.arange(6, dtype=torch.float32).reshape(2, 3), "v": torch.ones(4)}
    save_file(tensors, a / "model.safetensors")
    save_file({k: v.clone() for k, v in tensors.items()}, b / "model.safetensors")
    same = compare.compare_weights(a, b)
    assert (same.tensors, same.identical, same.missing) == (2, 2, []) and same.match(exact=True)
    changed = {**tensors, "v": torch.ones(4) + torch.tensor([0, 0, 0, 1e-3])}
    save_file(changed, b / "model.safetensors")
    diff = compare.compare_weights(a, b)
    assert diff.identical == 1 and diff.max_abs_diff == pytest.approx(1e-3, rel=1e-3)
    assert not diff.match(exact=True) and diff.match(exact=False)


def test_a_run_without_manifest_is_explained(tmp_path):
    from smolforge.reproduce.manifest import read

    (tmp_path / "config.yaml").write_text("preset: tiny\n")
    with pytest.raises(SmolforgeError) as e:
        read(RunFolder(tmp_path))
    text = str(e.value)
    assert "no manifest.json" in text and "installed packages" in text and "config.yaml" in text
