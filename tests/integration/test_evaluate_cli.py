"""`smolforge evaluate RUN_DIR` through the real console script: a user's lm-eval task over a local JSONL
file, the results in the run folder and on the card, and bad input that changes nothing."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import yaml
from huggingface_hub import ModelCard

from tests.conftest import kill_when, run_cli
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


GLOB_TASK = """\
include: common.yaml
task: glob_quiz
dataset_path: json
dataset_kwargs:
  data_files:
    test: items-*.jsonl
doc_to_text: "Q: {{question}}"
"""
COMMON = """\
test_split: test
output_type: generate_until
doc_to_target: "{{answer}}"
generation_kwargs:
  until: ["<|im_end|>"]
  max_gen_toks: 6
  do_sample: false
metric_list:
  - metric: exact_match
    aggregation: mean
    higher_is_better: true
"""


def _items(folder: Path, name: str, words: list[str]) -> None:
    """Items without an `id` column: smolforge names them by position and content."""
    rows = [{"question": f"Say {w}.", "answer": w} for w in words]
    (folder / name).write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


def test_every_input_of_a_base_score_is_in_its_cache_key_and_task_paths_are_kept_absolute(run_copy, tmp_path):
    """The base's scores are cached; each input that can change them, changed alone, has the base scored again:
    the data behind a relative glob (same positions, new questions, no id column), a file the task includes, the
    task's own prompt, the item limit, the chat template. The relative paths are resolved where they are read, so
    a later `smolforge evaluate RUN_DIR` from another folder finds the task."""
    folder = tmp_path / "quiz"
    folder.mkdir()
    (folder / "task.yaml").write_text(GLOB_TASK, encoding="utf-8")
    (folder / "common.yaml").write_text(COMMON, encoding="utf-8")
    _items(folder, "items-1.jsonl", ["red", "blue", "green"])
    _items(folder, "items-2.jsonl", ["cat", "dog", "owl"])

    def evaluate(*args: str, cwd: Path = tmp_path) -> dict:
        run_cli("evaluate", str(run_copy), *args, cwd=cwd)
        return json.loads((run_copy / "results.json").read_text())["evaluation"]

    def base_misses(ev: dict) -> int:
        return ev["models"]["base"]["cache"]["misses"]

    first = evaluate("--tasks", "quiz/task.yaml")  # relative to this folder; the glob relative to the YAML's
    assert first["results"][0]["n"] == 6 and base_misses(first) > 0
    stored = yaml.safe_load((run_copy / "overrides.yaml").read_text())["evaluation"]["tasks"]
    assert stored == [str(folder / "task.yaml")]
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    again = evaluate(cwd=elsewhere)  # the stored task, from another folder; nothing changed: all from the cache
    assert base_misses(again) == 0 and again["results"][0]["base"] == first["results"][0]["base"]

    changes = {
        "data behind the glob": lambda: _items(folder, "items-2.jsonl", ["fox", "elk", "bee"]),
        "an included file": lambda: (folder / "common.yaml").write_text(COMMON.replace("max_gen_toks: 6",
                                                                                      "max_gen_toks: 5")),
        "the task's prompt": lambda: (folder / "task.yaml").write_text(GLOB_TASK.replace("Q: ", "Question: ")),
        "the chat template": lambda: (run_copy / "model" / "chat_template.jinja").write_text(
            (run_copy / "model" / "chat_template.jinja").read_text().replace("<|im_start|>user",
                                                                             "<|im_start|>user ", 1)),
    }
    for what, change in changes.items():
        change()
        assert base_misses(evaluate(cwd=elsewhere)) > 0, f"{what} changed, but the base came from the cache"
        assert base_misses(evaluate(cwd=elsewhere)) == 0, what  # and the new scores are cached in turn
    limited = evaluate("--limit", "4", cwd=elsewhere)
    assert base_misses(limited) > 0 and limited["results"][0]["n"] == 4
    items = [json.loads(x) for x in (run_copy / "evaluation" / limited["results"][0]["items_file"]).open()]
    assert [i["target"] for i in items] == ["red", "blue", "green", "fox"]  # the rewritten file, in glob order


@pytest.mark.parametrize("make,message", [
    (lambda f: (f / "items-2.jsonl").write_text(""), "items-2.jsonl (dataset_kwargs.data_files.test) has no rows"),
    (lambda f: [p.unlink() for p in f.glob("items-*.jsonl")],
     "data file `items-*.jsonl` (dataset_kwargs.data_files.test) matches no file beside the YAML file"),
])
def test_task_data_that_cannot_be_scored_is_one_paragraph(run_copy, tmp_path, make, message):
    folder = tmp_path / "quiz"
    folder.mkdir()
    (folder / "task.yaml").write_text(GLOB_TASK, encoding="utf-8")
    (folder / "common.yaml").write_text(COMMON, encoding="utf-8")
    _items(folder, "items-1.jsonl", ["red"])
    _items(folder, "items-2.jsonl", ["cat"])
    make(folder)
    before = _tree(run_copy)
    proc = run_cli("evaluate", str(run_copy), "--tasks", str(folder / "task.yaml"), cwd=tmp_path, check=False)
    assert proc.returncode == 2 and message in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr and "StopIteration" not in proc.stderr
    assert _tree(run_copy) == before


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


def test_a_killed_evaluate_leaves_no_work_folder_after_the_next_one(run_copy, tmp_path):
    kill_when(["evaluate", str(run_copy), "--tasks", "builtin", "--limit", "2"], tmp_path,
              lambda: any(run_copy.glob(".evaluation-work-*")))
    assert list(run_copy.glob(".evaluation-*")), "the kill left the work folder behind, as a crash does"
    run_cli("evaluate", str(run_copy), "--tasks", "builtin", "--limit", "2", cwd=tmp_path)
    assert not list(run_copy.glob(".evaluation*")) and (run_copy / "evaluation" / "summary.json").is_file()
