"""`evaluation.tasks: [held-out]`: a GRPO run's held-out prompts as an lm-eval task, scored by the accuracy reward."""

from __future__ import annotations

import pytest
import yaml

from smolforge.config import SmolforgeConfig
from smolforge.config.outputs import looks_like_task_file
from smolforge.errors import SmolforgeError
from smolforge.evaluation import heldout
from smolforge.evaluation.tasks import TaskResolver


def row(question: str, answer: str, system: str | None = None, history: bool = False) -> dict:
    turns = [{"role": "system", "content": system}] if system else []
    if history:
        turns += [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello."}]
    return {"prompt": [*turns, {"role": "user", "content": question}], "answer": answer, "level": 1}


ROWS = [row("What is the capital of France?", "Paris"), row("What is 2 + 3?", "5", system="Answer briefly."),
        row("And of Spain?", "Madrid", history=True), {"prompt": [{"role": "user", "content": "Why?"}], "answer": " "}]


def test_rows_become_items_and_what_cannot_be_asked_is_counted():
    task = heldout.build(ROWS, max_gen_tokens=24)
    assert task.items == 2
    docs = [yaml.safe_load(line) for line in task.files["held_out.jsonl"].splitlines()]
    assert docs == [{"id": "held-out-0", "system": "", "question": "What is the capital of France?", "answer": "Paris"},
                    {"id": "held-out-1", "system": "Answer briefly.", "question": "What is 2 + 3?", "answer": "5"}]
    assert task.dropped == {"earlier turns before the question: lm-eval asks one question per item": 1,
                            "no answer to check": 1}
    assert task.notes() == ["held_out: 1 held-out prompt left out (earlier turns before the question: lm-eval asks "
                            "one question per item)", "held_out: 1 held-out prompt left out (no answer to check)"]
    assert "max_gen_toks: 24" in task.files["held_out.yaml"]


def test_no_usable_prompt_is_a_clear_error_naming_the_setting_and_the_fix():
    for rows, why in (([], "the run has no held-out split"), (ROWS[2:3], "1: earlier turns")):
        with pytest.raises(SmolforgeError) as e:
            heldout.build(rows, max_gen_tokens=8)
        message = str(e.value)
        assert message.startswith("evaluation.tasks: `held-out` has no held-out prompt to ask") and why in message
        assert "data.eval_ratio above 0, or data.eval_split" in str(e.value)


def test_lm_eval_loads_the_written_task_and_scores_with_the_accuracy_reward(tmp_path):
    path = heldout.build(ROWS, max_gen_tokens=24).write(tmp_path / "held_out")
    [task] = TaskResolver(registry=lambda: pytest.fail("no registry"), held_out=path).resolve(["held-out"], None)
    assert (task.name, task.kind, task.spec, task.metric, task.n_items) == ("held_out", "held-out", "held-out",
                                                                            "accuracy", 2)
    docs = task.task.eval_docs
    assert task.task.doc_to_text(docs[0]) == "What is the capital of France?"
    assert task.task.process_results(docs[0], ["The capital of France is Paris."]) == {"accuracy": 1.0}
    assert task.task.process_results(docs[0], ["Lyon"]) == {"accuracy": 0.0}
    assert task.task.process_results(docs[1], ["<think>2 and 3</think>It is 5."]) == {"accuracy": 1.0}  # math-verify
    # the system prompt of a row is that item's system message, through the task's `description`
    def as_messages(messages, add_generation_prompt):
        return messages

    chat = task.task.fewshot_context(docs[1], 0, apply_chat_template=True, chat_template=as_messages)
    assert chat == [{"role": "system", "content": "Answer briefly."}, {"role": "user", "content": "What is 2 + 3?"}]
    assert task.task.fewshot_context(docs[0], 0, apply_chat_template=True, chat_template=as_messages) == \
        [{"role": "user", "content": "What is the capital of France?"}]


def test_held_out_is_a_name_not_a_file_and_only_for_grpo(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "held-out").write_text("not a task")
    assert not looks_like_task_file("held-out")
    with pytest.raises(SmolforgeError, match="evaluated with its run"):
        TaskResolver(registry=lambda: pytest.fail("no registry")).resolve(["held-out"], None)
    with pytest.raises(ValueError, match="`held-out` scores a GRPO run's held-out prompts"):
        SmolforgeConfig.model_validate({"evaluation": {"tasks": ["held-out"]}})
    cfg = SmolforgeConfig.model_validate({"training": {"method": "grpo"}, "evaluation": {"tasks": ["held-out"]}})
    assert cfg.evaluation.tasks == ["held-out"]


@pytest.mark.parametrize(("preset", "sets", "offered"), [
    ("tiny", ["training.method=grpo", "data.name=builtin-prompts", "evaluation.tasks=[]"], ["held-out"]),  # offered
    ("tiny-grpo", ["evaluation.tasks=[builtin,held-out]"], ["builtin", "held-out"]),  # kept as chosen
    ("tiny-grpo", ["training.method=sft", "data.name=builtin"], []),  # no longer GRPO: held-out is not offered
])
def test_the_wizard_offers_the_held_out_benchmark_to_grpo_runs_only(monkeypatch, preset, sets, offered):
    from smolforge.wizard import flow, prompts
    from smolforge.wizard.draft import Draft

    asked = {}

    def text(message, parse, default="", instruction=None):
        asked[message] = (default, instruction)
        return parse(default)

    monkeypatch.setattr(prompts, "text", text)
    monkeypatch.setattr(prompts, "select", lambda message, options, default=None, disabled=None: default)
    monkeypatch.setattr(prompts, "step", lambda *a, **k: None)
    draft = Draft.build(preset, sets=sets)
    flow.step_outputs(None, draft)
    default, instruction = asked["Benchmarks:"]
    assert default == ", ".join(offered) and draft.get("evaluation.tasks") == offered
    assert ("held-out (the run's held-out prompts" in instruction) == (draft.get("training.method") == "grpo")
