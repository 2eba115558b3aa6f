"""Comparison rows, reasoning-check classification and the all-or-nothing output folder, without a model."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from smolforge.evaluation import thinking
from smolforge.evaluation.compare import compare, item_rows
from smolforge.evaluation.harness import ItemResult, TaskRun
from smolforge.evaluation.output import write_folder


def fake_task(n: int, filter: str = "strict-match") -> SimpleNamespace:
    return SimpleNamespace(name="quiz", metric="acc", n_items=n, filter=filter,
                           task=SimpleNamespace(higher_is_better=lambda: {"acc": True}))


def run(scores: list[float | None], answers: list[str] | None = None, ids: list[str] | None = None) -> TaskRun:
    ids = ids or [f"q{i}" for i in range(len(scores))]
    answers = answers or ["x"] * len(scores)
    items = [ItemResult(id=i, target="t", answer=a, score=s, prompt_hash=f"h-{i}", no_answer=a == "")
             for i, s, a in zip(ids, scores, answers, strict=True)]
    known = [s for s in scores if s is not None]
    return TaskRun(task="quiz", mode="no_think", metric="acc", shots=0, score=sum(known) / len(scores),
                   metrics={"acc": sum(known) / len(scores)}, items=items)


def test_row_has_scores_delta_interval_test_and_flipped_items():
    base, tuned = run([1, 0, 0, 1, 0]), run([1, 1, 1, 0, 0])
    row = compare(fake_task(5), base, tuned, "base", "tuned", resamples=500, seed=0)
    assert (row["base"], row["tuned"], row["n"], row["status"]) == (0.4, 0.6, 5, "ok")
    assert row["delta"] == pytest.approx(0.2) and row["ci_low"] <= 0.2 <= row["ci_high"]
    assert row["test"] == "mcnemar_exact" and row["p_value"] == pytest.approx(1.0)  # b=1, c=2
    assert row["flipped"] == {"to_correct": 2, "to_wrong": 1}
    assert row["flipped_items"] == {"to_correct": ["q1", "q2"], "to_wrong": ["q3"]}
    assert row["same_prompts"] is True
    lines = item_rows(base, tuned, "base", "tuned")
    assert [line["flip"] for line in lines] == [None, "to_correct", "to_correct", "to_wrong", None]


def test_different_items_are_refused():
    with pytest.raises(RuntimeError, match="different items"):
        compare(fake_task(2), run([1, 0]), run([1, 0], ids=["q0", "other"]), "base", "tuned", 100, 0)


def test_a_format_nobody_produced_is_reported_not_raised():
    base, tuned = run([0, 0], answers=["", ""]), run([0, 0], answers=["", ""])
    row = compare(fake_task(2), base, tuned, "base", "tuned", 100, 0)
    assert row["status"] == "ok" and row["no_answer_share"] == {"base": 1.0, "tuned": 1.0}
    assert "never produced an answer in the format" in row["format_problem"]
    # a task that extracts nothing (no filter) has no format to miss: the models wrote nothing at all
    row = compare(fake_task(2, filter="none"), base, tuned, "base", "tuned", 100, 0)
    assert row["format_problem"] == "base and tuned generated only empty answers on quiz"


def test_failed_runs_and_unscored_items_give_rows_without_statistics():
    failed = run([1, 0])
    failed.error = "RuntimeError: out of memory"
    row = compare(fake_task(2), run([1, 0]), failed, "base", "tuned", 100, 0)
    assert row["status"] == "error" and row["error"] == {"tuned": "RuntimeError: out of memory"}
    row = compare(fake_task(2), run([None, None]), run([None, None]), "base", "tuned", 100, 0)
    assert row["ci_low"] is None and "no per-item score" in row["note"]


@pytest.mark.parametrize(("text", "think_ok", "no_think_ok"), [
    ("<think>\nThe user asks for Paris.\n</think>\nParis.", True, False),
    ("<think>\n\n</think>\nParis.", False, False),          # empty reasoning is not thinking
    ("<think>\nhmm\n</think>\n", False, False),             # no answer after the block
    ("<think>a</think>b</think>c", False, False),           # malformed: two closing tags
    ("Paris.", False, True),
    ("", False, True),
])
def test_reasoning_answers_are_classified(text, think_ok, no_think_ok):
    assert thinking.well_formed_think(text) is think_ok
    assert thinking.clean_no_think(text) is no_think_ok


def test_the_fine_tune_is_flagged_when_it_loses_think():
    prompts = [f"p{i}" for i in range(8)]
    ok = {"passed": [True] * 8, "outputs": [""] * 8}
    good = {"think": ok, "no_think": ok}
    lost = {"think": {"passed": [False] * 8, "outputs": [""] * 8}, "no_think": good["no_think"]}
    out = thinking.report(prompts, good, lost)
    assert out["lost_think"] is True and out["leaks_reasoning"] is False
    assert out["modes"]["think"]["base"] == 1.0 and out["modes"]["think"]["tuned"] == 0.0
    assert out["modes"]["think"]["p_value"] == pytest.approx(2 / 256)
    assert thinking.report(prompts, good, good)["lost_think"] is False


def test_output_folder_is_replaced_whole_or_left_alone(tmp_path: Path):
    target = tmp_path / "evaluation"
    write_folder(target, {"summary.json": "{}\n", "items/a.jsonl": "1\n"})
    assert (target / "items" / "a.jsonl").read_text() == "1\n"

    class Boom(dict):
        def items(self):
            yield "summary.json", "new\n"
            raise OSError("disk full")

    with pytest.raises(OSError):
        write_folder(target, Boom())
    assert (target / "summary.json").read_text() == "{}\n"  # the previous folder is intact
    assert sorted(p.name for p in tmp_path.iterdir()) == ["evaluation"]  # no temporary leftovers
    write_folder(target, {"summary.json": "v2\n"})
    assert sorted(p.name for p in target.iterdir()) == ["summary.json"]


def test_unclosed_reasoning_is_reported_separately():
    prompts = ["p0", "p1"]
    cut = {"think": {"passed": [False, False], "outputs": ["<think>\nstill going", "Paris."]},
           "no_think": {"passed": [True, True], "outputs": ["a", "b"]}}
    out = thinking.report(prompts, cut, cut)
    assert out["modes"]["think"]["unclosed_share"] == {"base": 0.5, "tuned": 0.5}


@pytest.mark.parametrize("terminal", [True, False])
def test_progress_draws_a_bar_on_terminals_and_plain_lines_elsewhere(terminal):
    import io

    from rich.console import Console

    from smolforge.evaluation.progress import EvalProgress

    buf = io.StringIO()
    console = Console(file=buf, force_terminal=terminal, width=100)
    with EvalProgress(console, total_items=10) as progress:
        progress.step("base · no_think · quiz")
        progress.advance(2.5)
        progress.advance(7.5)
        progress.finished("base · no_think · quiz", "acc 0.500")
        progress.note("a note")
    text = buf.getvalue()
    assert progress.done == 10 and "a note" in text
    if terminal:
        assert "10/10" in text and "items" in text
    else:
        assert "  base · no_think · quiz: acc 0.500 (" in text and "\x1b[" not in text


def test_sample_rows_accept_messages_and_prompt_completion():
    from smolforge.evaluation.samples import pick, split_row

    chat = {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
                         {"role": "assistant", "content": "Hello"}]}
    assert split_row(chat) == (chat["messages"][:2], "Hello")
    assert split_row({"prompt": "Q?", "completion": "A."}) == ([{"role": "user", "content": "Q?"}], "A.")
    assert split_row({"text": "plain"}) is None
    assert len(pick([{"text": "x"}, chat, chat, chat], 2)) == 2


def test_an_empty_think_block_is_counted_apart_and_reaches_the_report():
    """`<think>\n\n</think>\nParis.` is how a /no_think answer looks: not reasoning, and the report says how often."""
    assert thinking.empty_think("<think>\n\n</think>\nParis.") and not thinking.empty_think("<think>a</think>b")
    assert not thinking.empty_think("Paris.")
    outputs = {"think": {"passed": [False, True], "outputs": ["<think>\n</think>\nParis.", "<think>x</think>y"]},
               "no_think": {"passed": [True, True], "outputs": ["a", "b"]}}
    report = thinking.report(["p1", "p2"], outputs, outputs)
    assert report["modes"]["think"]["empty_share"] == {"base": 0.5, "tuned": 0.5}


def test_items_whose_ids_name_a_family_are_scored_by_family():
    """`count-*` items right by luck and `reverse-*` never: the task's mean hides it, the families show it."""
    ids = ["count-river", "count-window", "reverse-river", "reverse-window"]
    base = run([1, 1, 0, 0], ids=ids)
    tuned = run([1, 0, 0, 1], ids=ids)
    row = compare(fake_task(4), base, tuned, "base", "tuned", 100, 0)
    assert row["families"] == [{"family": "count", "n": 2, "base": 1.0, "tuned": 0.5},
                               {"family": "reverse", "n": 2, "base": 0.0, "tuned": 0.5}]
    assert compare(fake_task(2), run([1, 0]), run([0, 1]), "base", "tuned", 100, 0)["families"] is None  # q0, q1
