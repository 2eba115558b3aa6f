"""`smolforge init` driven as a person would: the real console script in a pseudo-terminal (pexpect).

questionary needs a real terminal, so each test spawns `.venv/bin/smolforge init` in a pty with a
fixed size, waits for each question's text and sends keys. The environment is the conftest's
isolated offline one (no token, HF_HUB_OFFLINE=1) unless a test says otherwise.
"""

from __future__ import annotations

import io
import json
import os
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pexpect
import pytest
import yaml

from smolforge.card import defaults
from smolforge.config.loading import load_config
from smolforge.wizard.draft import preset_dump
from tests.conftest import SMOLFORGE, run_cli

pytestmark = pytest.mark.slow  # drives the CLI with the training libraries loaded (`make test` runs it)

ENTER, DOWN, UP, CLEAR, CTRL_C = "\r", "\x1b[B", "\x1b[A", "\x15", "\x03"  # Ctrl-U clears a pre-filled default


def spawn(cwd: Path, *args: str, env: dict | None = None) -> tuple[pexpect.spawn, io.StringIO]:
    screen = io.StringIO()
    full_env = {**os.environ, "TERM": "xterm", "PROMPT_TOOLKIT_NO_CPR": "1", **(env or {})}
    full_env = {k: v for k, v in full_env.items() if v is not None}
    child = pexpect.spawn(SMOLFORGE, ["init", *args], cwd=str(cwd), env=full_env, dimensions=(60, 150),
                          encoding="utf-8", timeout=30)
    child.logfile_read = screen
    return child, screen


def pat(text: str) -> str:
    """A regex for text on the screen: prompt_toolkit may draw a space as a cursor move (ESC [ n C)."""
    return r"(?: |\x1b\[\d*C)+".join(re.escape(word) for word in text.split(" "))


def answer(child: pexpect.spawn, question: str, *keys: str) -> None:
    """Wait for the question's text, then type the keys (each sent separately, like key presses)."""
    child.expect(pat(question))
    for key in keys:
        child.send(key)


def finish(child: pexpect.spawn) -> int:
    child.expect(pexpect.EOF)
    child.close()
    return child.exitstatus if child.exitstatus is not None else 128 + (child.signalstatus or 0)


def clean(screen: io.StringIO) -> str:
    """The terminal output without ANSI escape sequences."""
    text = re.sub(r"\x1b\[(\d*)C", lambda m: " " * int(m.group(1) or 1), screen.getvalue())
    return re.sub(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b[()][A-Z0-9]|\r", "", text)


DEFAULT_RUN = [  # every question of the default path here (no GPU, no Hub: the tiny model), answered with Enter
    "Hugging Face token:", "Base model:", "Preset:", "Training method:", "Which weights train:", "Dataset:",
    "Max training samples:", "Train for:", "Epochs:", "Batch size", "Gradient accumulation", "Learning rate:",
    "Max length", "Experiment name:", "Hub repo to publish to:", "Monitoring:", "Author name:", "Model description:",
    "License:", "Tags:", "Intended use:", "Out-of-scope use:", "Training data:", "Usage example:", "Limitations:",
    "Benchmarks:", "Quantized variants:",
]


def test_accepting_every_default_writes_the_preset_and_the_derived_defaults(tmp_path):
    child, screen = spawn(tmp_path, "--output", "cfg.yaml")
    for question in DEFAULT_RUN:
        answer(child, question, ENTER)
    answer(child, "Write the config?", ENTER)
    assert finish(child) == 0, clean(screen)

    out = clean(screen)
    assert "no GPU and no Hub here: the tiny model is offered first" in out
    assert re.search(r"Author name\s*│\s*\(none\)", out), out  # the summary has a row per question
    assert "Detected format: messages" in out  # the bundled data was read with the training loader
    cfg = load_config(tmp_path / "cfg.yaml")
    got, preset = cfg.model_dump(mode="json"), preset_dump("tiny")
    for section in ("model", "data", "training", "tracking", "quantize", "publish"):
        assert got[section] == preset[section], section
    assert re.fullmatch(r"tiny-sft-\d{8}-\d{6}", cfg.experiment_name)
    assert cfg.card.license == "apache-2.0"  # the tiny preset's
    assert cfg.card.model_description == defaults.description(cfg)  # the card's rule, derived from the answers
    assert "trained from random initial weights" in cfg.card.model_description
    assert cfg.card.author_name is None and cfg.card.tags == []
    raw = yaml.safe_load((tmp_path / "cfg.yaml").read_text())
    assert raw["preset"] == "tiny" and "training" not in raw  # only what differs from the preset
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cfg.yaml"]  # no temp files left behind


def test_the_smollm3_path_offline_leaves_the_format_to_the_run(tmp_path):
    child, screen = spawn(tmp_path, "--output", "cfg.yaml")
    answer(child, "Hugging Face token:", ENTER)
    answer(child, "Base model:", UP, ENTER)  # SmolLM3-3B
    for question in ["Preset:", "Training method:", "Which weights train:", "Dataset:", "Dataset config (subset):"]:
        answer(child, question, ENTER)
    child.expect(pat("Offline: the dataset's format is detected when the run starts."))
    for question in ["Max training samples:", "Train for:", "Epochs:", "Batch size", "Gradient accumulation",
                     "Learning rate:", "Max length", "Experiment name:", "Hub repo to publish to:", "Monitoring:",
                     "Author name:", "Model description:", "License:", "Tags:", "Intended use:", "Out-of-scope use:",
                     "Training data:", "Usage example:", "Limitations:", "Benchmarks:", "Quantized variants:",
                     "Write the config?"]:
        answer(child, question, ENTER)
    assert finish(child) == 0, clean(screen)
    cfg = load_config(tmp_path / "cfg.yaml")
    got, preset = cfg.model_dump(mode="json"), preset_dump("smollm3-sft")
    for section in ("model", "data", "training", "tracking", "quantize", "publish"):
        assert got[section] == preset[section], section
    assert cfg.card.license == "apache-2.0"  # SmolLM3-3B's license, known offline
    assert cfg.card.model_description == ("A fine-tuned version of HuggingFaceTB/SmolLM3-3B, trained with "
                                          "supervised fine-tuning (SFT) on HuggingFaceTB/smoltalk using smolforge.")


def test_custom_answers_for_every_step_with_reasks(tmp_path):
    rows = [{"q": f"What is {i} + {i}?", "a": f"{2 * i}."} for i in range(60)]
    (tmp_path / "qa.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "limits.txt").write_text("Only adds small numbers.\nNot for homework.\n")
    child, screen = spawn(tmp_path, "-o", "custom.yaml")
    answer(child, "Hugging Face token:", ENTER)
    answer(child, "Base model:", ENTER)  # tiny: offered first here (no GPU, no Hub)
    answer(child, "Preset:", ENTER)  # tiny is offered first for the tiny model
    answer(child, "Training method:", ENTER)
    answer(child, "Which weights train:", DOWN, ENTER)  # LoRA
    answer(child, "Dataset:", CLEAR, "qa.jsonl", ENTER)
    # q/a columns are not a known format: the wizard asks for the mapping
    answer(child, "Which format is it?", DOWN, DOWN, DOWN, DOWN, ENTER)  # question_answer
    answer(child, "Column for `question`", ENTER)  # q
    answer(child, "Column for `answer`", DOWN, ENTER)  # a
    child.expect(pat("Detected format:"))
    answer(child, "Max training samples:", "40", ENTER)
    answer(child, "Train for:", DOWN, ENTER)  # steps
    answer(child, "Optimizer steps:", CLEAR, "30", ENTER)
    answer(child, "Batch size", CLEAR, "4", ENTER)
    answer(child, "Gradient accumulation", CLEAR, "2", ENTER)
    answer(child, "Learning rate:", CLEAR, "abc", ENTER)
    child.expect(pat("training.learning_rate: Input should be a valid number"))  # re-asked with the schema's reason
    answer(child, "Learning rate:", CLEAR, "5", ENTER)
    child.expect(pat("less than or equal to 1"))
    answer(child, "Learning rate:", CLEAR, "1e-3", ENTER)
    answer(child, "Max length", CLEAR, "256", ENTER)
    answer(child, "Experiment name:", CLEAR, "wizard-custom", ENTER)
    answer(child, "Hub repo to publish to:", "not a repo", ENTER)
    child.expect(pat("must look like user/name"))  # re-asked with the reason
    answer(child, "Hub repo to publish to:", CLEAR, "ada/adder", ENTER)
    answer(child, "Visibility:", DOWN, ENTER)  # public
    answer(child, "Monitoring:", DOWN, DOWN, ENTER)  # none
    answer(child, "Author name:", "Ada Lovelace", ENTER)
    answer(child, "Model description:", CLEAR, "A tiny model that adds small numbers.", ENTER)
    answer(child, "License:", DOWN, ENTER)  # mit (after the tiny preset's apache-2.0)
    answer(child, "Tags:", "math, tiny-test", ENTER)
    answer(child, "Intended use:", CLEAR, "Adding small numbers in demos.", ENTER)
    answer(child, "Out-of-scope use:", CLEAR, ENTER)
    answer(child, "Training data:", "Sums of two small numbers, written by hand.", ENTER)
    answer(child, "Usage example:", "Ask: What is 2 + 2?", ENTER)
    answer(child, "Limitations:", "@limits.txt", ENTER)
    answer(child, "Benchmarks:", CLEAR, "builtin, builtin", ENTER)
    child.expect(pat("each name may appear only once"))  # the schema's rule, re-asked
    answer(child, "Benchmarks:", CLEAR, "builtin", ENTER)
    answer(child, "Quantized variants:", DOWN, ENTER)  # int8
    answer(child, "Publish a demo app", "y")
    answer(child, "Demo Space:", ENTER)  # ada/adder-demo
    child.expect(pat("Write the config?"))
    out = clean(screen)
    assert re.search(r"Author name\s*│\s*Ada Lovelace", out), out
    assert re.search(r"License\s*│\s*mit", out), out
    assert "question_answer" in out and "What is 0 + 0?" in out  # detected format and a sample row shown
    child.send(ENTER)
    assert finish(child) == 0, clean(screen)

    cfg = load_config(tmp_path / "custom.yaml")
    assert cfg.preset == "tiny" and cfg.model.name_or_path == "tiny"
    assert (cfg.training.method, cfg.training.finetune) == ("sft", "lora")
    assert cfg.data.name == "qa.jsonl" and cfg.data.format == "question_answer"
    assert cfg.data.fields == {"question": "q", "answer": "a"} and cfg.data.max_samples == 40
    t = cfg.training
    assert (t.max_steps, t.batch_size, t.gradient_accumulation_steps, t.learning_rate, t.max_length) == \
        (30, 4, 2, 1e-3, 256)
    assert cfg.experiment_name == "wizard-custom"
    assert (cfg.publish.repo_id, cfg.publish.private, cfg.publish.demo_space) == ("ada/adder", False, "ada/adder-demo")
    assert cfg.tracking.backend == "none"
    c = cfg.card
    assert (c.author_name, c.model_description, c.license) == ("Ada Lovelace", "A tiny model that adds small "
                                                                               "numbers.", "mit")
    assert c.tags == ["math", "tiny-test"] and c.usage_examples == ["Ask: What is 2 + 2?"]
    assert (c.intended_use, c.out_of_scope) == ("Adding small numbers in demos.", None)
    assert c.limitations == "Only adds small numbers.\nNot for homework."
    assert c.training_data == "Sums of two small numbers, written by hand."
    assert cfg.quantize.methods == ["int8"]


@pytest.mark.parametrize("stop_at", ["Dataset:", "Write the config?"])
def test_ctrl_c_writes_nothing(tmp_path, stop_at):
    child, screen = spawn(tmp_path, "--output", "cfg.yaml")
    for question in DEFAULT_RUN:
        if question == stop_at:
            break
        answer(child, question, ENTER)
    answer(child, stop_at, CTRL_C)
    assert finish(child) == 130
    assert "nothing was written" in clean(screen)
    assert list(tmp_path.iterdir()) == []


def test_outside_a_terminal_it_fails_naming_yes_instead_of_hanging(tmp_path):
    proc = run_cli("init", cwd=tmp_path, check=False, input="", timeout=60)
    assert proc.returncode == 2
    assert "not a terminal" in proc.stderr and "--yes" in proc.stderr and "Traceback" not in proc.stderr
    assert list(tmp_path.iterdir()) == []


def test_yes_writes_defaults_plus_flags_and_refuses_to_overwrite(tmp_path):
    (tmp_path / "chats.jsonl").write_text(json.dumps({"messages": [{"role": "user", "content": "hi"},
                                                                   {"role": "assistant", "content": "hello"}]}) + "\n")
    args = ["init", "--yes", "--preset", "tiny", "--dataset", "chats.jsonl", "--author-name", "Grace Hopper",
            "--model-description", "A tiny test model.", "--license", "cc-by-4.0", "--tag", "demo", "--tag", "x1",
            "--learning-rate", "1e-3", "--private", "--repo-id", "grace/tiny", "--output", "y.yaml"]
    proc = run_cli(*args, cwd=tmp_path, input="")
    assert re.search(r"Author name\s*│\s*Grace Hopper", proc.stdout), proc.stdout
    cfg = load_config(tmp_path / "y.yaml")
    assert cfg.preset == "tiny" and cfg.data.name == "chats.jsonl" and cfg.training.learning_rate == 1e-3
    assert (cfg.card.author_name, cfg.card.model_description, cfg.card.license, cfg.card.tags) == \
        ("Grace Hopper", "A tiny test model.", "cc-by-4.0", ["demo", "x1"])
    assert (cfg.publish.repo_id, cfg.publish.private) == ("grace/tiny", True)
    assert cfg.training.epochs == preset_dump("tiny")["training"]["epochs"]  # untouched values: the preset's

    before = (tmp_path / "y.yaml").read_text()
    again = run_cli(*args, cwd=tmp_path, input="", check=False)
    assert again.returncode == 2 and "--force" in again.stderr
    assert (tmp_path / "y.yaml").read_text() == before
    bad = run_cli("init", "--yes", "--license", "not-a-license", "--learning-rate", "7", "-o", "z.yaml",
                  cwd=tmp_path, input="", check=False)
    assert bad.returncode == 2 and "training.learning_rate" in bad.stderr and not (tmp_path / "z.yaml").exists()


class _WhoAmI(BaseHTTPRequestHandler):
    """The one Hub endpoint the wizard and huggingface_hub.login call: /api/whoami-v2."""

    token = "hf_" + "Wizard" * 6

    def do_GET(self):  # noqa: N802 (http.server's name)
        if self.path != "/api/whoami-v2" or self.headers.get("authorization") != f"Bearer {self.token}":
            self.send_response(401)
            self.end_headers()
            return
        body = json.dumps({"type": "user", "name": "alice", "auth": {"accessToken": {
            "displayName": "wizard-test", "role": "write"}}}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def test_typed_token_is_hidden_checked_stored_after_confirm_and_never_written(tmp_path):
    server = ThreadingHTTPServer(("127.0.0.1", 0), _WhoAmI)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    hf_home = tmp_path / "hf"
    env = {"HF_ENDPOINT": f"http://127.0.0.1:{server.server_port}", "HF_HOME": str(hf_home),
           "HF_HUB_OFFLINE": None, "HF_DATASETS_OFFLINE": None, "TRANSFORMERS_OFFLINE": None}
    token = _WhoAmI.token
    try:
        child, screen = spawn(tmp_path, "--output", "cfg.yaml", env=env)
        answer(child, "Hugging Face token:", "hf_wrong_token_123", ENTER)
        child.expect(pat("rejected by the Hub"))  # a bad token is re-asked
        answer(child, "Hugging Face token:", token, ENTER)
        child.expect(pat("Hugging Face user:"))
        child.expect("alice")
        answer(child, "Store this token", "y")
        assert not (hf_home / "token").exists()  # stored only after the final confirm
        answer(child, "Base model:", DOWN, ENTER)  # tiny + builtin data: nothing to fetch
        for question in ["Preset:", "Training method:", "Which weights train:", "Dataset:", "Max training samples:",
                         "Train for:", "Epochs:", "Batch size", "Gradient accumulation", "Learning rate:",
                         "Max length", "Experiment name:"]:
            answer(child, question, ENTER)
        child.expect(pat("Hub repo to publish to:") + r".*alice/tiny-sft-\d{8}-\d{6}")  # default <username>/<slug>
        child.send(ENTER)
        for question in ["Visibility:", "Monitoring:", "Author name:", "Model description:", "License:", "Tags:",
                         "Intended use:", "Out-of-scope use:", "Training data:", "Usage example:", "Limitations:",
                         "Benchmarks:", "Quantized variants:", "Publish a demo app", "Write the config?"]:
            answer(child, question, ENTER)
        assert finish(child) == 0, clean(screen)
    finally:
        server.shutdown()
    out = clean(screen)
    assert token not in screen.getvalue() and token not in out
    assert "can write" in out and re.search(r"Author name\s*│\s*alice", out)
    text = (tmp_path / "cfg.yaml").read_text()
    assert token not in text and "hf_" not in text
    cfg = load_config(tmp_path / "cfg.yaml")
    assert cfg.card.author_name == "alice" and cfg.publish.repo_id.startswith("alice/tiny-sft-")
    assert (hf_home / "token").read_text().strip() == token  # stored by huggingface_hub.login


def test_a_token_typed_offline_is_explained_and_can_be_stored(tmp_path):
    hf_home = tmp_path / "hf"
    token = "hf_" + "Offline" * 5
    child, screen = spawn(tmp_path, "--output", "cfg.yaml", env={"HF_HOME": str(hf_home)})
    answer(child, "Hugging Face token:", token, ENTER)
    child.expect(pat("cannot be checked now"))
    answer(child, "Store it in the huggingface_hub login cache", "y")
    for question in DEFAULT_RUN[1:]:
        answer(child, question, ENTER)
    answer(child, "Write the config?", ENTER)
    assert finish(child) == 0, clean(screen)
    out = clean(screen)
    assert "`smolforge run` will not find it (set HF_TOKEN then)" in out
    assert token not in screen.getvalue()
    assert token not in (tmp_path / "cfg.yaml").read_text()
    assert (hf_home / "token").read_text().strip() == token  # where huggingface_hub's get_token() looks


def test_run_without_config_offers_the_wizard_in_a_terminal(tmp_path):
    env = {**os.environ, "TERM": "xterm", "PROMPT_TOOLKIT_NO_CPR": "1"}
    child = pexpect.spawn(SMOLFORGE, ["run"], cwd=str(tmp_path), env=env, dimensions=(60, 150), encoding="utf-8",
                          timeout=30)
    child.expect(pat("Set one up now with the wizard"))
    child.send("y")
    child.expect(pat("Hugging Face token:"))  # the wizard started
    child.send(CTRL_C)
    assert finish(child) == 130 and list(tmp_path.iterdir()) == []

    child = pexpect.spawn(SMOLFORGE, ["run"], cwd=str(tmp_path), env=env, dimensions=(60, 150), encoding="utf-8",
                          timeout=30)
    child.expect(pat("Set one up now with the wizard"))
    child.send("n")
    child.expect(pat("smolforge init"))  # the usual message naming the ways to give a config
    assert finish(child) == 2
    # outside a terminal nothing is offered: the same error, at once
    proc = run_cli("run", cwd=tmp_path, check=False, input="")
    assert proc.returncode == 2 and "needs a config" in proc.stderr


def test_choosing_dpo_offers_the_dpo_preset(tmp_path):
    child, screen = spawn(tmp_path, "--output", "cfg.yaml")
    answer(child, "Hugging Face token:", ENTER)
    answer(child, "Base model:", UP, ENTER)  # SmolLM3-3B
    answer(child, "Preset:", ENTER)
    answer(child, "Training method:", DOWN, ENTER)  # DPO on top of the SFT preset
    answer(child, "Which weights train:", ENTER)
    answer(child, "The smollm3-dpo preset is made for DPO full", "y")
    child.expect(pat("Dataset:") + r".*HuggingFaceH4/ultrafeedback_binarized")  # the DPO preset's data
    child.send(CTRL_C)
    assert finish(child) == 130 and list(tmp_path.iterdir()) == []


def test_choosing_grpo_offers_the_grpo_preset_and_its_data(tmp_path):
    child, screen = spawn(tmp_path, "--output", "cfg.yaml")
    answer(child, "Hugging Face token:", ENTER)
    answer(child, "Base model:", UP, ENTER)  # SmolLM3-3B
    answer(child, "Preset:", ENTER)
    answer(child, "Training method:", DOWN + DOWN, ENTER)  # GRPO
    answer(child, "Which weights train:", DOWN, ENTER)  # LoRA
    answer(child, "The smollm3-grpo preset is made for GRPO lora", "y")
    child.expect(pat("Dataset:") + r".*openai/gsm8k")  # the GRPO preset's prompts with checkable answers
    child.send(CTRL_C)
    assert finish(child) == 130 and list(tmp_path.iterdir()) == []
