"""Data problems through the real CLI: one paragraph, exit code 2, before any run folder is written."""

from __future__ import annotations

import json

import pytest

from tests.conftest import FAST_TINY, run_cli
from tests.datafiles import chats, first_exchange, preference_rows, write_rows

pytestmark = pytest.mark.slow  # drives the CLI with the training libraries loaded (`make test` runs it)


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


def _latin1_line(path, rows: list[str], bad: int, header: str | None = None):
    """UTF-8 text lines with line `bad` (1-based, counting a header) saved as Latin-1."""
    lines = ([header] if header else []) + rows
    path.write_bytes(b"".join((line + "\n").encode("latin-1" if n == bad else "utf-8")
                              for n, line in enumerate(lines, 1)))
    return path


def _broken_line(path, n_rows: int, bad: int):
    lines = [json.dumps({"text": f"row {i}"}) for i in range(n_rows)]
    lines[bad - 1] = lines[bad - 1][:-1]  # the closing brace is missing
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _deep_line(path, n_rows: int, bad: int):
    """A JSON Lines file whose line `bad` holds a value nested 5,000 levels deep (valid JSON, unreadable)."""
    lines = [json.dumps({"text": f"row {i}"}) for i in range(n_rows)]
    lines[bad - 1] = '{"text": "row", "meta": ' + "[" * 5000 + "1" + "]" * 5000 + "}"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.mark.parametrize(("name", "make", "expected"), [
    ("zero.jsonl", lambda p: p.write_bytes(b"") or p,
     "data.name: {path} is empty (0 rows). Add rows (JSON Lines: one JSON object per line"),
    ("blank.jsonl", lambda p: p.write_bytes(b"\n\n \n") and p,
     "data.name: {path} is empty (0 rows): it holds only blank lines."),
    ("header.csv", lambda p: p.write_text("instruction,input,output\n") and p,
     "data.name: {path} is empty (0 rows): the CSV has a header (columns instruction, input, output) but no "
     "data rows. Add data rows below the header"),
    ("latin.jsonl", lambda p: _latin1_line(p, [json.dumps({"text": f"caf\u00e9 {i}"}, ensure_ascii=False)
                                              for i in range(50)], bad=23),
     "data.name: {path} is not UTF-8 (byte 0xe9 at line 23): re-save it as UTF-8"),
    ("latin.csv", lambda p: _latin1_line(p, [f"caf\u00e9 {i}" for i in range(50)], bad=9, header="text"),
     "data.name: {path} is not UTF-8 (byte 0xe9 at line 9): re-save it as UTF-8"),
    ("broken.jsonl", lambda p: _broken_line(p, 60, bad=41),
     "data.name: {path} line 41 is not valid JSON (Expecting ',' delimiter, column 18): fix that line"),
    ("deep.jsonl", lambda p: _deep_line(p, 30, bad=4),
     "data.name: {path} line 4 nests JSON values too deeply to read (thousands of levels): flatten or remove that "
     "value, or remove the line."),
])
def test_unreadable_data_files_fail_cleanly_naming_the_file_and_line(tmp_path, name, make, expected):
    path = tmp_path / "data" / name
    path.parent.mkdir()
    make(path)
    err = _fails_cleanly(tmp_path, "--preset", "tiny", *FAST_TINY, "--set", f"data.name={path}")
    assert expected.format(path=path) in err


def test_unknown_roles_fail_cleanly_with_the_roles_found_and_the_fix(tmp_path):
    turns = [{"role": "human", "content": "What is the capital of Peru?"}, {"role": "bot", "content": "Lima."}]
    data = write_rows(tmp_path / "chats.jsonl", [{"messages": turns}] * 5)
    err = _fails_cleanly(tmp_path, "--preset", "tiny", *FAST_TINY, "--set", f"data.name={data}")
    assert (f"data: every one of the 5 rows of {data} was dropped (unknown role: 5). Roles the chat template does "
            "not know: human (5 rows), bot (5 rows); accepted: system, user, assistant, tool. Map each one with "
            "data.roles, e.g. --set data.roles.human=user --set data.roles.bot=assistant.") in err
    bad = _fails_cleanly(tmp_path, "--preset", "tiny", *FAST_TINY, "--set", f"data.name={data}",
                         "--set", "data.roles.human=person")
    assert "data.roles.human: Input should be 'system', 'user', 'assistant' or 'tool'" in bad


@pytest.mark.slow
def test_mixed_formats_train_on_what_is_left_and_record_the_drops(tmp_path):
    """A file of chats mixed with prompt/completion rows: read as messages, the other rows are counted drops."""
    from smolforge.data import drop_report

    chats_ = [{"messages": c["messages"]} for c in chats(40)]
    pcs = [{"prompt": q, "completion": a} for q, a in (first_exchange(c) for c in chats(60))]
    data = write_rows(tmp_path / "mixed.jsonl", chats_ + pcs)
    run_cli("run", "--preset", "tiny", "--yes", "--experiment-name", "mixed", *FAST_TINY, "--set",
            f"data.name={data}", "--set", "training.max_steps=2", "--set", "tracking.backend=none", cwd=tmp_path)
    stats = json.loads((tmp_path / "runs" / "mixed" / "results.json").read_text())["dataset"]
    assert (stats["rows_read"], stats["rows_dropped"], stats["train_size"] + stats["eval_size"]) == (100, 60, 40)
    assert drop_report(stats) == [
        "dropped 60 of 100 training rows (60.0%): empty or not a list of turns: 60",
        "warning: 60.0% of the training rows were dropped (more than 5%): check data.format and data.fields; the "
        "rows were read as format 'messages' with fields messages -> 'messages'.",
    ]


# ---------------------------------------------------------------- training.max_length shorter than the prompts

def _tiny_tokenizer(*sets: str):
    from transformers import AutoTokenizer

    from smolforge.config.loading import load_config
    from smolforge.tiny import ensure_tiny

    return AutoTokenizer.from_pretrained(ensure_tiny(load_config(preset="tiny", sets=list(sets)).model.tiny))


def _ids(tok, messages: list[dict], **kw) -> list[int]:
    kw = {"enable_thinking": False, **kw}
    return tok.apply_chat_template(messages, tokenize=True, return_dict=True, **kw)["input_ids"]


def _chat_prompt_length(tok, row: dict) -> int:
    """Tokens before the first assistant token: the rendered turns before it plus the assistant header."""
    first = next(i for i, m in enumerate(row["messages"]) if m["role"] == "assistant")
    text = tok.apply_chat_template(row["messages"][:first], tokenize=False, **row["chat_template_kwargs"])
    return len(tok(text + "<|im_start|>assistant\n", add_special_tokens=False)["input_ids"])


def _pair_lengths(tok, pair: dict) -> tuple[int, int]:
    """(longer of prompt+chosen / prompt+rejected, prompt with the generation prompt), as TRL's DPO tokenises."""
    prompt = [{"role": "user", "content": pair["prompt"]}]
    full = max(len(_ids(tok, prompt + [{"role": "assistant", "content": pair[k]}])) for k in ("chosen", "rejected"))
    return full, len(_ids(tok, prompt, add_generation_prompt=True))


def _p90_and_fit(lengths: list[int]) -> tuple[int, int]:
    s = sorted(lengths)
    p90 = s[round(0.9 * (len(s) - 1))]
    return p90, 1 << (p90 - 1).bit_length()


def test_sft_max_length_shorter_than_every_prompt_fails_before_the_model_loads(tmp_path):
    """`smolforge run --preset tiny --set training.max_length=16` crashed inside TRL with num_samples=0."""
    from smolforge.config import DataSection
    from smolforge.data import prepare

    err = _fails_cleanly(tmp_path, "--preset", "tiny", "--set", "training.max_length=16")
    tok = _tiny_tokenizer()
    train = prepare(DataSection(eval_ratio=0.1, seed=42)).train  # the preset's data and split
    fulls = [len(_ids(tok, r["messages"], **r["chat_template_kwargs"])) for r in train]
    prompts = [_chat_prompt_length(tok, r) for r in train]
    p90, fit = _p90_and_fit(fulls)
    assert err == (
        "error: training.max_length: 16 tokens cannot hold the prompt of any training row (everything before its "
        "first trained token, with the chat template), so TRL would cut every row before its first trained token: "
        f"the shortest prompt is {min(prompts)} tokens and the shortest example {min(fulls)} tokens; 90% of the "
        f"examples are at most {p90}. Set --set training.max_length={fit} (the smallest power of two that fits 90% "
        "of them), or shorten the prompts.")


@pytest.mark.parametrize("max_length", [16, 32])
def test_dpo_max_length_shorter_than_every_prompt_fails_before_the_model_loads(tmp_path, max_length):
    """TRL silently drops the pairs whose prompt fills max_length: with none left, say so before anything runs."""
    pairs = [p for p in preference_rows() if len(p["chosen"]) < 60 and len(p["rejected"]) < 60][:40]
    data = write_rows(tmp_path / "pairs.jsonl", pairs)
    err = _fails_cleanly(tmp_path, "--preset", "tiny", *FAST_TINY, "--set", "training.method=dpo",
                         "--set", f"data.name={data}", "--set", "data.eval_ratio=0", "--set",
                         f"training.max_length={max_length}")
    fulls, prompts = zip(*(_pair_lengths(_tiny_tokenizer(*FAST_TINY[1::2]), p) for p in pairs), strict=True)
    p90, fit = _p90_and_fit(list(fulls))
    assert err == (
        f"error: training.max_length: {max_length} tokens cannot hold the prompt of any training pair (everything "
        "before its first trained token, with the chat template), so TRL would drop every pair: the shortest "
        f"prompt is {min(prompts)} tokens and the shortest example {min(fulls)} tokens; 90% of the examples are at "
        f"most {p90}. Set --set training.max_length={fit} (the smallest power of two that fits 90% of them), or "
        "shorten the prompts.")


@pytest.mark.slow
def test_dpo_pairs_too_long_for_max_length_are_dropped_counted_and_not_trained_on(tmp_path):
    """40 short pairs and 10 with a long prompt: the 10 are dropped as TRL drops them, and the numbers say so."""
    short = [p for p in preference_rows() if len(p["chosen"]) < 60 and len(p["rejected"]) < 60][:40]
    long = [{**p, "prompt": " ".join([p["prompt"]] * 4)} for p in short[:10]]
    data = write_rows(tmp_path / "pairs.jsonl", short + long)
    tok = _tiny_tokenizer(*FAST_TINY[1::2])
    max_length = max(_pair_lengths(tok, p)[1] for p in short) + 1
    assert min(_pair_lengths(tok, p)[1] for p in long) >= max_length
    proc = run_cli("run", "--preset", "tiny", "--yes", "--experiment-name", "dpo", *FAST_TINY, "--set",
                   "training.method=dpo", "--set", f"data.name={data.name}", "--set", "data.eval_ratio=0", "--set",
                   f"training.max_length={max_length}", "--set", "training.batch_size=1", "--set",
                   "training.epochs=1", "--set", "tracking.backend=none", cwd=tmp_path)
    assert "pairs.jsonl (preference, 40 train / 0 eval)" in proc.stdout  # the summary counts what TRL trains on
    run = tmp_path / "runs" / "dpo"
    results = json.loads((run / "results.json").read_text())
    assert results["global_steps"] == 40  # one pair per step, one epoch: TRL trained on exactly the 40 kept pairs
    stats = results["dataset"]
    assert (stats["rows_read"], stats["train_size"], stats["rows_dropped"]) == (50, 40, 10)
    assert stats["drop_reasons"] == {"no supervised token within training.max_length": 10}
    assert ("| **Rows read** | 50 from split `train`; 10 dropped (no supervised token within training.max_length: "
            "10) |") in (run / "model" / "README.md").read_text()
