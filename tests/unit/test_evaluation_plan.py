"""The plan: cost counted before anything loads, think mode only where it can run."""

from __future__ import annotations

from types import SimpleNamespace

from smolforge.config import EvaluationSection
from smolforge.evaluation.plan import active_modes, make_plan


def task(name: str, n: int, loglikelihood: bool) -> SimpleNamespace:
    return SimpleNamespace(name=name, n_items=n, loglikelihood=loglikelihood)


def test_think_runs_only_generative_tasks_and_the_cost_counts_every_model_and_mode():
    tasks = [task("mc", 40, True), task("gen", 10, False)]
    plan = make_plan(["base", "tuned"], ["no_think", "think"], tasks, generations=12)
    assert plan.scored_items == (40 + 10) * 2 + 10 * 2
    assert plan.skipped == [{"task": "mc", "mode": "think", "reason": plan.skipped[0]["reason"]}]
    assert [s.model for s in plan.steps] == ["base"] * 3 + ["tuned"] * 3  # each model loaded once
    head = plan.headline(tasks)
    assert "2 tasks (50 items; 40 scored by log-likelihood, 10 by generation) x 2 models" in head
    assert "= 120 scored items" in head and "12 greedy generations" in head and "skipped: mc in think" in head


def test_think_is_dropped_with_a_note_when_the_template_has_no_switch():
    notes: list[str] = []
    assert active_modes(EvaluationSection(modes=["think", "no_think"]), thinking=False, notes=notes) == ["no_think"]
    assert "no reasoning switch" in notes[0]
    assert active_modes(EvaluationSection(modes=["think"]), thinking=False, notes=[]) == ["no_think"]
    assert active_modes(EvaluationSection(modes=["think"]), thinking=True, notes=[]) == ["think"]
