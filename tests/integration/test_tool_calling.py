"""Tool calling end to end on the tiny model: the call and the tool result are in the text TRL trains on, the loss
covers exactly the assistant's call and answer, the run's data report counts the tool rows, and a template that
loses turns stops `run` and `data check` naming the rows."""

from __future__ import annotations

import json

import pytest

from tests.conftest import FAST_TINY, SHORT_RUN, run_cli
from tests.datafiles import write_rows
from tests.unit.test_tool_data import OPENAI

pytestmark = pytest.mark.slow

CALL_TEXT = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'


def _tool_rows(n: int) -> list[dict]:
    """Tool conversations that differ in the city, plus plain chats (the model learns both)."""
    rows = []
    for i in range(n):
        city = f"City{i}"
        row = json.loads(json.dumps(OPENAI).replace("Paris", city))
        rows.append(row)
        rows.append({"messages": [{"role": "user", "content": f"Say hi to {city}"},
                                  {"role": "assistant", "content": f"Hi {city}!"}]})
    return rows


def _spans(labels: list[int], ids: list[int]) -> list[list[int]]:
    spans, current = [], []
    for token, label in zip(ids, labels, strict=True):
        if label != -100:
            current.append(token)
        elif current:
            spans.append(current)
            current = []
    return spans + ([current] if current else [])


def test_the_loss_covers_exactly_the_call_and_the_answer(tmp_path):
    """TRL's own tokenisation of a tool conversation, through smolforge's trainer: the decoded loss tokens."""
    from transformers import AutoModelForCausalLM

    from smolforge.config.loading import load_config
    from smolforge.data import precheck, prepare
    from smolforge.modelio import load_tokenizer, model_source
    from smolforge.runtime import resolve
    from smolforge.trainers import loss_flags, make_trainer, trainer_arguments

    path = write_rows(tmp_path / "tools.jsonl", [OPENAI])
    cfg = load_config(None, "tiny", ["data.name=" + str(path), "data.eval_ratio=0", "evaluation.tasks=[]"])
    data = prepare(cfg.data)
    precheck(cfg, data)
    tok = load_tokenizer(cfg, model_source(cfg), needs_markers=True)
    model = AutoModelForCausalLM.from_pretrained(model_source(cfg))
    rt = resolve(cfg)
    trainer = make_trainer(cfg, rt, model, tok, data, trainer_arguments(cfg, rt, tmp_path / "out", False, 1),
                           loss_flags(cfg, data.kind))
    row = trainer.train_dataset[0]
    text = tok.decode(row["input_ids"])
    assert CALL_TEXT in text and "<|im_start|>user\n21 C, sunny<|im_end|>" in text
    assert "'name': 'get_weather', 'description': 'The weather in a city.'" in text  # the tool, in the system turn
    assert [tok.decode(s) for s in _spans(row["labels"], row["input_ids"])] == [
        f"<think>\n\n</think>\n{CALL_TEXT}<|im_end|>\n",
        "<think>\n\n</think>\nIt is 21 degrees in Paris.<|im_end|>\n",
    ]


def test_a_tool_calling_run_reports_its_data_and_the_card_shows_it(tmp_path):
    path = write_rows(tmp_path / "tools.jsonl", _tool_rows(30))
    run_cli("run", "--preset", "tiny", "--yes", "--experiment-name", "tools", *FAST_TINY, *SHORT_RUN,
            "--set", f"data.name={path}", "--set", "training.max_length=1024", cwd=tmp_path)
    run = tmp_path / "runs" / "tools"
    report = json.loads((run / "data_report.json").read_text())
    assert report == json.loads((run / "results.json").read_text())["dataset"]["report"]
    assert report["rows_read"] == 60 and report["template_check"]["rows_lost"] == 0
    used = report["rows_used"]
    assert 0 < report["tool_calling_rows"] < used  # the tool conversations among the training rows
    assert report["tokens"]["with_loss"] + report["tokens"]["without_loss"] == report["tokens"]["total"]
    card = (run / "model" / "README.md").read_text()
    assert f"| **Tool calling** | {report['tool_calling_rows']} rows with tool definitions, calls or results |" in card
    assert "| **Chat-template check** | every turn, tool call and tool definition of the" in card
    saved = (run / "model" / "chat_template.jinja").read_text()
    assert "tool_calls" in saved  # the published template renders calls the way training did


def test_data_check_and_run_refuse_a_template_that_drops_system_turns(tmp_path):
    import shutil

    from smolforge.chat_templates import training_chat_template
    from smolforge.config import TinySpec
    from smolforge.tiny import ensure_tiny

    lossy = tmp_path / "lossy-model"
    shutil.copytree(ensure_tiny(TinySpec()), lossy)
    template = training_chat_template().replace('{%- set system_message = messages[0].content -%}',
                                                '{%- set system_message = "" -%}')
    (lossy / "chat_template.jinja").write_text(template)
    rows = [{"messages": [{"role": "system", "content": f"You are pirate {i}."},
                          {"role": "user", "content": f"Greet me {i}"},
                          {"role": "assistant", "content": f"Ahoy {i}!"}]} for i in range(20)]
    path = write_rows(tmp_path / "pirates.jsonl", rows)
    args = ["--preset", "tiny", "--set", f"model.name_or_path={lossy}", "--set", f"data.name={path}"]
    for command in (["data", "check"], ["run", "--yes"]):
        proc = run_cli(*command, *args, cwd=tmp_path, check=False)
        assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
        message = " ".join(proc.stderr.split())
        assert "chat template drops system text" in message and "row 0 ('Greet me 0')" in message
        assert "--set data.on_template_loss=drop" in message
    assert not (tmp_path / "runs").exists()
