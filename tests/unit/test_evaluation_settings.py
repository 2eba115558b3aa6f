"""The evaluation section: defaults, documented fields, and rejected values."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from smolforge.evaluation.settings import EvaluationSection


def test_defaults_run_the_offline_suite_without_thinking():
    s = EvaluationSection()
    assert s.tasks == ["builtin"] and s.modes == ["no_think"] and s.num_fewshot == 0
    assert s.samples == 3 and s.bootstrap_resamples == 1000 and s.limit is None and s.gen_tokens == 256


def test_every_field_is_documented():
    assert all(f.description for f in EvaluationSection.model_fields.values())


@pytest.mark.parametrize("bad", [
    {"tasks": []}, {"tasks": ["builtin", "builtin"]}, {"modes": ["maybe"]}, {"modes": []},
    {"limit": 0}, {"num_fewshot": -1}, {"samples": 2}, {"samples": 6}, {"bootstrap_resamples": 10},
    {"unknown_key": 1},
])
def test_bad_values_are_rejected(bad):
    with pytest.raises(ValidationError):
        EvaluationSection(**bad)
