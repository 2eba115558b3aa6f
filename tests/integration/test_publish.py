"""`smolforge publish` through the real CLI against a Hub-API server on 127.0.0.1 (tests/hubserver.py).

The real huggingface_hub client does every request: create, preupload, the LFS batch/upload/verify
path (a file over 10 MB), the NDJSON commit, model_info and downloads.
"""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import threading
from pathlib import Path

import pytest
import yaml

from tests.conftest import run_cli
from tests.hubserver import HubServer
from tests.servers import free_port

TOKEN = "hf_PublishTestToken0123456789"
USER = "alice"


def hub_env(**extra: str) -> dict[str, str]:
    return {"HF_TOKEN": TOKEN, "HF_HUB_OFFLINE": "0", "HF_HUB_DISABLE_XET": "1",
            "SMOLFORGE_PUBLISH_RETRY_DELAY": "0.05", **extra}


def publish(run: Path, hub_url: str, *args: str, env: dict | None = None, check: bool = True):
    return run_cli("publish", str(run), "--endpoint", hub_url, *args, cwd=run.parent, env=env or hub_env(),
                   check=check)


def _results(run: Path) -> dict:
    return json.loads((run / "results.json").read_text())


def _tree(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture
def hub():
    with HubServer(token=TOKEN, user=USER) as server:
        yield server


def test_first_push_one_commit_with_lfs_and_the_seed_layout(hub, quantized_copy, tmp_path, monkeypatch):
    run = quantized_copy
    big = os.urandom(11 * 1024 * 1024)
    (run / "model" / "extra_weights.bin").write_bytes(big)  # > 10 MB: the LFS path must run
    proc = publish(run, hub.url, "--repo-id", f"{USER}/tiny")
    assert "Published:" in proc.stdout

    repo = hub.repos[f"{USER}/tiny"]
    assert repo.private is True  # private by default
    assert len(repo.commits) == 1
    files = set(repo.files)
    model_files = {p.name for p in (run / "model").iterdir()}
    int8_files = {f"int8/{p.name}" for p in (run / "quantized" / "int8").iterdir()}
    evaluation = {f"evaluation/{p.relative_to(run / 'evaluation')}" for p in (run / "evaluation").rglob("*")
                  if p.is_file()}
    published = {"results.json", "manifest.json", "config.yaml"}
    assert evaluation and files == model_files | int8_files | evaluation | published
    assert not any(f.startswith(("checkpoint", "logs", "quantized/")) for f in files)
    assert repo.files["extra_weights.bin"].lfs and repo.files["extra_weights.bin"].data == big
    assert repo.files["model.safetensors"].data == (run / "model" / "model.safetensors").read_bytes()
    paths = [r.path for r in hub.requests]
    assert any(p.endswith(".git/info/lfs/objects/batch") for p in paths)
    assert any(p.startswith("/lfs-upload/") for p in paths) and "/lfs-verify" in paths
    assert any(p.startswith("/api/validate-yaml") for p in paths)

    # the card pushed is the local card, rendered for this repo (snippet with the right subfolder)
    card = hub.file(f"{USER}/tiny", "README.md").decode()
    assert card == (run / "model" / "README.md").read_text()
    assert f'from_pretrained("{USER}/tiny", subfolder="int8")' in card
    published = yaml.safe_load(hub.file(f"{USER}/tiny", "config.yaml"))
    trained = yaml.safe_load((run / "config.yaml").read_text())
    assert published["training"] == trained["training"] and published["publish"]["repo_id"] == f"{USER}/tiny"
    assert trained["publish"]["repo_id"] is None  # config.yaml stays as trained; the choice is an override
    assert yaml.safe_load((run / "overrides.yaml").read_text())["publish"]["repo_id"] == f"{USER}/tiny"

    rec = _results(run)["publish"]
    assert rec["repo_id"] == f"{USER}/tiny" and rec["commit"] == repo.sha and rec["private"] is True
    assert rec["readme_sha256"] == hashlib.sha256(card.encode()).hexdigest()
    assert rec["url"] == f"{hub.url}/{USER}/tiny"

    # the int8 subfolder loads from a download of the repo (this process was started offline by conftest)
    from huggingface_hub import constants, snapshot_download

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    from transformers import AutoModelForCausalLM

    local = snapshot_download(f"{USER}/tiny", endpoint=hub.url, token=TOKEN, local_dir=tmp_path / "dl",
                              allow_patterns=["int8/*", "*.json", "*.safetensors", "*.jinja"])
    model = AutoModelForCausalLM.from_pretrained(local, subfolder="int8")
    assert model.config.quantization_config.quant_method == "torchao"


def test_repush_is_not_clobbering_and_hub_edits_need_force_or_merge(hub, quantized_copy):
    run, repo_id = quantized_copy, f"{USER}/tiny"
    publish(run, hub.url, "--repo-id", repo_id)
    publish(run, hub.url, "--repo-id", repo_id)  # unchanged README on the Hub: a plain re-push works
    commits = len(hub.repos[repo_id].commits)

    edited = "---\nlicense: mit\ntags:\n- mine\n---\n\n# Written on the Hub\n\nKeep this text.\n"
    hub.edit_file(repo_id, "README.md", edited.encode())
    proc = publish(run, hub.url, "--repo-id", repo_id, check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "edited on the Hub" in proc.stderr and "--force" in proc.stderr and "--merge-metadata" in proc.stderr
    assert hub.file(repo_id, "README.md").decode() == edited
    assert len(hub.repos[repo_id].commits) == commits + 1  # only the Hub edit

    proc = publish(run, hub.url, "--repo-id", repo_id, "--merge-metadata")
    merged = hub.file(repo_id, "README.md").decode()
    assert "Keep this text." in merged and "# Written on the Hub" in merged
    from huggingface_hub import ModelCard

    meta = ModelCard(merged).data.to_dict()
    assert meta["license"] == "apache-2.0"  # smolforge's key wins (metadata_update overwrite rules)
    assert meta["model-index"][0]["results"][0]["metrics"][0]["value"] == float(f"{_results(run)['eval_loss']:.4g}")
    assert _results(run)["publish"]["readme_sha256"] == hashlib.sha256(merged.encode()).hexdigest()

    hub.edit_file(repo_id, "README.md", edited.encode())
    publish(run, hub.url, "--repo-id", repo_id, "--force")
    assert hub.file(repo_id, "README.md").decode() == (run / "model" / "README.md").read_text()


def test_public_flag_and_existing_visibility_is_kept(hub, quantized_copy):
    publish(quantized_copy, hub.url, "--repo-id", f"{USER}/pub", "--public")
    assert hub.repos[f"{USER}/pub"].private is False
    proc = publish(quantized_copy, hub.url, "--repo-id", f"{USER}/pub", "--private")
    assert hub.repos[f"{USER}/pub"].private is False
    assert "does not change the visibility" in proc.stdout
    assert _results(quantized_copy)["publish"]["private"] is False


def test_transient_errors_are_retried(hub, quantized_copy):
    hub.fail_next = [503, 502]
    proc = publish(quantized_copy, hub.url, "--repo-id", f"{USER}/retry")
    assert proc.stdout.count("retrying in") == 2 and "HTTP 503" in proc.stdout
    assert f"{USER}/retry" in hub.repos and hub.repos[f"{USER}/retry"].files


def test_server_down_then_up_succeeds(quantized_copy):
    port = free_port()
    server = HubServer(token=TOKEN, user=USER, port=port)
    timer = threading.Timer(1.5, server.start)
    timer.start()
    try:
        proc = publish(quantized_copy, f"http://127.0.0.1:{port}", "--repo-id", f"{USER}/late",
                       env=hub_env(SMOLFORGE_PUBLISH_RETRY_DELAY="0.5"))
        assert "Connection refused" in proc.stdout and "retrying in" in proc.stdout
        assert server.repos[f"{USER}/late"].files
    finally:
        timer.join()
        server.stop()


def test_final_failure_keeps_everything_and_prints_the_exact_retry_command(quantized_copy):
    run = quantized_copy
    before = _tree(run)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = publish(run, url, "--repo-id", f"{USER}/later", "--retries", "1", check=False)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "could not be reached after 2 attempts" in proc.stderr
    after = _tree(run)
    assert after.pop("logs/publish.log") and after == before  # only the failure was logged; nothing else changed
    assert "Connection refused" in (run / "logs" / "publish.log").read_text()
    command = proc.stderr.split("Retry with: ", 1)[1].strip()
    assert command == f"smolforge publish {run} --repo-id {USER}/later --private --endpoint {url}"
    with HubServer(token=TOKEN, user=USER, port=port) as server:  # the printed command works once it is back
        retry = run_cli(*shlex.split(command)[1:], cwd=run.parent, env=hub_env())
        assert "Published:" in retry.stdout and server.repos[f"{USER}/later"].files


def test_card_rejected_by_the_hub_stops_before_creating(hub, quantized_copy):
    hub.reject_yaml = '"license" must be one of [apache-2.0, mit, ...]'
    proc = publish(quantized_copy, hub.url, "--repo-id", f"{USER}/bad", check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "rejected the model card" in proc.stderr and '"license" must be one of' in proc.stderr
    assert hub.repos == {}


def test_bad_token_is_one_paragraph_and_masked(hub, quantized_copy):
    hub.echo_auth = True  # a server that quotes the header back: the message must not show the token
    wrong = "hf_WrongTokenWrongToken123456"
    proc = publish(quantized_copy, hub.url, "--repo-id", f"{USER}/x", env=hub_env(HF_TOKEN=wrong), check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "401" in proc.stderr and "HF_TOKEN" in proc.stderr and "--token-file" in proc.stderr
    assert wrong not in proc.stderr + proc.stdout
    assert hub.repos == {}


def test_token_on_the_command_line_is_refused(quantized_copy):
    proc = run_cli("publish", str(quantized_copy), "--repo-id", f"{USER}/x", "--token", TOKEN,
                   cwd=quantized_copy.parent, check=False)
    assert proc.returncode == 2 and "not accepted on the command line" in proc.stderr
    assert TOKEN not in proc.stderr + proc.stdout


def test_no_token_names_the_fix(quantized_copy):
    proc = run_cli("publish", str(quantized_copy), "--repo-id", f"{USER}/x", cwd=quantized_copy.parent,
                   env={"HF_HUB_OFFLINE": "0"}, check=False)
    assert proc.returncode == 2 and "HF_TOKEN" in proc.stderr and "--token-file" in proc.stderr


def test_token_file_and_quantized_variants_as_separate_repos(hub, quantized_copy, tmp_path):
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    env = {k: v for k, v in hub_env().items() if k != "HF_TOKEN"}
    publish(quantized_copy, hub.url, "--repo-id", f"{USER}/sep", "--quantized-as", "repos",
            "--token-file", str(token_file), env=env)
    main, variant = hub.repos[f"{USER}/sep"], hub.repos[f"{USER}/sep-int8"]
    assert not any(f.startswith("int8/") for f in main.files)
    assert set(variant.files) == {p.name for p in (quantized_copy / "quantized" / "int8").iterdir()} | {"README.md"}
    from huggingface_hub import ModelCard

    vcard = ModelCard(variant.files["README.md"].data.decode())
    assert vcard.data.base_model == f"{USER}/sep" and vcard.data.base_model_relation == "quantized"
    q = _results(quantized_copy)["quantized"]["int8"]
    assert vcard.data.eval_results[0].metric_value == float(f"{q['eval_loss']:.4g}")
    assert f"| Validation loss | {q['reference']['eval_loss']:.4f} | {q['eval_loss']:.4f} |" in vcard.text
    main_card = main.files["README.md"].data.decode()
    assert f'from_pretrained("{USER}/sep-int8")' in main_card and "subfolder=" not in main_card
    rec = _results(quantized_copy)["publish"]
    assert rec["quantized_repos"]["int8"]["commit"] == variant.sha


def test_export_writes_the_same_folder_offline(quantized_copy, tmp_path):
    dest = tmp_path / "export"
    before = _tree(quantized_copy)
    run_cli("publish", str(quantized_copy), "--export", str(dest), "--repo-id", f"{USER}/tiny",
            cwd=quantized_copy.parent)  # HF_HUB_OFFLINE=1 and no token, from conftest
    files = set(_tree(dest))
    run = quantized_copy
    evaluation = {f"evaluation/{p.relative_to(run / 'evaluation')}" for p in (run / "evaluation").rglob("*")
                  if p.is_file()}
    assert files == {p.name for p in (run / "model").iterdir()} | evaluation | \
        {f"int8/{p.name}" for p in (run / "quantized" / "int8").iterdir()} | \
        {"results.json", "manifest.json", "config.yaml"}
    assert 'subfolder="int8"' in (dest / "README.md").read_text()
    assert _tree(quantized_copy) == before  # exporting changes nothing in the run
    again = run_cli("publish", str(quantized_copy), "--export", str(dest), cwd=quantized_copy.parent, check=False)
    assert again.returncode == 2 and "not empty" in again.stderr


def test_bad_endpoint_and_conflicting_flags(quantized_copy):
    proc = publish(quantized_copy, "ftp://example", "--repo-id", f"{USER}/x", check=False)
    assert proc.returncode == 2 and "--endpoint" in proc.stderr
    proc = run_cli("publish", str(quantized_copy), "--repo-id", f"{USER}/x", "--force", "--merge-metadata",
                   cwd=quantized_copy.parent, check=False)
    assert proc.returncode == 2 and "Choose one" in proc.stderr
    proc = run_cli("publish", str(quantized_copy), "--repo-id", "not a repo", cwd=quantized_copy.parent,
                   check=False)
    assert proc.returncode == 2 and "--repo-id" in proc.stderr



def test_a_hub_compatible_server_without_xet_gets_plain_lfs_uploads(hub, quantized_copy):
    """Without HF_HUB_DISABLE_XET, a push to another endpoint must not ask it for Xet (it would 404)."""
    env = {k: v for k, v in hub_env().items() if k != "HF_HUB_DISABLE_XET"}
    big = quantized_copy / "model" / "extra_weights.bin"
    big.write_bytes(os.urandom(11 * 1024 * 1024))
    proc = publish(quantized_copy, hub.url, "--repo-id", f"{USER}/plain", env=env)
    assert "Published:" in proc.stdout
    assert not [r.path for r in hub.requests if "xet-" in r.path]  # e.g. /api/models/.../xet-write-token
    assert hub.repos[f"{USER}/plain"].files["extra_weights.bin"].lfs
