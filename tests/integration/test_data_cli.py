"""Data problems through the real CLI: one paragraph, exit code 2, before any run folder is written."""

from __future__ import annotations

import pytest

from tests.conftest import FAST_TINY, run_cli
from tests.datafiles import write_rows


def _fails_cleanly(tmp_path, *args: str) -> str:
    proc = run_cli("run", "--yes", "--experiment-name", "x", *args, cwd=tmp_path, check=False)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr and proc.stderr.startswith("error: ")
    assert not (tmp_path / "runs").exists()  # nothing half-written
    return " ".join(proc.stderr.split())


def test_hub_dataset_while_offline(tmp_path):
    err = _fails_cleanly(tmp_path, "--preset", "smollm3-sft", "--license", "apache-2.0",
                         "--set", "data.name=nobody-smolforge/no-such-dataset")
    assert "data.name: 'nobody-smolforge/no-such-dataset' is not a local file or folder" in err
    assert "the Hub is offline" in err and "--set data.name=path/to/data.jsonl" in err


@pytest.mark.parametrize(("rows", "sets", "expected"), [
    ([{"foo": 1, "bar": 2}], [], "cannot tell the format of the dataset from its columns: foo, bar"),
    ([{"text": "x"}], ["--set", "training.method=dpo"], "training.method is 'dpo' but the dataset looks like 'text'"),
    ([{"text": "x"}], ["--set", "data.loss_on=assistant"], "data.loss_on: 'assistant' applies to conversations"),
])
def test_bad_data_fails_before_training(tmp_path, rows, sets, expected):
    data = write_rows(tmp_path / "d.jsonl", rows)
    err = _fails_cleanly(tmp_path, "--preset", "tiny", *FAST_TINY, "--set", f"data.name={data}", *sets)
    assert expected in err
