"""data.py: sources, format detection, normalisation to TRL formats, drops, sampling, splits, errors.

Every fixture is written here, in the file type under test, and read through the real
`datasets` loaders; nothing touches the Hub.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter

import pytest

from smolforge.config import DataSection
from smolforge.data import apply_length_filters, drop_report, prepare, reasoning_kwargs, token_length
from smolforge.errors import DataError
from tests.datafiles import chats, write_rows

USER, ASSISTANT = "What is the capital of Peru?", "The capital of Peru is Lima."
CHAT = [{"role": "user", "content": USER}, {"role": "assistant", "content": ASSISTANT}]
PROMPT = [{"role": "user", "content": USER}]
COMPLETION = [{"role": "assistant", "content": ASSISTANT}]


def _section(**data) -> DataSection:
    """A data section for tests of other rules: their fixtures repeat rows on purpose, so dedup is off."""
    return DataSection(**{"dedup": False, **data})


def _prep(path, method: str = "sft", **data):
    return prepare(_section(name=str(path), eval_ratio=0.0, **data), method)


def _plain(value):
    """A prepared row without the fields a row without tools leaves empty (`tool_calls`, `tools`) and without
    smolforge's row index: what these tests, which have no tool calls, compare."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()
                if not (k in ("tool_calls", "tools") and v is None) and k != "_smolforge_row"}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _rows(ds) -> list[dict]:
    return [_plain(dict(r)) for r in ds]


def _no_think(row: dict) -> dict:
    return {**row, "chat_template_kwargs": {"enable_thinking": False}}


# ---------------------------------------------------------------- every format, every file type

FORMATS = [
    # (file name, raw rows, detected format, first normalised row)
    ("messages.jsonl", [{"messages": CHAT}], "messages", {"messages": CHAT}),
    ("messages.parquet", [{"messages": CHAT, "source": "x"}], "messages", {"messages": CHAT}),
    ("messages.csv", [{"messages": CHAT}], "messages", {"messages": CHAT}),  # turns as a JSON string
    ("conversations.json", [{"conversations": CHAT}], "messages", {"messages": CHAT}),
    ("sharegpt.jsonl", [{"conversations": [{"from": "human", "value": USER}, {"from": "gpt", "value": ASSISTANT}]}],
     "sharegpt", {"messages": CHAT}),
    ("sharegpt.parquet", [{"conversations": [{"from": "system", "value": "Be brief."}, {"from": "human", "value": USER},
                                             {"from": "gpt", "value": ASSISTANT}]}],
     "sharegpt", {"messages": [{"role": "system", "content": "Be brief."}, *CHAT]}),
    ("pc.csv", [{"prompt": USER, "completion": ASSISTANT}], "prompt_completion",
     {"prompt": PROMPT, "completion": COMPLETION}),
    ("pc.jsonl", [{"prompt": PROMPT, "completion": COMPLETION}], "prompt_completion",
     {"prompt": PROMPT, "completion": COMPLETION}),
    ("alpaca.json", [{"instruction": "Name the capital.", "input": "Peru", "output": "Lima."}], "alpaca",
     {"prompt": [{"role": "user", "content": "Name the capital.\n\nPeru"}],
      "completion": [{"role": "assistant", "content": "Lima."}]}),
    ("alpaca-no-input.csv", [{"instruction": USER, "input": "", "output": ASSISTANT}], "alpaca",
     {"prompt": PROMPT, "completion": COMPLETION}),
    ("qa.parquet", [{"question": USER, "answer": ASSISTANT}], "question_answer",
     {"prompt": PROMPT, "completion": COMPLETION}),
    ("qa-synonyms.jsonl", [{"query": USER, "response": ASSISTANT, "id": 3}], "question_answer",
     {"prompt": PROMPT, "completion": COMPLETION}),
    ("text.csv", [{"text": "Lima is the capital of Peru."}], "text", {"text": "Lima is the capital of Peru."}),
    ("text.parquet", [{"text": "Lima is the capital of Peru.", "meta": 1}], "text",
     {"text": "Lima is the capital of Peru."}),
]


@pytest.mark.parametrize(("name", "rows", "fmt", "expected"), FORMATS, ids=[f[0] for f in FORMATS])
def test_each_format_is_detected_and_normalised(tmp_path, name, rows, fmt, expected):
    data = _prep(write_rows(tmp_path / name, rows))
    assert data.detected.format == fmt
    got = _rows(data.train)
    assert got == [expected if fmt == "text" else _no_think(expected)]
    assert data.stats["rows_read"] == 1 and data.stats["rows_dropped"] == 0
    assert data.stats["format"] == fmt and data.stats["source"] == "local"


PREFERENCE = [
    ("pref-text.jsonl", [{"prompt": USER, "chosen": ASSISTANT, "rejected": "Paris."}]),
    ("pref-trl.parquet", [{"prompt": PROMPT, "chosen": COMPLETION,
                           "rejected": [{"role": "assistant", "content": "Paris."}]}]),
    # UltraFeedback style: a prompt string and whole chats; the shared prompt is split off the chats
    ("pref-chats.jsonl", [{"prompt": USER, "chosen": CHAT,
                           "rejected": [CHAT[0], {"role": "assistant", "content": "Paris."}]}]),
    ("pref-chats-no-prompt.json", [{"chosen": CHAT,
                                    "rejected": [CHAT[0], {"role": "assistant", "content": "Paris."}]}]),
    ("pref-text.csv", [{"prompt": USER, "chosen": ASSISTANT, "rejected": "Paris."}]),
]


@pytest.mark.parametrize(("name", "rows"), PREFERENCE, ids=[p[0] for p in PREFERENCE])
def test_preference_pairs_as_text_messages_or_whole_chats(tmp_path, name, rows):
    data = _prep(write_rows(tmp_path / name, rows), method="dpo")
    assert data.detected.format == "preference" and data.kind == "preference"
    assert _rows(data.train) == [_no_think({"prompt": PROMPT, "chosen": COMPLETION,
                                            "rejected": [{"role": "assistant", "content": "Paris."}]})]


def test_a_folder_of_files_is_one_dataset_and_its_validation_file_is_the_eval_split(tmp_path):
    rows = [{"messages": c["messages"]} for c in chats(30)]
    write_rows(tmp_path / "d" / "train-000.jsonl", rows[:10])
    write_rows(tmp_path / "d" / "train-001.jsonl", rows[10:25])
    write_rows(tmp_path / "d" / "validation.jsonl", rows[25:])
    data = prepare(_section(name=str(tmp_path / "d"), eval_ratio=0.5))  # the ratio is not used
    assert (len(data.train), len(data.eval)) == (25, 5)
    assert data.stats["eval_source"] == "the dataset's `validation` split"
    assert data.stats["eval_split_name"] == "validation" and data.stats["eval_rows_read"] == 5
    assert [_plain(r["messages"]) for r in data.eval] == [r["messages"] for r in rows[25:]]


def test_folder_files_named_like_the_configured_splits(tmp_path):
    rows = [{"prompt": USER, "chosen": ASSISTANT, "rejected": "Paris."}]
    write_rows(tmp_path / "d" / "train_prefs.jsonl", rows * 6)
    write_rows(tmp_path / "d" / "test_prefs.jsonl", rows * 2)
    data = prepare(_section(name=str(tmp_path / "d"), split="train_prefs", eval_split="test_prefs"), "dpo")
    assert (len(data.train), len(data.eval), data.stats["eval_split_name"]) == (6, 2, "test_prefs")
    # without those names the files go by prefix: train_prefs -> train, test_prefs -> test
    data = prepare(_section(name=str(tmp_path / "d")), "dpo")
    assert (len(data.train), len(data.eval), data.stats["eval_split_name"]) == (6, 2, "test")


# ---------------------------------------------------------------- explicit format and field mapping

def test_explicit_format_with_a_field_mapping(tmp_path):
    path = write_rows(tmp_path / "qa.jsonl", [{"q": USER, "a": ASSISTANT, "question": "decoy", "answer": "decoy"}])
    data = _prep(path, format="question_answer", fields={"question": "q", "answer": "a"})
    assert data.detected.fields == {"question": "q", "answer": "a"}
    assert _rows(data.train) == [_no_think({"prompt": PROMPT, "completion": COMPLETION})]


def test_a_field_mapping_alone_picks_the_format_that_has_those_fields(tmp_path):
    path = write_rows(tmp_path / "x.parquet", [{"ask": USER, "reply": ASSISTANT}])
    data = _prep(path, fields={"prompt": "ask", "completion": "reply"})
    assert data.detected.format == "prompt_completion"
    assert _rows(data.train) == [_no_think({"prompt": PROMPT, "completion": COMPLETION})]


def test_explicit_format_overrides_detection(tmp_path):
    # `prompt`/`completion` columns would be detected as prompt/completion; the user says text
    path = write_rows(tmp_path / "t.jsonl", [{"prompt": USER, "completion": ASSISTANT, "body": "Some text."}])
    data = _prep(path, format="text", fields={"text": "body"})
    assert _rows(data.train) == [{"text": "Some text."}]


def test_sharegpt_mapping_to_a_custom_column(tmp_path):
    path = write_rows(tmp_path / "s.jsonl", [{"dialogue": [{"from": "human", "value": USER},
                                                           {"from": "gpt", "value": ASSISTANT}]}])
    data = _prep(path, format="sharegpt", fields={"messages": "dialogue"})
    assert _rows(data.train) == [_no_think({"messages": CHAT})]


# ---------------------------------------------------------------- error paths (one paragraph each)

def _one_paragraph(err: Exception) -> str:
    text = str(err)
    assert "\n" not in text and "Traceback" not in text
    return text


def test_unknown_columns_list_the_columns_and_the_accepted_formats(tmp_path):
    path = write_rows(tmp_path / "odd.jsonl", [{"foo": "a", "bar": "b"}])
    with pytest.raises(DataError) as e:
        _prep(path)
    msg = _one_paragraph(e.value)
    assert "columns: foo, bar" in msg
    for fmt in ("messages", "sharegpt", "prompt_completion", "alpaca", "question_answer", "text", "preference"):
        assert fmt in msg
    assert "--set data.format=" in msg and "data.fields" in msg


def test_unknown_columns_fail_before_any_model_is_loaded(tmp_path):
    """The format check runs in `prepare`, which imports neither torch models nor TRL."""
    path = write_rows(tmp_path / "odd.jsonl", [{"foo": "a"}])
    code = (f"from smolforge.config import DataSection\nfrom smolforge.data import prepare\nimport sys\n"
            f"try:\n    prepare(DataSection(name={str(path)!r}))\nexcept Exception as e:\n    print(type(e).__name__)\n"
            "print(sorted(m for m in ('trl', 'transformers', 'peft') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split("\n")
    assert out[:2] == ["DataError", "[]"]


def test_explicit_format_missing_its_column(tmp_path):
    path = write_rows(tmp_path / "a.jsonl", [{"instruction": "x", "answer": "y"}])
    with pytest.raises(DataError) as e:
        _prep(path, format="alpaca")
    msg = _one_paragraph(e.value)
    assert "data.format is 'alpaca'" in msg and "output -> 'output'" in msg
    assert "Columns found: instruction, answer" in msg and "--set data.fields.instruction=<column>" in msg


def test_a_field_that_the_format_does_not_have(tmp_path):
    path = write_rows(tmp_path / "a.jsonl", [{"question": "x", "answer": "y"}])
    with pytest.raises(DataError) as e:
        _prep(path, format="question_answer", fields={"prompt": "question"})
    msg = _one_paragraph(e.value)
    assert "data.fields: 'prompt' is not a field of format 'question_answer'" in msg
    assert "its fields: question, answer" in msg


def test_a_field_mapped_to_a_missing_column(tmp_path):
    path = write_rows(tmp_path / "a.jsonl", [{"question": "x", "answer": "y"}])
    with pytest.raises(DataError) as e:
        _prep(path, fields={"answer": "reply"})
    msg = _one_paragraph(e.value)
    assert "data.fields.answer -> 'reply': the dataset has no such column" in msg
    assert "Columns found: question, answer" in msg


def test_text_preference_pairs_without_a_prompt(tmp_path):
    path = write_rows(tmp_path / "p.jsonl", [{"chosen": "good", "rejected": "bad"}])
    with pytest.raises(DataError) as e:
        _prep(path, method="dpo")
    assert "need a prompt column" in _one_paragraph(e.value) and "data.fields.prompt" in str(e.value)


def test_method_and_data_kind_must_match(tmp_path):
    sft = write_rows(tmp_path / "sft.jsonl", [{"messages": CHAT}])
    pref = write_rows(tmp_path / "pref.jsonl", [{"prompt": USER, "chosen": "a", "rejected": "b"}])
    with pytest.raises(DataError, match="training.method is 'dpo'.*chosen.*rejected"):
        _prep(sft, method="dpo")
    with pytest.raises(DataError, match="training.method=dpo"):
        _prep(pref, method="sft")


@pytest.mark.parametrize(("rows", "loss_on", "fix"), [
    ([{"text": "x y"}], "assistant", "data.loss_on=completion"),
    ([{"messages": CHAT}], "completion", "data.loss_on=assistant"),
])
def test_loss_on_that_does_not_fit_the_data_fails_in_prepare(tmp_path, rows, loss_on, fix):
    with pytest.raises(DataError) as e:
        _prep(write_rows(tmp_path / "d.jsonl", rows), loss_on=loss_on)
    assert f"data.loss_on: '{loss_on}'" in _one_paragraph(e.value) and fix in str(e.value)


@pytest.mark.parametrize(("make", "expected"), [
    (lambda p: p / "missing.jsonl", "does not exist"),
    (lambda p: (p / "notes.txt").write_text("hi") and p / "notes.txt", "unsupported extension '.txt'"),
    (lambda p: (p / "empty").mkdir() or p / "empty", "holds no .jsonl, .json, .csv, .parquet files"),
    (lambda p: write_rows(p / "m" / "a.jsonl", [{"text": "x"}]) and write_rows(p / "m" / "b.csv", [{"text": "y"}])
     and p / "m", "mixes file types"),
    (lambda p: (p / "bad.jsonl").write_text('{"text": "ok"}\n{not json\n') and p / "bad.jsonl",
     "bad.jsonl line 2 is not valid JSON (Expecting property name enclosed in double quotes, column 2): fix that line"),
    (lambda p: (p / "fake.parquet").write_text("not parquet") and p / "fake.parquet", "cannot read"),
])
def test_local_source_errors(tmp_path, make, expected):
    with pytest.raises(DataError) as e:
        _prep(make(tmp_path))
    msg = _one_paragraph(e.value)
    assert msg.startswith("data.name:") and expected in msg


def _write_bytes(path, data: bytes):
    path.write_bytes(data)
    return path


@pytest.mark.parametrize(("name", "content", "why"), [
    ("zero.jsonl", b"", "zero.jsonl is empty (0 rows). Add rows"),
    ("blank.jsonl", b"\n  \n\n", "blank.jsonl is empty (0 rows): it holds only blank lines. Add rows"),
    ("array.json", b"[\n]\n", "array.json is empty (0 rows): the JSON array has no elements"),
    ("zero.csv", b"", "zero.csv is empty (0 rows). Add data rows below the header"),
    ("header.csv", b"prompt,completion\r\n",
     "header.csv is empty (0 rows): the CSV has a header (columns prompt, completion) but no data rows. "
     "Add data rows below the header, or point data.name at a file that has them."),
])
def test_an_empty_file_says_it_is_empty(tmp_path, name, content, why):
    with pytest.raises(DataError) as e:
        _prep(_write_bytes(tmp_path / name, content))
    assert _one_paragraph(e.value).startswith(f"data.name: {tmp_path / why}")


def test_an_empty_parquet_file_says_it_is_empty(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"text": pa.array([], pa.string())}), tmp_path / "none.parquet")
    with pytest.raises(DataError) as e:
        _prep(tmp_path / "none.parquet")
    assert _one_paragraph(e.value) == (f"data.name: {tmp_path / 'none.parquet'} is empty (0 rows): the Parquet file "
                                       "has no rows. Write rows into it, or point data.name at a file that has them.")


def test_an_empty_split_in_a_folder_names_its_file(tmp_path):
    write_rows(tmp_path / "d" / "train.jsonl", [{"messages": CHAT}] * 3)
    _write_bytes(tmp_path / "d" / "test.jsonl", b"\n")
    with pytest.raises(DataError) as e:
        prepare(_section(name=str(tmp_path / "d")))
    assert _one_paragraph(e.value).startswith(f"data.name: {tmp_path / 'd' / 'test.jsonl'} is empty (0 rows)")
    # an empty shard next to files with rows is no problem
    _write_bytes(tmp_path / "d" / "test.jsonl", b"")
    write_rows(tmp_path / "d" / "test-2.jsonl", [{"messages": CHAT}] * 2)
    assert len(prepare(_section(name=str(tmp_path / "d"))).eval) == 2


@pytest.mark.parametrize("name", ["latin.jsonl", "latin.csv"])
def test_a_file_that_is_not_utf8_names_the_byte_and_its_line(tmp_path, name):
    rows = [f"row {i} caf\u00e9" for i in range(30)]  # UTF-8 text, then one line saved as Latin-1
    lines = ([json.dumps({"text": r}, ensure_ascii=False) for r in rows] if name.endswith(".jsonl")
             else ["text", *rows])
    bad_line = 17
    data = [line.encode("latin-1" if n == bad_line else "utf-8") for n, line in enumerate(lines, 1)]
    path = _write_bytes(tmp_path / name, b"\n".join(data) + b"\n")
    with pytest.raises(DataError) as e:
        _prep(path)
    assert _one_paragraph(e.value).startswith(
        f"data.name: {path} is not UTF-8 (byte 0xe9 at line {bad_line}): re-save it as UTF-8")


def test_the_utf8_scan_reads_in_chunks_and_keeps_characters_split_by_a_chunk(tmp_path, monkeypatch):
    from smolforge.data import sources

    monkeypatch.setattr(sources, "CHUNK", 7)  # every multi-byte character below straddles some boundary
    text = "".join(f'{{"text": "\u00e9\u20ac\U0001f600 {i}"}}\n' for i in range(50)).encode()
    path = _write_bytes(tmp_path / "d.jsonl", text + b'{"text": "\xff"}\n')
    assert sources._not_utf8(_write_bytes(tmp_path / "ok.jsonl", text)) is None
    assert "(byte 0xff at line 51)" in sources._not_utf8(path)
    truncated = _write_bytes(tmp_path / "cut.jsonl", text + "\u20ac".encode()[:2])  # cut inside the last character
    assert "(byte 0xe2 at line 51)" in sources._not_utf8(truncated)


def test_a_broken_jsonl_line_is_named_by_its_number(tmp_path):
    path = write_rows(tmp_path / "d.jsonl", [{"text": f"row {i}"} for i in range(60)])
    lines = path.read_text().splitlines()
    lines[40] = '{"text": "row 40"'  # line 41 lost its closing brace
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError) as e:
        _prep(path)
    assert _one_paragraph(e.value) == (
        f"data.name: {path} line 41 is not valid JSON (Expecting ',' delimiter, column 18): fix that line "
        "(JSON Lines: one complete JSON object per line).")


def test_first_line_of_an_empty_message_is_the_error_type():
    from smolforge.errors import first_line

    assert first_line(ValueError("")) == "ValueError"
    assert first_line(OSError("\n  \n")) == "OSError"
    assert first_line(RuntimeError("\n  boom \nmore")) == "boom"
    assert first_line("") == "(no message)"


def test_split_errors(tmp_path):
    path = write_rows(tmp_path / "d.jsonl", [{"messages": CHAT}] * 3)
    with pytest.raises(DataError, match=r"data.split: the dataset has no split 'dev'; it has train\. "):
        prepare(_section(name=str(path), split="dev"))
    with pytest.raises(DataError, match=r"data.eval_split: the dataset has no split 'test'"):
        prepare(_section(name=str(path), eval_split="test"))
    with pytest.raises(DataError, match=r"data.eval_split: 'train' is also data.split"):
        prepare(_section(name=str(path), eval_split="train"))


def test_hub_dataset_offline_is_one_paragraph_naming_data_name_and_the_fix(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(DataError) as e:
        prepare(_section(name="nobody-smolforge/no-such-dataset"))
    msg = _one_paragraph(e.value)
    assert msg.startswith("data.name: 'nobody-smolforge/no-such-dataset' is not a local file or folder")
    assert "the Hub is offline" in msg and "unset HF_HUB_OFFLINE" in msg
    assert "--set data.name=path/to/data.jsonl" in msg


def test_a_missing_local_data_file_is_not_sent_to_the_hub(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DataError, match=r"data.name: data/train.jsonl does not exist"):
        prepare(_section(name="data/train.jsonl"))


# ---------------------------------------------------------------- drops (counted, never str(row))

def test_invalid_rows_are_dropped_counted_and_never_stringified(tmp_path):
    rows = [
        {"messages": CHAT},
        {"messages": []},                                                   # empty or not a list of turns
        {"messages": None},                                                 # empty or not a list of turns
        {"messages": [{"role": "user", "content": USER}]},                  # no non-empty assistant turn
        {"messages": [{"role": "user", "content": USER}, {"role": "assistant", "content": "  "}]},  # same
        {"messages": [{"role": "assistant", "content": ASSISTANT}]},        # no non-empty user turn
        {"messages": [{"role": "wizard", "content": USER}, *CHAT]},         # unknown role
        {"messages": [{"role": "user", "content": None}, CHAT[1]]},         # a turn has no text content
    ]
    data = _prep(write_rows(tmp_path / "d.jsonl", rows))
    assert _rows(data.train) == [_no_think({"messages": CHAT})]
    assert data.stats["rows_read"] == 8 and data.stats["rows_dropped"] == 7
    assert data.stats["drop_reasons"] == {
        "empty or not a list of turns": 2, "no non-empty assistant turn": 2, "no non-empty user turn": 1,
        "unknown role": 1, "a turn has no text content": 1,
    }


def test_drops_in_prompt_completion_text_and_preference_rows(tmp_path):
    pc = _prep(write_rows(tmp_path / "pc.jsonl", [{"prompt": USER, "completion": ASSISTANT},
                                                  {"prompt": "", "completion": ASSISTANT},
                                                  {"prompt": USER, "completion": None}]))
    assert pc.stats["drop_reasons"] == {"empty prompt": 1, "empty completion": 1}
    text = _prep(write_rows(tmp_path / "t.jsonl", [{"text": "a"}, {"text": "   "}, {"text": None}]))
    assert (len(text.train), text.stats["drop_reasons"]) == (1, {"empty text": 2})
    pref = _prep(write_rows(tmp_path / "p.jsonl", [{"prompt": USER, "chosen": "a", "rejected": "b"},
                                                   {"prompt": USER, "chosen": "", "rejected": "b"},
                                                   {"prompt": " ", "chosen": "a", "rejected": "b"}]), method="dpo")
    assert pref.stats["drop_reasons"] == {"empty chosen or rejected": 1, "empty prompt": 1}


def test_every_row_dropped_is_an_error_with_the_reasons(tmp_path):
    with pytest.raises(DataError) as e:
        _prep(write_rows(tmp_path / "d.jsonl", [{"messages": [{"role": "user", "content": "hi"}]}] * 4))
    msg = _one_paragraph(e.value)
    assert "every one of the 4 rows" in msg and "no non-empty assistant turn: 4" in msg
    assert "The rows were read as format 'messages' with fields messages -> 'messages': check data.format" in msg


HUMAN_BOT = [{"role": "sys", "content": "Be brief."}, {"role": "human", "content": USER},
             {"role": "bot", "content": ASSISTANT}]


def test_unknown_roles_name_the_roles_found_the_accepted_ones_and_the_fix(tmp_path):
    rows = [{"messages": HUMAN_BOT}] * 6 + [{"messages": HUMAN_BOT[1:]}] * 4
    with pytest.raises(DataError) as e:
        _prep(write_rows(tmp_path / "d.jsonl", rows))
    assert _one_paragraph(e.value) == (
        f"data: every one of the 10 rows of {tmp_path / 'd.jsonl'} was dropped (unknown role: 10). Roles the chat "
        "template does not know: human (10 rows), bot (10 rows), sys (6 rows); accepted: system, user, assistant, "
        "tool. Map each one with data.roles, e.g. --set data.roles.human=user --set data.roles.bot=assistant "
        "--set data.roles.sys=system.")


def test_data_roles_maps_the_roles_of_messages_and_preference_turns(tmp_path):
    roles = {"human": "user", "bot": "assistant", "sys": "system"}
    data = _prep(write_rows(tmp_path / "d.jsonl", [{"messages": HUMAN_BOT}]), roles=roles)
    assert _rows(data.train) == [_no_think({"messages": [{"role": "system", "content": "Be brief."}, *CHAT]})]
    pairs = [{"prompt": [HUMAN_BOT[1]], "chosen": [HUMAN_BOT[2]], "rejected": [{"role": "Bot", "content": "Paris."}]}]
    data = _prep(write_rows(tmp_path / "p.jsonl", pairs), method="dpo", roles=roles)  # matched case-insensitively
    assert _rows(data.train) == [_no_think({"prompt": PROMPT, "chosen": COMPLETION,
                                            "rejected": [{"role": "assistant", "content": "Paris."}]})]


def test_sharegpt_roles_under_role_content_keys_suggest_and_accept_format_sharegpt(tmp_path):
    path = write_rows(tmp_path / "d.jsonl", [{"messages": [{"role": "human", "content": USER},
                                                           {"role": "gpt", "content": ASSISTANT}]}] * 3)
    with pytest.raises(DataError) as e:
        _prep(path)
    assert ("--set data.roles.human=user --set data.roles.gpt=assistant, or read the turns as ShareGPT (human/gpt) "
            "with --set data.format=sharegpt.") in _one_paragraph(e.value)
    assert _rows(_prep(path, format="sharegpt").train) == [_no_think({"messages": CHAT})] * 3


def test_a_config_role_must_be_one_the_chat_template_knows():
    from pydantic import ValidationError

    assert _section(roles={"human": "user"}).roles == {"human": "user"}
    with pytest.raises(ValidationError, match="'system', 'user', 'assistant' or 'tool'"):
        _section(roles={"human": "person"})


# ---------------------------------------------------------------- drop report

def test_mixed_formats_drop_report_counts_by_reason_and_warns(tmp_path, caplog):
    """80 chats and 120 prompt/completion rows in one file: read as messages, 60% are dropped."""
    from smolforge.data import drop_report

    rows = [{"messages": CHAT}] * 80 + [{"prompt": USER, "completion": ASSISTANT}] * 100 + \
        [{"messages": [CHAT[0]]}] * 20
    with caplog.at_level("INFO", logger="smolforge.data"):
        data = _prep(write_rows(tmp_path / "mixed.jsonl", rows))
    assert (data.stats["rows_read"], data.stats["rows_dropped"], len(data.train)) == (200, 120, 80)
    lines = drop_report(data.stats)
    assert lines == [
        "dropped 120 of 200 training rows (60.0%): empty or not a list of turns: 100, no non-empty assistant turn: 20",
        "warning: 60.0% of the training rows were dropped (more than 5%): check data.format and data.fields; the "
        "rows were read as format 'messages' with fields messages -> 'messages'.",
    ]
    assert [r.getMessage() for r in caplog.records if r.name == "smolforge.data"] == \
        [lines[0], lines[1].removeprefix("warning: ")]
    assert [r.levelname for r in caplog.records if r.name == "smolforge.data"] == ["INFO", "WARNING"]


def test_drop_report_is_quiet_without_drops_and_warns_only_above_five_percent(tmp_path):
    from smolforge.data import drop_report

    assert drop_report(_prep(write_rows(tmp_path / "ok.jsonl", [{"messages": CHAT}] * 5)).stats) == []
    few = _prep(write_rows(tmp_path / "few.jsonl", [{"messages": CHAT}] * 95 + [{"messages": [CHAT[0]]}] * 5))
    assert drop_report(few.stats) == ["dropped 5 of 100 training rows (5.0%): no non-empty assistant turn: 5"]


def test_drop_report_covers_the_eval_split_and_unknown_roles(tmp_path):
    from smolforge.data import drop_report

    write_rows(tmp_path / "d" / "train.jsonl", [{"messages": CHAT}] * 10)
    write_rows(tmp_path / "d" / "test.jsonl", [{"messages": CHAT}] * 3 + [{"messages": HUMAN_BOT[1:]}])
    data = prepare(_section(name=str(tmp_path / "d")))
    assert data.stats["eval_unknown_roles"] == {"human": 1, "bot": 1}
    assert drop_report(data.stats) == [
        "dropped 1 of 4 evaluation rows (25.0%): unknown role: 1",
        "Roles the chat template does not know: human (1 row), bot (1 row); accepted: system, user, assistant, "
        "tool. Map each one with data.roles, e.g. --set data.roles.human=user --set data.roles.bot=assistant.",
        "warning: 25.0% of the evaluation rows were dropped (more than 5%): check data.format and data.fields; the "
        "rows were read as format 'messages' with fields messages -> 'messages'.",
    ]


def test_drop_counts_stay_exact_across_arrow_batches(tmp_path):
    """Normalisation runs as Dataset.map in 1000-row batches: a first batch of only dropped rows must not
    fix the schema, and every reason must be counted exactly."""
    bad = {"messages": [{"role": "user", "content": "no answer"}]}
    rows = [bad] * 1200 + [{"messages": CHAT} if i % 3 else {"messages": []} for i in range(1800)]
    data = _prep(write_rows(tmp_path / "big.parquet", rows))
    assert data.stats["rows_read"] == 3000
    assert data.stats["drop_reasons"] == {"no non-empty assistant turn": 1200, "empty or not a list of turns": 600}
    assert len(data.train) == 1200 and data.stats["train_size"] == 1200
    assert all(_plain(r["messages"]) == CHAT for r in data.train)


# ---------------------------------------------------------------- options

def test_max_samples_is_seeded(tmp_path):
    path = write_rows(tmp_path / "d.jsonl", [{"messages": c["messages"]} for c in chats(200)])

    def sample(seed):
        data = prepare(_section(name=str(path), max_samples=50, seed=seed, eval_ratio=0.0))
        assert len(data.train) == 50 and data.stats["max_samples"] == 50 and data.stats["rows_read"] == 200
        return [json.dumps(_plain(r["messages"])) for r in data.train]

    assert sample(1) == sample(1)
    assert sample(1) != sample(2)
    all_rows = {json.dumps(c["messages"]) for c in chats(200)}
    assert set(sample(3)) <= all_rows
    # a max_samples above the row count samples nothing, and the card must not claim a sample
    assert prepare(_section(name=str(path), max_samples=500)).stats["max_samples"] is None


def test_eval_split_by_ratio_is_seeded_and_disjoint(tmp_path):
    path = write_rows(tmp_path / "d.jsonl", [{"messages": c["messages"]} for c in chats(100)])
    a = prepare(_section(name=str(path), eval_ratio=0.2, seed=7))
    b = prepare(_section(name=str(path), eval_ratio=0.2, seed=7))
    c = prepare(_section(name=str(path), eval_ratio=0.2, seed=8))
    key = lambda ds: [json.dumps(_plain(r["messages"])) for r in ds]  # noqa: E731
    assert (len(a.train), len(a.eval)) == (80, 20)
    assert key(a.eval) == key(b.eval) and key(a.eval) != key(c.eval)
    # together they are exactly the rows read (as a multiset: the bundled chats repeat some questions)
    assert Counter(key(a.train)) + Counter(key(a.eval)) == Counter(json.dumps(c["messages"]) for c in chats(100))
    assert a.stats["eval_source"] == "20% of `train` held out with seed 7"
    assert (a.stats["train_size"], a.stats["eval_size"]) == (80, 20)


def test_dataset_eval_split_is_sampled_with_max_samples(tmp_path):
    rows = [{"messages": c["messages"]} for c in chats(300)]
    write_rows(tmp_path / "d" / "train.jsonl", rows[:200])
    write_rows(tmp_path / "d" / "test.jsonl", rows[200:])
    data = prepare(_section(name=str(tmp_path / "d"), max_samples=40, eval_ratio=0.1))
    assert (len(data.train), len(data.eval)) == (40, 4)
    assert data.stats["eval_rows_read"] == 100


def test_system_prompt_is_added_unless_the_row_has_one(tmp_path):
    own = [{"role": "system", "content": "Own."}, *CHAT]
    path = write_rows(tmp_path / "d.jsonl", [{"messages": CHAT}, {"messages": own}])
    data = _prep(path, system_prompt="Answer in one sentence.")
    system = {"role": "system", "content": "Answer in one sentence."}
    assert [_plain(r["messages"]) for r in data.train] == [[system, *CHAT], own]
    pc = _prep(write_rows(tmp_path / "pc.jsonl", [{"prompt": USER, "completion": ASSISTANT}]), system_prompt="S.")
    assert _plain(pc.train[0]["prompt"]) == [{"role": "system", "content": "S."}, *PROMPT]
    assert data.stats["system_prompt"] == "Answer in one sentence."


def test_reasoning_mode_per_row():
    think = {"messages": [CHAT[0], {"role": "assistant", "content": "<think>Peru... Lima.</think>Lima."}]}
    plain = {"messages": CHAT}
    assert reasoning_kwargs(think, "auto") == {"enable_thinking": True}
    assert reasoning_kwargs(plain, "auto") == {"enable_thinking": False}
    assert reasoning_kwargs(plain, "think") == {"enable_thinking": True}
    assert reasoning_kwargs(think, "no_think") == {"enable_thinking": False}
    assert reasoning_kwargs({"prompt": PROMPT, "chosen": think["messages"][1:]}, "auto") == {"enable_thinking": True}


def test_reasoning_setting_reaches_every_row(tmp_path):
    path = write_rows(tmp_path / "d.jsonl", [{"messages": CHAT}] * 2)
    assert [r["chat_template_kwargs"] for r in _prep(path, reasoning="think").train] == [{"enable_thinking": True}] * 2


# ---------------------------------------------------------------- token lengths (tiny tokenizer)

@pytest.fixture(scope="module")
def tokenizer():
    from smolforge.tiny import build_tokenizer

    return build_tokenizer(512)


def test_token_length_filters_drop_count_and_record_stats(tmp_path, tokenizer):
    rows = [{"messages": c["messages"]} for c in chats(60)]
    path = write_rows(tmp_path / "d.jsonl", rows)
    data = prepare(_section(name=str(path), eval_ratio=0.0))
    lengths = [token_length(r, tokenizer, "conversational") for r in data.train]
    lo, hi = sorted(lengths)[10], sorted(lengths)[-10]
    expected_kept = sorted(n for n in lengths if lo <= n <= hi)

    cfg = _section(name=str(path), eval_ratio=0.0, min_tokens=lo, max_tokens=hi)
    data = prepare(cfg)
    apply_length_filters(data, tokenizer, cfg, max_length=expected_kept[len(expected_kept) // 2])
    assert len(data.train) == len(expected_kept) == data.stats["train_size"]
    assert data.stats["rows_dropped"] == 60 - len(expected_kept)
    assert data.stats["drop_reasons"] == {"outside data.min_tokens/max_tokens": 60 - len(expected_kept)}
    s = data.stats["train_token_lengths"]
    assert (s["min"], s["max"], s["total"]) == (expected_kept[0], expected_kept[-1], sum(expected_kept))
    assert s["p50"] == expected_kept[int(0.5 * (len(expected_kept) - 1) + 0.5)]  # nearest rank, halves up
    assert data.stats["train_truncated_rows"] == sum(n > expected_kept[len(expected_kept) // 2] for n in expected_kept)
    # the length is the tokenised chat-template rendering of the row TRL trains on
    row = data.train[0]
    assert token_length(row, tokenizer, "conversational") == len(
        tokenizer(tokenizer.apply_chat_template(row["messages"], tokenize=False, **row["chat_template_kwargs"]),
                  add_special_tokens=False)["input_ids"])


def test_filters_that_leave_nothing_are_an_error(tmp_path, tokenizer):
    path = write_rows(tmp_path / "d.jsonl", [{"messages": CHAT}] * 3)
    cfg = _section(name=str(path), eval_ratio=0.0, max_tokens=2)
    data = prepare(cfg)
    with pytest.raises(DataError, match=r"no training rows are left after data.min_tokens \(0\) / data.max_tokens"):
        apply_length_filters(data, tokenizer, cfg, max_length=512)


def test_preference_length_is_the_longer_pair(tokenizer):
    row = {"prompt": PROMPT, "chosen": COMPLETION, "rejected": [{"role": "assistant", "content": ASSISTANT * 5}],
           "chat_template_kwargs": {"enable_thinking": False}}
    full = tokenizer.apply_chat_template(PROMPT + row["rejected"], tokenize=True, return_dict=True,
                                         enable_thinking=False)["input_ids"]
    assert token_length(row, tokenizer, "preference") == len(full)


# ---------------------------------------------------------------- training.max_length vs the prompts

def _prompt_tokens(tokenizer, messages: list[dict]) -> int:
    """Tokens before the first assistant token, from the rendered text (the template marks no boundary inside)."""
    first = next(i for i, m in enumerate(messages) if m["role"] == "assistant")
    text = tokenizer.apply_chat_template(messages[:first], tokenize=False, enable_thinking=False)
    return len(tokenizer(text + "<|im_start|>assistant\n", add_special_tokens=False)["input_ids"])


def _full_tokens(tokenizer, messages: list[dict]) -> int:
    return len(tokenizer.apply_chat_template(messages, tokenize=True, return_dict=True,
                                             enable_thinking=False)["input_ids"])


def test_a_max_length_below_every_prompt_is_an_error_naming_a_value_that_works(tmp_path, tokenizer):
    path = write_rows(tmp_path / "d.jsonl", [{"messages": c["messages"]} for c in chats(50)])
    cfg = _section(name=str(path), eval_ratio=0.0)
    data = prepare(cfg)
    fulls = sorted(_full_tokens(tokenizer, r["messages"]) for r in data.train)
    shortest_prompt = min(_prompt_tokens(tokenizer, r["messages"]) for r in data.train)
    p90 = fulls[round(0.9 * 49)]
    works = 1 << (p90 - 1).bit_length()
    assert shortest_prompt > 16 and works >= p90 > works // 2
    with pytest.raises(DataError) as e:
        apply_length_filters(data, tokenizer, cfg, max_length=16)
    assert _one_paragraph(e.value) == (
        "training.max_length: 16 tokens cannot hold the prompt of any training row (everything before its first "
        "trained token, with the chat template), so TRL would cut every row before its first trained token: the "
        f"shortest prompt is {shortest_prompt} tokens and the shortest example {fulls[0]} tokens; 90% of the examples "
        f"are at most {p90}. Set --set training.max_length={works} (the smallest power of two that fits 90% of them), "
        "or shorten the prompts.")
    data = prepare(cfg)
    apply_length_filters(data, tokenizer, cfg, max_length=works)  # the suggested value keeps every row here
    assert data.stats["train_size"] == 50 and data.stats["rows_dropped"] == 0


def test_rows_whose_prompt_fills_max_length_are_dropped_and_counted(tmp_path, tokenizer):
    from smolforge.data import drop_report

    long_q = [{"role": "user", "content": " ".join([USER] * 6)}, CHAT[1]]
    path = write_rows(tmp_path / "d.jsonl", [{"messages": CHAT}] * 20 + [{"messages": long_q}] * 10)
    short_prompt, long_prompt = _prompt_tokens(tokenizer, CHAT), _prompt_tokens(tokenizer, long_q)
    max_length = short_prompt + 1  # the short rows keep one trained token
    assert long_prompt >= max_length and _full_tokens(tokenizer, CHAT) > max_length
    cfg = _section(name=str(path), eval_ratio=0.0)
    data = prepare(cfg)
    apply_length_filters(data, tokenizer, cfg, max_length=max_length)
    assert [_plain(r["messages"]) for r in data.train] == [CHAT] * 20
    assert data.stats["drop_reasons"] == {"no supervised token within training.max_length": 10}
    assert (data.stats["rows_dropped"], data.stats["train_size"], data.stats["train_truncated_rows"]) == (10, 20, 20)
    assert drop_report(data.stats) == [
        "dropped 10 of 30 training rows (33.3%) by token length: no supervised token within training.max_length: 10",
        "warning: 33.3% of the training rows were dropped by token length (more than 5%): raise "
        "training.max_length to keep them.",
    ]
    apply_length_filters(data, tokenizer, cfg, max_length=max_length)  # the trainer's second call changes nothing
    assert (data.stats["rows_dropped"], len(data.train)) == (10, 20)


def test_loss_on_all_trains_every_token_so_a_short_max_length_drops_nothing(tmp_path, tokenizer):
    path = write_rows(tmp_path / "d.jsonl", [{"prompt": USER, "completion": ASSISTANT}] * 4)
    cfg = _section(name=str(path), eval_ratio=0.0, loss_on="all")
    data = prepare(cfg)
    apply_length_filters(data, tokenizer, cfg, max_length=4)
    assert (data.stats["train_size"], data.stats["train_truncated_rows"], data.stats["rows_dropped"]) == (4, 4, 0)


@pytest.mark.parametrize(("kind", "sets"), [
    ("chats", ["training.batching=padding_free"]),
    ("chats", ["training.batching=padded", "data.reasoning=think"]),
    ("prompt_completion", ["training.batching=padded"]),
    ("prompt_completion", ["training.batching=padding_free"]),
    ("preference", ["training.method=dpo"]),
])
def test_the_rows_kept_are_exactly_the_rows_trl_trains_on(tmp_path, kind, sets):
    """Set max_length to the median prompt length, then let TRL prepare the same rows: same train and eval sizes."""
    import statistics

    from smolforge.config.loading import load_config
    from smolforge.data import measure, precheck
    from smolforge.modelio import load_tokenizer, model_source
    from smolforge.runfolder import RunFolder
    from smolforge.train import build_trainer
    from tests.conftest import FAST_TINY
    from tests.datafiles import preference_rows, prompt_completion_rows

    rows = {"chats": [{"messages": c["messages"]} for c in chats(150)],
            "prompt_completion": prompt_completion_rows(150), "preference": preference_rows(150)}[kind]
    path = write_rows(tmp_path / "d.jsonl", rows)
    base = [*FAST_TINY[1::2], "tracking.backend=none", f"output_dir={tmp_path / 'run'}", "experiment_name=x",
            f"data.name={path}", "data.eval_ratio=0.2", *sets]
    cfg = load_config(preset="tiny", sets=base)
    data = prepare(cfg.data, cfg.training.method)
    tok = load_tokenizer(cfg, model_source(cfg), needs_markers=True)
    loss_on = "completion" if kind != "chats" else "assistant"
    median = int(statistics.median(measure(r, tok, data.kind, loss_on)[1] for r in data.train))
    cfg = load_config(preset="tiny", sets=[*base, f"training.max_length={median}"])
    data = prepare(cfg.data, cfg.training.method)
    precheck(cfg, data)
    dropped = data.stats["drop_reasons"]["no supervised token within training.max_length"]
    assert 0 < dropped < 120 and data.length_checked == median
    trainer = build_trainer(cfg, RunFolder(tmp_path / "run"), data).trainer
    assert (len(trainer.train_dataset), len(trainer.eval_dataset)) == \
        (data.stats["train_size"], data.stats["eval_size"]) == (len(data.train), len(data.eval))


# ---------------------------------------------------------------- duplicates and overlap

def test_exact_duplicates_are_removed_before_the_split_so_no_held_out_row_copies_a_training_row():
    from smolforge.data.dedup import row_key

    data = prepare(DataSection(name="builtin"))  # dedup is on by default
    assert data.stats["drop_reasons"] == {"exact duplicate": 98} and data.stats["rows_read"] == 600
    assert data.stats["train_size"] + data.stats["eval_size"] == 502
    train_keys = {row_key(dict(r)) for r in data.train}
    assert len(train_keys) == len(data.train)
    assert not [r for r in data.eval if row_key(dict(r)) in train_keys]
    overlap = data.stats["eval_prompt_overlap"]
    assert overlap["of"] == len(data.eval) and 0 < overlap["rows"] < overlap["of"]  # same question, other answer
    assert drop_report(data.stats) == ["removed 98 of 600 training rows as copies (data.dedup): exact duplicate: 98"]
    kept = prepare(DataSection(name="builtin", dedup=False))
    assert kept.stats["rows_dropped"] == 0 and kept.stats["train_size"] + kept.stats["eval_size"] == 600


def test_case_and_whitespace_do_not_make_a_row_new_and_eval_copies_of_training_rows_are_removed(tmp_path):
    a = [{"role": "user", "content": "What is 2+2?"}, {"role": "assistant", "content": "Four."}]
    b = [{"role": "user", "content": "what  is 2+2? "}, {"role": "assistant", "content": "four."}]
    c = [{"role": "user", "content": "What is 3+3?"}, {"role": "assistant", "content": "Six."}]
    d = [{"role": "user", "content": "What is 3+3?"}, {"role": "assistant", "content": "It is six."}]
    write_rows(tmp_path / "d" / "train.jsonl", [{"messages": a}, {"messages": b}, {"messages": c}])
    write_rows(tmp_path / "d" / "test.jsonl", [{"messages": b}, {"messages": d}])
    data = prepare(DataSection(name=str(tmp_path / "d")))
    assert data.stats["drop_reasons"] == {"exact duplicate": 1} and len(data.train) == 2
    assert data.stats["eval_drop_reasons"] == {"copy of a training row": 1} and len(data.eval) == 1
    assert data.stats["eval_prompt_overlap"] == {"rows": 1, "of": 1, "share": 1.0}  # d asks c's question
