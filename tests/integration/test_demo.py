"""`smolforge demo`: the generated app folder, its errors, the Space upload, and the app's chat logic.

The Space upload is tested against an in-process fake of huggingface_hub.HfApi (monkeypatched), which
records what would be created and uploaded; the real client is exercised by the publish tests.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from importlib.metadata import version
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from tests.conftest import run_cli

RUN_FILES = {"config.yaml", "results.json", "manifest.json", "data_report.json", "model", "checkpoints", "logs",
             "evaluation", "overrides.yaml"}
FAKE_TOKEN = "hf_" + "Zq7" * 12


def load_app(folder: Path):
    """Import a generated app.py as a module (it reads demo_config.json beside it)."""
    spec = importlib.util.spec_from_file_location(f"demo_app_{abs(hash(folder))}", folder / "app.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def front_matter(readme: Path) -> dict:
    text = readme.read_text(encoding="utf-8")
    assert text.startswith("---\n")
    return yaml.safe_load(text.split("---\n")[1])


# ---------------------------------------------------------------- the generated folder


def test_demo_writes_app_folder_beside_the_run(run_copy):
    before = {p.name for p in run_copy.iterdir()}
    proc = run_cli("demo", str(run_copy), "--model-id", "alice/tiny-chat", "--system-prompt", "Be brief.",
                   "--example", "What is 2+2?", "--example", "Name a colour.", "--temperature", "0.3",
                   "--max-new-tokens", "64", "--seed", "7", cwd=run_copy.parent)
    out = run_copy.with_name(run_copy.name + "-demo")
    assert str(out) in proc.stdout
    assert {p.name for p in run_copy.iterdir()} == before  # the run folder's contract is untouched
    assert before <= RUN_FILES
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "app.py", "demo_config.json", "requirements.txt"]

    config = json.loads((out / "demo_config.json").read_text())
    assert config["model_id"] == "alice/tiny-chat"
    assert config["system_prompt"] == "Be brief."
    assert config["examples"] == ["What is 2+2?", "Name a colour."]
    assert config["generation"] == {"temperature": 0.3, "top_p": 0.95, "max_new_tokens": 64, "seed": 7}

    meta = front_matter(out / "README.md")
    assert meta["sdk"] == "gradio" and meta["app_file"] == "app.py"
    assert meta["sdk_version"] == version("gradio")
    assert meta["models"] == ["alice/tiny-chat"]
    assert meta["license"] == "apache-2.0"  # the card's license, read from model/README.md
    assert "https://huggingface.co/alice/tiny-chat" in (out / "README.md").read_text()

    pins = dict(line.split("==") for line in (out / "requirements.txt").read_text().splitlines()
                if "==" in line)
    assert pins == {"gradio": version("gradio"), "transformers": version("transformers"),
                    "torch": version("torch").split("+")[0], "huggingface_hub": version("huggingface_hub")}
    assert (out / "app.py").stat().st_mode & 0o044  # readable by others: it is meant to be shared


def test_demo_model_id_comes_from_the_published_repo(run_copy, tmp_path):
    results = json.loads((run_copy / "results.json").read_text())
    results["publish"] = {"repo_id": "bob/published-tiny"}
    (run_copy / "results.json").write_text(json.dumps(results))
    run_cli("demo", str(run_copy), "--output", str(tmp_path / "app"), cwd=tmp_path)
    assert json.loads((tmp_path / "app" / "demo_config.json").read_text())["model_id"] == "bob/published-tiny"
    assert front_matter(tmp_path / "app" / "README.md")["models"] == ["bob/published-tiny"]


def test_demo_regenerates_its_own_folder_but_refuses_a_foreign_one(tiny_run, tmp_path):
    out = tmp_path / "app"
    run_cli("demo", str(tiny_run), "--output", str(out), "--title", "First", cwd=tmp_path)
    run_cli("demo", str(tiny_run), "--output", str(out), "--title", "Second", cwd=tmp_path)
    assert json.loads((out / "demo_config.json").read_text())["title"] == "Second"
    assert [p.name for p in tmp_path.iterdir()] == ["app"]  # no temp or backup folders left behind

    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    proc = run_cli("demo", str(tiny_run), "--output", str(foreign), cwd=tmp_path, check=False)
    assert proc.returncode == 2
    assert "--output" in proc.stderr and "Traceback" not in proc.stderr
    assert [p.name for p in foreign.iterdir()] == ["notes.txt"]


@pytest.mark.parametrize("args, needle", [
    (["--space", "not a repo"], "--space"),
    (["--model-id", "nope"], "--model-id"),
    (["--space", "alice/demo"], "--model-id"),  # nothing tells the Space which model to load
    (["--temperature", "3"], "--temperature"),
    (["--top-p", "0"], "--top-p"),
    (["--serve", "--port", "70000"], "--port"),
])
def test_demo_bad_flags_fail_before_writing(tiny_run, tmp_path, args, needle):
    out = tmp_path / "app"
    proc = run_cli("demo", str(tiny_run), "--output", str(out), *args, cwd=tmp_path, check=False)
    assert proc.returncode == 2, proc.stderr
    assert needle in proc.stderr and "Traceback" not in proc.stderr
    assert not out.exists()


def test_demo_needs_a_finished_run(tmp_path):
    proc = run_cli("demo", str(tmp_path / "missing"), cwd=tmp_path, check=False)
    assert proc.returncode == 2 and "does not exist" in proc.stderr
    run = tmp_path / "half"
    (run / "model").mkdir(parents=True)
    (run / "config.yaml").write_text("experiment_name: half\n")
    proc = run_cli("demo", str(run), cwd=tmp_path, check=False)
    assert proc.returncode == 2 and "no trained model" in proc.stderr


def test_demo_serve_refuses_a_busy_port(tiny_run, tmp_path):
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        proc = run_cli("demo", str(tiny_run), "--output", str(tmp_path / "app"), "--serve", "--port", str(port),
                       cwd=tmp_path, check=False, timeout=60)
    assert proc.returncode == 2
    assert f"--port {port} is already in use" in proc.stderr


# ---------------------------------------------------------------- --space (fake HfApi, in process)


class FakeHfApi:
    """Records create_repo/upload_folder calls and the uploaded files' text, like a Hub would receive them."""

    calls: list[tuple[str, dict]] = []
    fail_with: Exception | None = None

    def __init__(self, endpoint=None, token=None):
        self.calls.append(("init", {"endpoint": endpoint, "token": token}))

    def create_repo(self, repo_id, **kwargs):
        if self.fail_with is not None:
            raise self.fail_with
        self.calls.append(("create_repo", {"repo_id": repo_id, **kwargs}))
        return SimpleNamespace(url=f"https://hub.test/spaces/{repo_id}")

    def upload_folder(self, *, folder_path, repo_id, allow_patterns=None, **kwargs):
        files = {p.name: p.read_text(encoding="utf-8") for p in sorted(Path(folder_path).iterdir())
                 if allow_patterns is None or p.name in allow_patterns}
        self.calls.append(("upload_folder", {"repo_id": repo_id, "files": files, **kwargs}))
        return SimpleNamespace(oid="c0ffee")


def run_main(monkeypatch, capsys, *args) -> tuple[int, str, str]:
    """The real entry point (`smolforge.cli.main`) in this process, so HfApi can be replaced."""
    from smolforge import cli

    monkeypatch.setattr(sys, "argv", ["smolforge", *args])
    with pytest.raises(SystemExit) as exit_info:
        cli.main()
    captured = capsys.readouterr()
    return exit_info.value.code, captured.out, captured.err


@pytest.fixture
def fake_hub(monkeypatch):
    import huggingface_hub

    FakeHfApi.calls = []
    FakeHfApi.fail_with = None
    monkeypatch.setattr(huggingface_hub, "HfApi", FakeHfApi)
    monkeypatch.setenv("HF_TOKEN", FAKE_TOKEN)
    return FakeHfApi


def test_demo_space_creates_a_private_gradio_space_and_uploads_once(run_copy, tmp_path, monkeypatch, capsys,
                                                                    fake_hub):
    code, out, err = run_main(monkeypatch, capsys, "demo", str(run_copy), "--output", str(tmp_path / "app"),
                              "--model-id", "alice/tiny-chat", "--space", "alice/tiny-chat-demo")
    assert code == 0, err
    kinds = [name for name, _ in fake_hub.calls]
    assert kinds == ["init", "create_repo", "upload_folder"]
    init, create, upload = (kw for _, kw in fake_hub.calls)
    assert init["token"] == FAKE_TOKEN  # from HF_TOKEN, never from argv
    assert create == {"repo_id": "alice/tiny-chat-demo", "repo_type": "space", "space_sdk": "gradio",
                      "private": True, "exist_ok": True}
    assert upload["repo_id"] == "alice/tiny-chat-demo" and upload["repo_type"] == "space"
    assert sorted(upload["files"]) == ["README.md", "app.py", "demo_config.json", "requirements.txt"]
    assert all(FAKE_TOKEN not in text for text in upload["files"].values())
    assert yaml.safe_load(upload["files"]["README.md"].split("---\n")[1])["models"] == ["alice/tiny-chat"]
    assert "https://hub.test/spaces/alice/tiny-chat-demo" in out and "private" in out

    results = json.loads((run_copy / "results.json").read_text())
    assert results["demo"] == {"space_id": "alice/tiny-chat-demo", "url": "https://hub.test/spaces/alice/tiny-chat-demo",
                               "private": True, "commit": "c0ffee"}
    assert FAKE_TOKEN not in (run_copy / "results.json").read_text()


def test_demo_space_public_on_request(run_copy, tmp_path, monkeypatch, capsys, fake_hub):
    code, _, err = run_main(monkeypatch, capsys, "demo", str(run_copy), "--output", str(tmp_path / "app"),
                            "--model-id", "alice/tiny-chat", "--space", "alice/tiny-chat-demo", "--public")
    assert code == 0, err
    assert dict(fake_hub.calls)["create_repo"]["private"] is False


def test_demo_space_failure_keeps_the_folder_and_hides_the_token(run_copy, tmp_path, monkeypatch, capsys, fake_hub):
    import httpx2
    from huggingface_hub.errors import HfHubHTTPError

    response = httpx2.Response(401, request=httpx2.Request("POST", "https://hub.test/api/repos/create"))
    fake_hub.fail_with = HfHubHTTPError(f"401 Unauthorized: token {FAKE_TOKEN} is not valid", response=response)
    code, _, err = run_main(monkeypatch, capsys, "demo", str(run_copy), "--output", str(tmp_path / "app"),
                            "--model-id", "alice/tiny-chat", "--space", "alice/tiny-chat-demo")
    assert code == 1
    assert "alice/tiny-chat-demo" in err and "401 Unauthorized" in err
    assert FAKE_TOKEN not in err
    assert (tmp_path / "app" / "app.py").is_file()
    assert "demo" not in json.loads((run_copy / "results.json").read_text())


def test_demo_space_without_a_token_names_the_ways_to_give_one(tiny_run, tmp_path):
    proc = run_cli("demo", str(tiny_run), "--output", str(tmp_path / "app"), "--model-id", "alice/tiny-chat",
                   "--space", "alice/tiny-chat-demo", cwd=tmp_path, check=False)
    assert proc.returncode == 2
    assert "HF_TOKEN" in proc.stderr and "--token-file" in proc.stderr
    assert not (tmp_path / "app").exists()


# ---------------------------------------------------------------- the app's chat logic (in process)


@pytest.fixture(scope="module")
def app_module(tiny_run, tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "app"
    run_cli("demo", str(tiny_run), "--output", str(out), "--system-prompt", "You are terse.", cwd=out.parent)
    return load_app(out)


def test_history_from_gradio_becomes_template_messages(app_module):
    history = [  # the shape gradio 6's Chatbot hands to the chat function
        {"role": "user", "content": [{"type": "text", "text": "Hi there"}], "metadata": None},
        {"role": "assistant", "content": [{"type": "text", "text": "I weighed it"}],
         "metadata": {"title": "Thinking", "status": "done"}},
        {"role": "assistant", "content": [{"type": "text", "text": "Hello!"}], "metadata": None},
        {"role": "user", "content": [{"type": "file", "file": {"path": "/tmp/x.png"}}], "metadata": None},
    ]
    assert app_module.to_messages("And now?", history, " Be kind. ") == [
        {"role": "system", "content": "Be kind."},
        {"role": "user", "content": "Hi there"},
        {"role": "assistant", "content": "Hello!"},
        {"role": "user", "content": "And now?"},
    ]
    assert app_module.to_messages("Solo", [], "  ") == [{"role": "user", "content": "Solo"}]


def test_thinking_is_split_into_a_collapsible_bubble(app_module):
    thought, answer = app_module.render("<think>\nadd 2 and 2\n</think>\nIt is 4.", final=True)
    assert thought.metadata == {"title": "Thinking", "status": "done"} and thought.content == "add 2 and 2"
    assert answer.content == "It is 4." and not answer.metadata
    (pending,) = app_module.render("<think>still going", final=False)
    assert pending.metadata["status"] == "pending"
    assert app_module.render("Plain answer ", final=True) == "Plain answer"
    # A template that opens <think> in the prompt: the reply only closes it (counts only with thinking on).
    thought, answer = app_module.render("weighing\n</think>\nDone.", final=True, thinking=True)
    assert thought.content == "weighing" and answer.content == "Done."
    assert app_module.render("odd </think> text", final=True, thinking=False) == "odd </think> text"
    assert app_module.render(" \n", final=True) == app_module.EMPTY_REPLY


def test_think_toggle_reaches_the_chat_template(app_module, tiny_run):
    chat = app_module.ChatModel(str(tiny_run / "model"))
    assert chat.supports_thinking
    messages = [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Hi"}]
    no_think = chat.prompt(messages, thinking=False, tokenize=False)
    think = chat.prompt(messages, thinking=True, tokenize=False)
    assert "Reasoning Mode: /no_think" in no_think and no_think.endswith("<|im_start|>assistant\n<think>\n\n</think>\n")
    assert "Reasoning Mode: /think" in think and think.endswith("<|im_start|>assistant\n")
    assert "You are terse." in think
