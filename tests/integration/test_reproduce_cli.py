"""manifest.json and `smolforge reproduce` through the real CLI on tiny runs."""

from __future__ import annotations

import hashlib
import json
import shlex
import shutil
from pathlib import Path

import pytest

from smolforge.builtin_data import BUILTIN_PATH
from tests.conftest import FAST_TINY, run_cli

pytestmark = pytest.mark.slow  # trains tiny models through the CLI

QUICK = ["--set", "training.max_steps=6", "--set", "training.eval_steps=3", "--set", "training.save_steps=6",
         "--set", "training.logging_steps=2", "--set", "tracking.backend=none"]


def _tree(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_the_manifest_records_command_environment_and_data(tiny_run):
    manifest = json.loads((tiny_run / "manifest.json").read_text())
    results = json.loads((tiny_run / "results.json").read_text())
    assert shlex.split(manifest["command"]) == shlex.split(results["command"])  # the same argv, quoted for a shell
    assert "--experiment-name shared" in manifest["command"]
    assert manifest["config"]["experiment_name"] == "shared" and manifest["config"]["training"]["max_steps"] == 24
    assert manifest["config_yaml_sha256"] == hashlib.sha256((tiny_run / "config.yaml").read_bytes()).hexdigest()
    assert manifest["seeds"] == {"training": 42, "data": 42}
    env = manifest["environment"]
    assert env["packages"]["torch"].startswith("2.13.0") and env["packages"]["transformers"] == "5.24.0"
    assert env["torch"]["version"].startswith("2.13.0") and env["device"]["device"] == "cpu"
    assert manifest["data"] == {"kind": "builtin", "files": [
        {"path": "builtin", "sha256": hashlib.sha256(BUILTIN_PATH.read_bytes()).hexdigest(),
         "bytes": BUILTIN_PATH.stat().st_size}]}
    tiny = manifest["model"]
    assert tiny["kind"] == "tiny" and [f["path"] for f in tiny["files"]] == ["model.safetensors", "tokenizer.json"]
    card = (tiny_run / "model" / "README.md").read_text()
    assert f"the versions of all {len(env['packages'])} installed Python packages" in card


def test_reproduce_matches_every_number_and_weight_bit_for_bit(quantized_copy, tmp_path):
    """The shared run (training, validation history, benchmark comparison) trained again from its manifest. It was
    quantized after it trained (its config asked for no variant): the variants are listed as later additions, not
    counted as numbers the re-run failed to reproduce."""
    run_copy = quantized_copy
    before = _tree(run_copy)
    again = tmp_path / "again"
    proc = run_cli("reproduce", str(run_copy), "--output-dir", str(again), cwd=tmp_path)
    assert "The environment, the data and the base model match the record." in proc.stdout
    assert "are bit-identical" in proc.stdout
    later = next(line for line in proc.stdout.splitlines() if line.startswith("Not re-run: "))
    assert "int8" in later and "smolforge quantize" in later
    assert _tree(run_copy) == before  # the original is only read
    record = json.loads((again / "results.json").read_text())["reproduction"]
    assert record["reproduced"] and record["exact"] and not record["mismatches"]
    assert any(a.startswith("int8 (made by a later") for a in record["later_additions"])
    assert record["numbers"] == record["numbers_matching"] > 30
    assert record["weights"]["tensors"] == record["weights"]["identical"] > 0
    original = json.loads((run_copy / "results.json").read_text())
    assert any(r["status"] == "ok" for r in original["evaluation"]["results"])  # benchmark numbers were compared
    card = (again / "model" / "README.md").read_text()
    assert f"**Reproduction check:** this run re-trained `{run_copy}` with `smolforge reproduce`: reproduced" in card
    assert json.loads((again / "manifest.json").read_text())["command"].startswith("smolforge reproduce ")


def test_reproduce_reports_an_edited_data_file_before_training(tmp_path):
    data = tmp_path / "chats.jsonl"
    shutil.copy(BUILTIN_PATH, data)
    run_cli("run", "--preset", "tiny", "--yes", "--experiment-name", "local", "--set", f"data.name={data}",
            *FAST_TINY, *QUICK, cwd=tmp_path)
    run = tmp_path / "runs" / "local"
    rows = data.read_text().splitlines()
    row = json.loads(rows[0])
    row["messages"][-1]["content"] += " Edited."
    data.write_text("\n".join([json.dumps(row), *rows[1:]]) + "\n")

    proc = run_cli("reproduce", str(run), cwd=tmp_path, check=False)
    assert proc.returncode == 1, proc.stderr
    warning = f"warning: data file {data} changed: sha256 "
    assert warning in proc.stdout
    assert proc.stdout.index(warning) < proc.stdout.index("smolforge reproduce")  # before the run starts
    assert "did not reproduce" in proc.stderr and "Traceback" not in proc.stderr
    record = json.loads((tmp_path / "runs" / "local-reproduced" / "results.json").read_text())["reproduction"]
    assert not record["reproduced"] and record["input_differences"]
    assert {"eval_loss", "baseline_eval_loss"} <= {m["name"] for m in record["mismatches"]}  # the row is held out


def test_reproduce_of_a_run_without_manifest_says_what_is_missing(run_copy, tmp_path):
    (run_copy / "manifest.json").unlink()
    proc = run_cli("reproduce", str(run_copy), cwd=tmp_path, check=False)
    assert proc.returncode == 2
    assert "no manifest.json" in proc.stderr and "smolforge run" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "run-reproduced").exists() and not list(run_copy.parent.glob("*-reproduced*"))
