"""Fast checks of the publish helpers: endpoint choice, retry policy, the retry command, metadata merging."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest

from smolforge.card.hubmeta import merge_metadata
from smolforge.errors import PublishError, SmolforgeError
from smolforge.hubclient import HubUnreachable, Retrier, resolve_endpoint
from smolforge.publish.request import PublishRequest, retry_command
from smolforge.runfolder import RunFolder


def _http_error(status: int, message: str = "boom"):
    import httpx2
    from huggingface_hub.errors import HfHubHTTPError

    request = httpx2.Request("POST", "http://127.0.0.1:1/api/repos/create")
    return HfHubHTTPError(message, response=httpx2.Response(status, request=request, text=message))


def test_endpoint_precedence(monkeypatch):
    monkeypatch.setenv("HF_ENDPOINT", "http://env:1/")
    assert resolve_endpoint("http://flag:2/", "http://cfg:3") == "http://flag:2"
    assert resolve_endpoint(None, "http://cfg:3") == "http://cfg:3"
    assert resolve_endpoint(None, None) == "http://env:1"
    monkeypatch.delenv("HF_ENDPOINT")
    assert resolve_endpoint(None, None) == "https://huggingface.co"
    with pytest.raises(SmolforgeError, match="--endpoint"):
        resolve_endpoint("huggingface.co", None)


def test_transient_failures_are_retried_with_backoff(monkeypatch):
    import httpx2

    monkeypatch.setenv("SMOLFORGE_PUBLISH_RETRY_DELAY", "0.5")
    sleeps: list[float] = []
    monkeypatch.setattr("smolforge.hubclient.time.sleep", sleeps.append)
    calls = iter([httpx2.ConnectError("refused"), _http_error(503), _http_error(429), "ok"])

    def flaky():
        item = next(calls)
        if isinstance(item, Exception):
            raise item
        return item

    said: list[str] = []
    assert Retrier("http://h", "smolforge publish r --repo-id a/b", "HF_TOKEN", retries=4, say=said.append)(
        "Uploading", flaky) == "ok"
    assert sleeps == [0.5, 1.0, 2.0]
    assert len(said) == 3 and "HTTP 503" in said[1]


def test_final_transient_failure_names_the_command(monkeypatch):
    import httpx2

    monkeypatch.setattr("smolforge.hubclient.time.sleep", lambda s: None)
    retrier = Retrier("http://h", "smolforge publish r --repo-id a/b --private", "HF_TOKEN", retries=2)
    with pytest.raises(HubUnreachable) as err:
        retrier("Creating a/b", lambda: (_ for _ in ()).throw(httpx2.ConnectError("refused")))
    assert "after 3 attempts" in str(err.value) and str(err.value).endswith("--repo-id a/b --private")
    assert err.value.exit_code == 1


@pytest.mark.parametrize("status, kind, text", [(401, SmolforgeError, "401 Unauthorized"),
                                                (403, SmolforgeError, "403 Forbidden"),
                                                (404, PublishError, "HTTP 404"),
                                                (412, PublishError, "changed on the Hub while")])
def test_client_errors_are_not_retried(monkeypatch, status, kind, text):
    monkeypatch.setattr("smolforge.hubclient.time.sleep", lambda s: pytest.fail("must not retry"))
    calls = []

    def fail():
        calls.append(1)
        raise _http_error(status)

    with pytest.raises(kind, match=text):
        Retrier("http://h", "cmd", "HF_TOKEN", retries=3)("Creating a/b", fail)
    assert calls == [1]


def test_a_bug_keeps_its_traceback():
    with pytest.raises(TypeError):
        Retrier("http://h", "cmd", "HF_TOKEN")("Creating", lambda: None + 1)


def test_retry_command_is_exact_and_shell_quoted():
    run = RunFolder(Path("runs/my run"))
    req = PublishRequest(repo_id="a/b", private=False, endpoint="http://127.0.0.1:9", quantized_as="repos",
                         token_file="/tmp/my token")
    cmd = retry_command(run, req)
    assert shlex.split(cmd) == ["smolforge", "publish", "runs/my run", "--repo-id", "a/b", "--public", "--endpoint",
                                "http://127.0.0.1:9", "--quantized-as", "repos", "--token-file", "/tmp/my token"]
    assert retry_command(run, req, force=True).endswith("--force")


def test_merge_metadata_follows_metadata_update_overwrite_rules():
    from huggingface_hub import ModelCard

    remote = ("---\nlicense: mit\ntags:\n- mine\nextra_key: kept\nmodel-index:\n- name: m\n  results:\n"
              "  - task: {type: text-generation}\n    dataset: {name: d, type: d}\n    metrics:\n"
              "    - {type: loss, value: 9.0}\n    - {type: accuracy, value: 0.5}\n---\n\nHub text.\n")
    ours = ("---\nlicense: apache-2.0\ntags:\n- smolforge\nmodel-index:\n- name: m\n  results:\n"
            "  - task: {type: text-generation}\n    dataset: {name: d, type: d}\n    metrics:\n"
            "    - {type: loss, value: 1.5}\n    - {type: perplexity, value: 4.48}\n---\n\nOur text.\n")
    merged = ModelCard(merge_metadata(remote, ours))
    assert merged.text.strip() == "Hub text."
    data = merged.data
    assert data.license == "apache-2.0" and data.tags == ["smolforge"] and data.to_dict()["extra_key"] == "kept"
    values = {r.metric_type: r.metric_value for r in data.eval_results}
    assert values == {"loss": 1.5, "accuracy": 0.5, "perplexity": 4.48}


def _adapter_run(tmp_path: Path, name: str = "lora_adapter") -> RunFolder:
    """The LoRA fixture run (its base: a tiny SFT run on this machine) with adapter files in model/."""
    import json

    from tests.unit.test_card import make_run

    run = make_run(tmp_path, name)
    (run.model_dir / "adapter_model.safetensors").write_bytes(b"x")
    base = run.read_config().model.name_or_path
    (run.model_dir / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": base,
                                                                   "peft_type": "LORA"}))
    return run


def test_an_adapter_whose_base_nobody_can_download_is_refused_with_the_two_fixes(tmp_path):
    """Its adapter_config.json could only name a path on this machine: neither publish nor export it."""
    from smolforge.publish.staging import export

    run = _adapter_run(tmp_path)
    base_run = Path(run.read_config().model.name_or_path).parent
    with pytest.raises(SmolforgeError) as e:
        export(run, run.read_config(), tmp_path / "out", "alice/lora", "subfolders")
    text = str(e.value)
    assert "holds a LoRA adapter, and its base (chat-base/model) is not on the Hub" in text
    assert f"publish its base first (`smolforge publish {base_run} --repo-id USER/NAME`" in text
    assert "`--set training.lora.merge=true`" in text and "Nothing was published" in text
    assert not (tmp_path / "out").exists()


def test_an_adapter_of_a_published_base_names_the_base_repo_in_config_and_card(tmp_path):
    """The base run was published: the adapter's config, and the card's base_model, name that repo, which is what
    PEFT's loader downloads."""
    import json

    from huggingface_hub import ModelCard

    from smolforge.publish.staging import export

    run = _adapter_run(tmp_path)
    base_run = RunFolder(Path(run.read_config().model.name_or_path).parent)
    base_run.update_results(publish={"repo_id": "alice/chat-base", "endpoint": "https://huggingface.co"})
    (out,) = export(run, run.read_config(), tmp_path / "out", "alice/lora", "subfolders")
    assert json.loads((out / "adapter_config.json").read_text())["base_model_name_or_path"] == "alice/chat-base"
    card = ModelCard((out / "README.md").read_text())
    assert card.data.base_model == "alice/chat-base" and card.data.to_dict()["base_model_relation"] == "adapter"
