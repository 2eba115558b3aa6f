"""The evaluation section: defaults, documented fields, and rejected values."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from smolforge.config import EvaluationSection


def test_defaults_run_no_benchmark_and_the_tiny_preset_runs_the_offline_suite():
    from smolforge.config.loading import load_config

    s = EvaluationSection()
    assert s.tasks == [] and s.modes == ["no_think"] and s.num_fewshot == 0
    assert load_config(preset="tiny").evaluation.tasks == ["builtin"]
    assert s.samples == 3 and s.bootstrap_resamples == 1000 and s.limit is None and s.gen_tokens == 256


def test_an_empty_task_name_alone_means_no_evaluation_and_task_files_are_stored_absolute(tmp_path, monkeypatch):
    assert EvaluationSection(tasks=[""]).tasks == []  # `--tasks ""`, as the flag's help says
    monkeypatch.chdir(tmp_path)
    (tmp_path / "tasks").mkdir()
    s = EvaluationSection(tasks=["builtin", "tasks/quiz.yaml", "arc_easy"])
    assert s.tasks == ["builtin", str(tmp_path / "tasks" / "quiz.yaml"), "arc_easy"]
    assert EvaluationSection(tasks=s.tasks).tasks == s.tasks  # read again from the run folder: unchanged


def test_every_field_is_documented():
    assert all(f.description for f in EvaluationSection.model_fields.values())


@pytest.mark.parametrize("bad", [
    {"tasks": ["builtin", "builtin"]}, {"tasks": [" "]}, {"modes": ["maybe"]}, {"modes": []},
    {"limit": 0}, {"num_fewshot": -1}, {"samples": 2}, {"samples": 6}, {"bootstrap_resamples": 10},
    {"unknown_key": 1},
])
def test_bad_values_are_rejected(bad):
    with pytest.raises(ValidationError):
        EvaluationSection(**bad)
