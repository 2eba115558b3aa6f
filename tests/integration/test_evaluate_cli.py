"""`smolforge evaluate RUN_DIR` through the real console script: a user's lm-eval task over a local JSONL
file, the results in the run folder and on the card, and bad input that changes nothing."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import yaml
from huggingface_hub import ModelCard

from tests.conftest import run_cli
from tests.integration.test_evaluation_e2e import user_task

pytestmark = pytest.mark.slow


def _tree(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_a_user_task_file_is_evaluated_on_base_and_fine_tune_and_reaches_the_card(run_copy, tmp_path):
    task = user_task(tmp_path / "mytask")
    proc = run_cli("evaluate", str(run_copy), "--tasks", str(task), "--limit", "4", cwd=tmp_path)
    assert "Evaluation plan: 1 task" in proc.stdout and "Model card updated" in proc.stdout
    results = json.loads((run_copy / "results.json").read_text())
    (row,) = results["evaluation"]["results"]
    assert (row["task"], row["n"], row["reference"], row["candidate"]) == ("user_arithmetic", 4, "base", "tuned")
    items = [json.loads(x) for x in (run_copy / "evaluation" / row["items_file"]).read_text().splitlines()]
    assert len(items) == 4 and all(i["base"]["prompt_hash"] == i["tuned"]["prompt_hash"] for i in items)
    card = ModelCard.load(run_copy / "model" / "README.md")
    assert "## Evaluation\n" in card.text and "| `user_arithmetic` | exact_match |" in card.text
    index = {r["task"]["name"]: r for r in card.data.to_dict()["model-index"][0]["results"]}
    assert index["user_arithmetic"]["metrics"][0]["value"] == float(f"{row['tuned']:.4g}")
    assert index["user_arithmetic"]["source"]["name"] == "lm-evaluation-harness 0.4.13"
    # the tasks asked for are remembered for later card and publish runs; config.yaml stays as trained
    assert yaml.safe_load((run_copy / "overrides.yaml").read_text())["evaluation"]["tasks"] == [str(task)]
    assert yaml.safe_load((run_copy / "config.yaml").read_text())["evaluation"]["tasks"] != [str(task)]


@pytest.mark.parametrize("args,message", [
    (["--tasks", "arc_easyy"], "arc_easyy"),
    (["--tasks", "builtin", "--limit", "0"], "--limit: evaluation.limit: Input should be greater than 0"),
    (["--tasks", "builtin", "--tasks", "builtin"], "each name may appear only once"),
])
def test_bad_evaluation_input_is_one_paragraph_and_changes_nothing(run_copy, tmp_path, args, message):
    before = _tree(run_copy)
    proc = run_cli("evaluate", str(run_copy), *args, cwd=tmp_path, check=False)
    assert proc.returncode == 2 and message in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr
    assert _tree(run_copy) == before


def test_a_malformed_task_file_names_the_key(run_copy, tmp_path):
    task = user_task(tmp_path / "bad")
    task.write_text(task.read_text().replace("doc_to_text:", "doc_to_txt:"))
    before = _tree(run_copy)
    proc = run_cli("evaluate", str(run_copy), "--tasks", str(task), cwd=tmp_path, check=False)
    assert proc.returncode == 2 and "doc_to_txt" in proc.stderr and "Traceback" not in proc.stderr
    assert _tree(run_copy) == before


def test_the_shared_run_compared_base_and_fine_tune_and_its_card_shows_it(tiny_run):
    results = json.loads((tiny_run / "results.json").read_text())
    ev = results["evaluation"]
    assert {r["task"] for r in ev["results"]} == {"smolforge_chat_facts_mc", "smolforge_chat_facts_gen"}
    assert all(r["n"] == 6 for r in ev["results"])
    assert results["baseline_eval_loss"] == results["eval_history"][0]["eval_loss"]  # step 0: before training
    card = (tiny_run / "model" / "README.md").read_text()
    assert card.index("## Evaluation") < card.index("## Training details")  # before the details
    assert f"| {results['baseline_eval_loss']:.4f} (chance: ln V = {results['chance_loss']:.4f}) |" in card
