"""End to end on the tiny model: base vs a real fine-tune, the bundled suite plus a user task file.

Proves the two models are scored on the same items from the same prompts, that a user's lm-eval
YAML over a local JSONL file works through its path, that an answer format no model produces is
reported rather than fatal, and that a second evaluation takes the base's results from the cache.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
import yaml
from rich.console import Console

from smolforge.builtin_data import generate
from smolforge.config import EvaluationSection, TinySpec
from smolforge.evaluation import model_pass
from smolforge.evaluation.contamination import row_text

pytestmark = pytest.mark.slow

USER_TASK = """\
task: user_arithmetic
dataset_path: json
dataset_kwargs:
  data_files:
    test: arithmetic.jsonl
test_split: test
output_type: generate_until
doc_to_text: "{{question}}"
doc_to_target: "{{answer}}"
generation_kwargs:
  until: ["<|im_end|>"]
  max_gen_toks: 8
  do_sample: false
filter_list:
  - name: strict
    filter:
      - function: regex
        regex_pattern: "#### (\\\\d+)"
      - function: take_first
metric_list:
  - metric: exact_match
    aggregation: mean
    higher_is_better: true
"""


def user_task(folder: Path) -> Path:
    folder.mkdir()
    rows = [{"question": f"What is {a} plus {a}?", "answer": str(2 * a)} for a in range(2, 8)]
    (folder / "arithmetic.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    (folder / "task.yaml").write_text(USER_TASK, encoding="utf-8")
    return folder / "task.yaml"


def test_same_items_user_task_format_problem_and_base_cache(tiny_run, tmp_path, monkeypatch):
    from smolforge.evaluation.evaluate_models import evaluate_models
    from smolforge.tiny import ensure_tiny

    cfg = yaml.safe_load((tiny_run / "config.yaml").read_text(encoding="utf-8"))
    base = ensure_tiny(TinySpec(**cfg["model"]["tiny"]))  # the exact base the run fine-tuned
    tuned = tiny_run / "model"
    rows = generate()
    settings = EvaluationSection(tasks=["builtin", str(user_task(tmp_path / "mytask"))], limit=8,
                                 modes=["no_think", "think"], max_gen_tokens=12, retention_prompts=2,
                                 bootstrap_resamples=200)
    calls: list[str] = []
    real = model_pass.run_task

    def counting(lm, tok, et, mode, s):
        calls.append(f"{et.name}/{mode}")
        return real(lm, tok, et, mode, s)

    monkeypatch.setattr(model_pass, "run_task", counting)
    monkeypatch.chdir(tmp_path)  # the user task's relative data file must resolve beside its YAML

    models = {"base": str(base), "tuned": str(tuned), "copy": str(tuned)}  # "copy": a stand-in quantized variant

    def evaluate(out: Path) -> dict:
        console = Console(file=io.StringIO(), width=200)
        result = evaluate_models(models, str(tuned), settings, out,
                                 train_texts=[row_text(r) for r in rows[:540]],
                                 eval_rows=rows[540:], console=console)
        return result | {"_console": console.file.getvalue()}

    first = evaluate(tmp_path / "one" / "evaluation")
    text = first.pop("_console")
    assert "Evaluation plan: 3 tasks (22 items" in text and "x 2 models (base, tuned) x 2 modes" in text
    assert "note: limit 8 is more than the 6 items of user_arithmetic: all 6 were used" in text

    # --- same items, same prompts, for both models, in every comparison
    rows_by = {(r["task"], r["mode"]): r for r in first["results"]}
    assert set(rows_by) == {("smolforge_chat_facts_mc", "no_think"), ("smolforge_chat_facts_gen", "no_think"),
                            ("smolforge_chat_facts_gen", "think"), ("user_arithmetic", "no_think"),
                            ("user_arithmetic", "think")}
    assert {s["task"] for s in first["skipped"]} == {"smolforge_chat_facts_mc"}  # MC has no think mode
    out = tmp_path / "one" / "evaluation"
    for row in first["results"]:
        assert row["status"] == "ok" and row["same_prompts"] is True and row["n"] == (6 if "user" in row["task"] else 8)
        lines = [json.loads(x) for x in (out / row["items_file"]).read_text(encoding="utf-8").splitlines()]
        assert len(lines) == row["n"]
        assert all(x["base"]["prompt_hash"] == x["tuned"]["prompt_hash"] for x in lines)
        assert 0.0 <= row["base"] <= 1.0 and row["delta"] == pytest.approx(row["tuned"] - row["base"])
        assert row["ci_low"] <= row["delta"] <= row["ci_high"] and 0.0 <= row["p_value"] <= 1.0
    mc_ids = [json.loads(x)["id"] for x in (out / "items/smolforge_chat_facts_mc.no_think.jsonl").open()]
    shipped = [json.loads(x)["id"] for x in (Path(__file__).parents[2] / "src/smolforge/resources/eval_tasks"
                                               / "smolforge_chat_facts_mc.jsonl").open()][:8]
    assert mc_ids == shipped  # the first `limit` items of the task, in its order

    # --- the user task's answer format (#### N) is never produced: reported, not fatal
    assert "never produced an answer in the format" in rows_by[("user_arithmetic", "no_think")]["format_problem"]

    # --- the rest of the summary, and the folder on disk equal to what was returned
    assert first["harness"] == {"name": "lm-evaluation-harness", "package": "lm_eval", "version": "0.4.13"}
    assert set(first["retention"]["modes"]) == {"think", "no_think"} and first["retention"]["n_prompts"] == 2
    assert first["contamination"]["tasks"]["smolforge_chat_facts_gen"]["overlapping"] > 0
    assert first["contamination"]["tasks"]["user_arithmetic"]["overlapping"] == 0
    assert len(first["samples"]) == 3 and {"prompt", "reference", "base", "tuned"} <= set(first["samples"][0])
    assert json.loads((out / "summary.json").read_text(encoding="utf-8")) == first
    assert sorted(p.name for p in out.parent.iterdir()) == ["evaluation"]
    assert first["models"]["base"]["cache"] == {"hits": 0, "misses": 7, "enabled": True}
    assert first["variants"] == [] and any("variants not evaluated (copy)" in n for n in first["notes"])
    per_model = len(calls) // 2
    assert per_model == 5

    # --- second evaluation, variants on: the base is not re-evaluated, its numbers are identical
    calls.clear()
    settings.variants = True
    second = evaluate(tmp_path / "two" / "evaluation")
    second.pop("_console")
    assert len(calls) == 2 * per_model  # the fine-tune and the variant ran through the harness, the base did not
    assert second["models"]["base"]["cache"] == {"hits": 7, "misses": 0, "enabled": True}
    assert [r["base"] for r in second["results"]] == [r["base"] for r in first["results"]]
    assert [r["tuned"] for r in second["results"]] == [r["tuned"] for r in first["results"]]
    assert second["samples"] == first["samples"] and second["retention"] == first["retention"]
    # the variant holds the fine-tune's very weights: every comparison with it must be exactly zero
    assert len(second["variants"]) == 5
    assert all(r["reference"] == "tuned" and r["candidate"] == "copy" for r in second["variants"])
    assert all(r["delta"] == 0 and r["flipped"] == {"to_correct": 0, "to_wrong": 0} for r in second["variants"])


def test_registry_task_offline_without_cached_data_is_a_clear_error():
    """lm-eval's real loading path for a Hub dataset, offline; the index is limited to the ARC folder
    (the full index takes seconds and adds nothing to this check)."""
    import lm_eval.tasks
    from lm_eval.tasks import TaskManager

    from smolforge.errors import SmolforgeError
    from smolforge.evaluation.tasks import TaskResolver

    arc = Path(lm_eval.tasks.__file__).parent / "arc"
    resolver = TaskResolver(registry=lambda: TaskManager(include_path=str(arc), include_defaults=False))
    with pytest.raises(SmolforgeError) as e:
        resolver.resolve(["arc_easy"], limit=None)
    assert "`arc_easy`" in str(e.value) and "not in the Hugging Face cache" in str(e.value)
