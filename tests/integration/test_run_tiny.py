"""The foundation slice end to end: `smolforge run --preset tiny` through the real entry point."""

from __future__ import annotations

import ast
import json
import math
import re
from pathlib import Path

import pytest
import yaml

from tests.conftest import FAST_TINY, run_cli

pytestmark = pytest.mark.slow  # drives the CLI with the training libraries loaded (`make test` runs it)

MODEL_FILES = {"README.md", "chat_template.jinja", "config.json", "generation_config.json", "loss_curve.png",
               "model.safetensors", "tokenizer.json", "tokenizer_config.json"}


def _files(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}


def _log_lines(run: Path) -> list[dict]:
    """The trainer's log records as written to logs/run.log (full precision)."""
    records = []
    for line in (run / "logs" / "run.log").read_text().splitlines():
        m = re.search(r"step \d+/\d+ (.*)$", line)
        if m and "=" in m.group(1):
            records.append({k: ast.literal_eval(v) for k, v in re.findall(r"(\w+)=(\S+)", m.group(1))})
    return records


def test_run_folder_has_exactly_the_contract_files(tiny_run):
    top = {p.name for p in tiny_run.iterdir()}
    assert top == {"config.yaml", "results.json", "manifest.json", "data_report.json", "model", "checkpoints", "logs",
                   "evaluation"}
    assert _files(tiny_run / "evaluation") == {"summary.json", "retention.jsonl",
                                               "items/smolforge_chat_facts_mc.no_think.jsonl",
                                               "items/smolforge_chat_facts_gen.no_think.jsonl"}
    assert _files(tiny_run / "model") == MODEL_FILES
    assert _files(tiny_run / "logs") == {"run.log"}
    ckpts = sorted(p.name for p in (tiny_run / "checkpoints").iterdir())
    assert ckpts == ["checkpoint-12", "checkpoint-24"]


def test_results_are_finite_and_match_the_trainers_log(tiny_run):
    results = json.loads((tiny_run / "results.json").read_text())
    for key in ("train_loss", "eval_loss", "perplexity", "train_runtime_s", "tokens_per_second", "epochs"):
        assert isinstance(results[key], float) and math.isfinite(results[key]), key
    assert results["global_steps"] == 24
    logged = _log_lines(tiny_run)
    final_train = next(r for r in reversed(logged) if "train_loss" in r)
    final_eval = next(r for r in reversed(logged) if "eval_loss" in r)
    assert results["train_loss"] == final_train["train_loss"]
    assert results["train_runtime_s"] == final_train["train_runtime"]
    assert results["eval_loss"] == final_eval["eval_loss"]
    assert results["perplexity"] == pytest.approx(math.exp(results["eval_loss"]), rel=1e-12)
    steps = [r for r in logged if "loss" in r]
    assert results["final_train_loss"] == steps[-1]["loss"]
    # the supervised-token count is real: at least one loss-bearing token per training row seen
    assert results["tokens"]["supervised"] > 24 * 8
    assert results["tokens"]["padding_fraction"] == 0.0  # padding-free batches
    assert results["dataset"]["train_size"] + results["dataset"]["eval_size"] == 600 - 98  # 98 exact duplicates
    assert results["hardware"]["summary"].startswith("CPU only")
    assert results["versions"]["trl"] == "1.16.0"


# The CPU run is bit-reproducible: these are its exact losses (SHORT_RUN on FAST_TINY, seed 42). A change to
# data preparation, tokenisation, batching, masking or the optimizer moves them. The tolerance only allows for
# another CPU's float rounding.
PINNED_TRAIN = {1: 6.24182653427124, 4: 6.138966242472331, 8: 5.651580810546875, 12: 5.249818325042725,
                16: 4.96480655670166, 20: 4.909335613250732, 24: 4.77862548828125}
PINNED_EVAL = {0: 6.248571872711182, 8: 5.374778747558594, 16: 4.947097301483154, 24: 4.876718044281006}


def test_the_deterministic_tiny_run_reproduces_its_pinned_losses(tiny_run):
    logged = _log_lines(tiny_run)
    train = [r["loss"] for r in logged if "loss" in r]
    steps = [int(s) for s in re.findall(r"step (\d+)/24 loss=", (tiny_run / "logs" / "run.log").read_text())]
    assert steps == sorted(PINNED_TRAIN)
    assert train == pytest.approx(list(PINNED_TRAIN.values()), abs=1e-4)
    evals = [r["eval_loss"] for r in logged if "eval_loss" in r]
    assert evals == pytest.approx(list(PINNED_EVAL.values()), abs=1e-4)


def test_weights_changed_from_the_initial_model(tiny_run):
    from safetensors.torch import load_file

    from smolforge.config.loading import validate
    from smolforge.tiny import ensure_tiny

    cfg = validate(yaml.safe_load((tiny_run / "config.yaml").read_text()), "config.yaml")
    before = load_file(ensure_tiny(cfg.model.tiny) / "model.safetensors")  # the build the run started from
    after = load_file(tiny_run / "model" / "model.safetensors")
    assert before.keys() == after.keys()
    changed = [k for k in before if not (before[k] == after[k]).all()]
    assert len(changed) == len(before), set(before) - set(changed)


def test_card_metadata_parses_and_numbers_equal_results(tiny_run):
    from huggingface_hub import ModelCard

    results = json.loads((tiny_run / "results.json").read_text())
    card = ModelCard.load(tiny_run / "model" / "README.md")
    data = card.data.to_dict()
    assert data["license"] == "apache-2.0"
    assert data["pipeline_tag"] == "text-generation"
    assert data["library_name"] == "transformers"
    assert "base_model" not in data  # the tiny base is not a Hub model
    assert "datasets" not in data  # the bundled data is not a Hub dataset
    assert {"smolforge", "sft", "trl"} <= set(data["tags"])
    metrics = {m["type"]: m["value"] for m in data["model-index"][0]["results"][0]["metrics"]}
    assert metrics == {"loss": float(f"{results['eval_loss']:.4g}"),  # 4 significant digits
                       "perplexity": float(f"{results['perplexity']:.4g}")}
    body = card.text
    assert f"| Validation loss | {results['eval_loss']:.4f} |" in body
    assert f"| Perplexity | {results['perplexity']:.2f} |" in body
    step = results["final_train_loss_step"]
    assert f"| Training loss, last logged (steps {step - 3}–{step}) | {results['final_train_loss']:.4f} |" in body
    assert "![Training and validation loss](loss_curve.png)" in body
    assert "N/A" not in body and "Your Name" not in body


def test_config_yaml_is_the_resolved_config(tiny_run):
    from smolforge.config.loading import validate

    data = yaml.safe_load((tiny_run / "config.yaml").read_text())
    cfg = validate(data, "config.yaml")
    assert cfg.experiment_name == "shared"
    assert cfg.model.tiny.hidden_size == 64 and cfg.training.max_steps == 24
    assert cfg.preset == "tiny"


def test_model_reloads_and_generates(tiny_run):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(tiny_run / "model")
    tok = AutoTokenizer.from_pretrained(tiny_run / "model")
    assert model.config._attn_implementation == "sdpa"  # the training-only attention does not leak
    inputs = tok.apply_chat_template([{"role": "user", "content": "What is 2 plus 2?"}], add_generation_prompt=True,
                                     enable_thinking=False, return_tensors="pt", return_dict=True)
    out = model.generate(**inputs, max_new_tokens=8, do_sample=False)
    assert out.shape[1] > inputs["input_ids"].shape[1]


def test_existing_run_folder_is_not_overwritten(tiny_run):
    proc = run_cli("run", "--preset", "tiny", "--yes", "--output-dir", str(tiny_run), *FAST_TINY,
                   cwd=tiny_run.parent, check=False)
    assert proc.returncode == 2
    assert "already holds a run" in proc.stderr and "Traceback" not in proc.stderr


def test_bad_config_exits_2_without_traceback(tmp_path):
    proc = run_cli("run", "--preset", "tiny", "--yes", "--set", "training.learning_rate=abc",
                   "--set", "training.epochs=0", cwd=tmp_path, check=False)
    assert proc.returncode == 2
    assert "2 problems in" in proc.stderr and "training.learning_rate" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "runs").exists()  # nothing half-written


def test_run_without_config_outside_a_terminal_names_the_fix(tmp_path):
    proc = run_cli("run", cwd=tmp_path, check=False)
    assert proc.returncode == 2
    assert "--preset tiny --yes" in proc.stderr


def test_confirmation_outside_a_terminal_names_yes(tmp_path):
    proc = run_cli("run", "--preset", "tiny", *FAST_TINY, cwd=tmp_path, check=False)
    assert proc.returncode == 2
    assert "Pass --yes" in proc.stderr
    assert not (tmp_path / "runs").exists()
