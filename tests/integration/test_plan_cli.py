"""`smolforge plan` through the real CLI: predictions checked against the tiny runs they predict."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from tests.conftest import FAST_TINY, run_cli

SHORT = ["--set", "data.max_samples=120", "--set", "training.epochs=1", "--set", "training.eval_steps=5",
         "--set", "tracking.backend=none"]
ACCURACY = {  # the configurations: full, LoRA, padded, padding-free (the default)
    "full-padding-free": [*FAST_TINY],
    "lora-padding-free": [*FAST_TINY, "--set", "training.finetune=lora", "--set", "training.lora.r=8"],
    "full-padded": [*FAST_TINY, "--set", "training.batching=padded"],
    "full-padded-wide": ["--set", "evaluation.tasks=[]", "--set", "training.batching=padded",
                         "--set", "training.batch_size=16"],  # the preset's tiny: activations ~100s of MB
}


# `make test` keeps LoRA (the formula alone against a fresh run); the calibrated default (`plan --calibrate` runs
# three measuring processes, ~45 s with its run) and the padded layouts (~20 s each) run in `make test-extra`. The
# padded formula's parts are also checked in tests/unit/test_plan.py.
EXTRA = {"full-padding-free", "full-padded", "full-padded-wide"}


@pytest.mark.slow
@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.accuracy) if n in EXTRA else n for n in ACCURACY])
def test_prediction_is_close_to_what_the_run_measures(name, tmp_path):
    """Peak RSS within 25% of the measured one from the formula alone, for each configuration; the steps and
    processed tokens counted from the data's own lengths. For the first, the calibrated plan (its rate measured in
    3 processes) is the one `run` shows and records beside what it measured (calibrating the others would only
    repeat that, at ~25 s each)."""
    options = ["--preset", "tiny", *ACCURACY[name], *SHORT]
    calibrated = name == next(iter(ACCURACY))
    # Fresh processes, as a user runs them: a command forked from the tests' warm process starts with that
    # process's libraries resident, which a run that does not load them would not have (its peak RSS is the claim).
    # `run` computes and records the same plan before it trains; `smolforge plan` itself is run (and checked to
    # predict what `run` shows) for the calibrated configuration.
    if calibrated:
        plan = json.loads(run_cli("plan", *options, "--calibrate", "--json", cwd=tmp_path, fresh=True).stdout)
        assert plan["calibrated"] and plan["formula"]["calibrated"] is False
        assert "in 3 processes" in plan["rate"]["how"], plan["rate"]
    else:  # (also builds the tiny model into the session's cache, as a user's earlier command would have)
        plan = json.loads(run_cli("plan", *options, "--json", cwd=tmp_path).stdout)
    run_cli("run", *options, "--yes", "--experiment-name", name, cwd=tmp_path, fresh=True)
    results = json.loads((tmp_path / "runs" / name / "results.json").read_text())
    check = results["plan"]
    assert check["predicted"]["calibrated"] is calibrated, "run shows the plan, calibrated when it was"
    assert check["predicted"]["tokens_per_step"] == plan["tokens_per_step"]
    measured = check["measured"]
    assert measured["peak_memory_mib"] == results["peak_memory"]["cpu_rss_mib"]
    assert abs(check.get("formula_error", check["error"])["peak_memory_mib"]) <= 0.25, check
    assert abs(check["error"]["peak_memory_mib"]) <= 0.25, check
    # Speed is not asserted here: on a shared 2-core VM one process runs the same steps up to ~30 % slower than
    # another for its whole life, and other jobs slow a run many times over, so a bound would test the machine's
    # load, not the estimator. The run records its error next to the prediction (checked here); its size is
    # measured by benchmarks/plan_accuracy.py on a quiet machine (README: plan).
    assert check["predicted"]["tokens_per_second"] > 0 and isinstance(check["error"]["tokens_per_second"], float)
    assert check["predicted"]["steps"] == measured["steps"] == results["global_steps"]
    assert check["predicted"]["processed_tokens"] == pytest.approx(results["tokens"]["processed"], rel=0.02)
    card = (tmp_path / "runs" / name / "model" / "README.md").read_text()
    assert "Predicted before training by `smolforge plan`" + (" (calibrated with a few real steps on this machine)"
                                                             if calibrated else ":") in card


def test_unknown_gpu_lists_the_known_ones(tmp_path):
    proc = run_cli("plan", "--preset", "smollm3-sft", "--gpu", "h1000", cwd=tmp_path, check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "unknown GPU 'h1000'" in proc.stderr and "h100, h100-pcie, a100-80gb" in proc.stderr


@pytest.mark.slow
def test_a_hub_model_offline_needs_its_config_json_cached(tmp_path):
    """Offline, a model id is planned from its cached config.json alone; without one, plan says so."""
    from transformers import SmolLM3Config

    proc = run_cli("plan", "--preset", "smollm3-sft", "--gpu", "h100", cwd=tmp_path, check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "HuggingFaceTB/SmolLM3-3B has no config.json in the Hugging Face cache" in proc.stderr

    # SmolLM3-3B's config.json in the session's Hugging Face cache (transformers' SmolLM3Config defaults are the
    # 3B's shape), removed again at the end: the warm CLI reads the cache folder it was started with
    hub = Path(os.environ["HF_HOME"]) / "hub" / "models--HuggingFaceTB--SmolLM3-3B"
    assert not hub.exists()
    commit = "a" * 40
    SmolLM3Config(max_position_embeddings=65536, bos_token_id=None, eos_token_id=128012).save_pretrained(
        hub / "snapshots" / commit)
    (hub / "refs").mkdir()
    (hub / "refs" / "main").write_text(commit)
    try:
        _plan_from_the_cached_config(tmp_path)
    finally:
        shutil.rmtree(hub)


def _plan_from_the_cached_config(tmp_path: Path) -> None:
    env: dict[str, str] = {}
    proc = run_cli("plan", "--preset", "smollm3-sft", "--gpu", "h100", cwd=tmp_path, env=env)
    out = " ".join(proc.stdout.replace("│", " ").split())  # the table's cells, unwrapped
    assert "HuggingFaceTB/SmolLM3-3B: 3.08B parameters, 3.08B trained (full fine-tune)" in out
    assert "NVIDIA H100 SXM (80 GB); bf16 weights" in out and "activation checkpointing on" in out
    assert "HuggingFaceTB/smoltalk is not in the local cache and the Hub is offline" in out
    assert "4 rows x 4096 tokens (an upper bound)" in out
    assert "fits: needs" in out and "assumed MFU 40%" in out
    plan = json.loads(run_cli("plan", "--preset", "smollm3-sft", "--gpu", "l4", "--json", cwd=tmp_path,
                              env=env).stdout)
    assert plan["fits"] is False and plan["suggestions"], plan
    assert plan["parameters"]["total"] == 3_075_098_624

    # the README's example is this output: every line it shows (a cell cut with "..." is a prefix) is printed
    proc = run_cli("plan", "--preset", "smollm3-sft", "--gpu", "h100", cwd=tmp_path, env={**env, "COLUMNS": "250"})
    printed = [" ".join(line.replace("│", " ").split()) for line in proc.stdout.splitlines()]
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    block = readme.split("smolforge plan --preset smollm3-sft --gpu h100\n", 1)[1].split("```", 1)[0]
    shown = [" ".join(line.replace("│", " ").split()) for line in block.strip().splitlines()]
    assert len(shown) >= 10
    for line in shown:
        assert any(p.startswith(line.split("...")[0].rstrip(" ,")) for p in printed), (line, printed)
    qlora = run_cli("plan", "--preset", "smollm3-qlora", "--gpu", "l4", cwd=tmp_path, env={**env, "COLUMNS": "250"})
    assert "fits: needs 9.3 GiB incl. the CUDA context" in qlora.stdout  # the README's QLoRA sentence
    assert "4-bit dequantization" in qlora.stdout
