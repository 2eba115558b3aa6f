"""`smolforge data check` through the real CLI: every data format, the bundled data, bad input, the JSON report."""

from __future__ import annotations

import json

import pytest

from tests.conftest import run_cli
from tests.datafiles import preference_rows, write_rows
from tests.unit.test_data import FORMATS
from tests.unit.test_tool_data import OPENAI, WEATHER

pytestmark = pytest.mark.slow

SHAREGPT_TOOLS = {"conversations": [
    {"from": "human", "value": "Weather in Paris?"},
    {"from": "function_call", "value": json.dumps({"name": "get_weather", "arguments": {"city": "Paris"}})},
    {"from": "observation", "value": "21 C, sunny"},
    {"from": "gpt", "value": "It is 21 degrees in Paris."}], "tools": json.dumps([WEATHER])}


def _one_per_format() -> list[tuple[str, list[dict], str]]:
    """(file name, rows, format) for each data.format, in a different file type each, plus the tool shapes."""
    seen, out = set(), []
    for name, rows, fmt, _ in FORMATS:
        if fmt not in seen:
            seen.add(fmt)
            out.append((name, rows, fmt))
    return out + [("prefs.jsonl", preference_rows(12), "preference"), ("openai-tools.jsonl", [OPENAI], "messages"),
                  ("sharegpt-tools.parquet", [SHAREGPT_TOOLS], "sharegpt")]


def test_every_format_is_checked_and_reported(tmp_path):
    cases = _one_per_format()
    assert {fmt for _, _, fmt in cases} == {"messages", "sharegpt", "prompt_completion", "alpaca",
                                           "question_answer", "text", "preference"}
    for name, rows, fmt in cases:
        path = write_rows(tmp_path / name, rows)
        method = ["--set", "training.method=dpo"] if fmt == "preference" else []
        proc = run_cli("data", "check", "--preset", "tiny", "--set", f"data.name={path}", "--set",
                       "data.eval_ratio=0", *method, "--json", cwd=tmp_path)
        report = json.loads(proc.stdout)
        assert report["rows_read"] == len(rows) and report["rows_used"] == len(rows), (name, report)
        assert report["template_check"]["rows_lost"] == 0, (name, report)
        assert report["tool_calling_rows"] == (1 if "tools" in name else 0), name
        assert report["tokens"]["with_loss"] > 0, name
    assert not (tmp_path / "runs").exists()


def test_the_bundled_data_prints_the_report(tmp_path):
    proc = run_cli("data", "check", "--preset", "tiny", cwd=tmp_path)
    out = proc.stdout
    assert "data: 600 rows read, 98 dropped (exact duplicate: 98); 451 for training, 51 for evaluation" in out
    assert "template check: every row's content survives the chat template" in out
    assert "reasoning: 0 rows with think traces, 451 /no_think; tool calling: 0 rows" in out
    assert "warning: every one of the 451 training rows is in /no_think mode" in " ".join(out.split())


@pytest.mark.parametrize(("args", "says"), [
    ([], "needs a config"),
    (["--preset", "tiny", "--set", "data.name=missing.jsonl"], "missing.jsonl"),
    (["--preset", "tiny", "--set", "data.tools=no-such-tools.json"], "data.tools: no-such-tools.json does not exist"),
    (["--preset", "tiny", "--set", "data.on_template_loss=sometimes"], "data.on_template_loss"),
])
def test_bad_input_is_one_paragraph(tmp_path, args, says):
    proc = run_cli("data", "check", *args, cwd=tmp_path, check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert says in " ".join(proc.stderr.split())
