"""The bundled evaluation suite is exactly what its generator produces, and is well formed."""

from __future__ import annotations

import json

import yaml

from smolforge.evaluation.suite import GEN_TASK, MC_TASK, SUITE_DIR, generate, suite_yamls


def test_shipped_files_equal_the_generator_output():
    files = generate()
    shipped = {p.name for p in SUITE_DIR.iterdir() if p.is_file()}
    assert shipped == set(files)
    for name, text in files.items():
        assert (SUITE_DIR / name).read_text(encoding="utf-8") == text, f"{name} differs: regenerate the suite"


def test_generator_is_deterministic():
    assert generate() == generate()


def test_yamls_reference_their_data_and_items_are_consistent():
    for path in suite_yamls():
        cfg = yaml.safe_load(path.read_text(encoding="utf-8"))
        assert cfg["task"] in (MC_TASK, GEN_TASK)
        ids = []
        for split, rel in cfg["dataset_kwargs"]["data_files"].items():
            rows = [json.loads(line) for line in (path.parent / rel).read_text(encoding="utf-8").splitlines()]
            assert rows, split
            ids += [r["id"] for r in rows]
            if cfg["output_type"] == "multiple_choice":
                assert all(len(r["choices"]) == 4 and 0 <= r["label"] < 4 for r in rows)
                assert all(len(set(r["choices"])) == 4 for r in rows)
        assert len(ids) == len(set(ids)), "few-shot items must not repeat test items"
