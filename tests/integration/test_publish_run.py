"""`smolforge run` with quantization and a repo id: publishes at the end, never leaks the token, and an
unreachable Hub does not fail the run."""

from __future__ import annotations

import json
import os
import shlex
from pathlib import Path

import pytest

from tests.conftest import FAST_TINY, SHORT_RUN, run_cli
from tests.hubserver import HubServer
from tests.servers import free_port

# Not shaped like an HF token, so only smolforge's registration of the secret can mask it (not the hf_ pattern).
LEAK_TOKEN = "leakprobe-Zq7Xw3Kp9Lm2Rt8Vy4"

# Records the argv of the process itself and of every program it starts (the environment is not recorded:
# that is where a token may travel). Patching the few spawn primitives instead of an audit hook keeps the
# run fast: an audit hook is called for every import and open.
ARGV_HOOK = '''
import json, os, sys
import _posixsubprocess
_log = os.environ.get("SMOLFORGE_TEST_ARGV_LOG")
def _write(kind, argv):
    with open(_log, "a", encoding="utf-8") as f:
        argv = [a.decode(errors="replace") if isinstance(a, bytes) else str(a) for a in argv]
        f.write(json.dumps({"pid": os.getpid(), "kind": kind, "argv": argv}) + "\\n")
def _wrap(owner, name, pick):
    original = getattr(owner, name)
    def wrapper(*args, **kwargs):
        _write(name, pick(args))
        return original(*args, **kwargs)
    setattr(owner, name, wrapper)
if _log:
    _write("start", sys.orig_argv)
    _wrap(_posixsubprocess, "fork_exec", lambda a: a[0] or [])  # subprocess and multiprocessing
    import subprocess
    subprocess._fork_exec = _posixsubprocess.fork_exec  # it keeps its own reference
    for _name in ("execv", "execve", "execvp", "execvpe", "posix_spawn", "posix_spawnp"):
        _wrap(os, _name, lambda a: a[1])
    _wrap(os, "system", lambda a: [a[0]])
'''


def _all_bytes(root: Path) -> list[tuple[Path, bytes]]:
    return [(p, p.read_bytes()) for p in root.rglob("*") if p.is_file()] if root.exists() else []


@pytest.mark.slow
def test_run_quantizes_publishes_and_the_token_appears_nowhere(tmp_path):
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(ARGV_HOOK)
    argv_log = tmp_path / "argv.jsonl"
    env = {"HF_TOKEN": LEAK_TOKEN, "HF_HUB_OFFLINE": "0", "HF_HUB_DISABLE_XET": "1", "PYTHONPATH": str(hook),
           "SMOLFORGE_TEST_ARGV_LOG": str(argv_log)}
    with HubServer(token=LEAK_TOKEN, user="alice") as hub:
        hub.echo_auth = True
        proc = run_cli("run", "--preset", "tiny", "--yes", "--experiment-name", "leak", *FAST_TINY, *SHORT_RUN,
                       "--set", "quantize=[int8]", "--repo-id", "alice/leak", "--set", f"publish.endpoint={hub.url}",
                       "--set", "publish.demo_space=alice/leak-demo", cwd=tmp_path, env=env)
    run = tmp_path / "runs" / "leak"
    assert "Published:" in proc.stdout
    repo = hub.repos["alice/leak"]
    assert repo.private and "int8/model.safetensors" in repo.files and "README.md" in repo.files
    # publish.demo_space: a private gradio Space that loads the published model
    assert "Demo Space:" in proc.stdout and json.loads((run / "results.json").read_text())["demo"]["private"]
    space = hub.repos["spaces/alice/leak-demo"]
    assert space.private and {"app.py", "README.md", "requirements.txt", "demo_config.json"} <= set(space.files)
    assert json.loads(space.files["demo_config.json"].data)["model_id"] == "alice/leak"
    assert b"sdk: gradio" in space.files["README.md"].data
    for path, data in space.files.items():
        assert LEAK_TOKEN.encode() not in data.data, path

    # numbers in the published card equal results.json
    results = json.loads((run / "results.json").read_text())
    q = results["quantized"]["int8"]
    card = repo.files["README.md"].data.decode()
    assert f"| {q['eval_loss']:.4f} | {q['perplexity']:.2f} |" in card
    assert f"| Validation loss | {results['eval_loss']:.4f} |" in card
    assert results["publish"]["commit"] == repo.sha

    # the token reached the server only as the Authorization header...
    auth = {v for r in hub.requests for k, v in r.headers.items() if k.lower() == "authorization"}
    assert auth == {f"Bearer {LEAK_TOKEN}"}
    secret = LEAK_TOKEN.encode()
    assert secret not in hub.received_bytes()
    for path, data in repo.files.items():
        assert secret not in data.data, path
    # ...and nowhere else: the run folder (logs included), trackio's files, smolforge's cache, the output
    for root in (run, run.with_name("leak-demo"), Path(os.environ["TRACKIO_DIR"]), Path(os.environ["SMOLFORGE_CACHE"])):
        for path, data in _all_bytes(root):
            assert secret not in data, path
    assert LEAK_TOKEN not in proc.stdout + proc.stderr
    # the argv of the smolforge process and of every process it started
    entries = [json.loads(line) for line in argv_log.read_text().splitlines()]
    assert any(e["kind"] == "start" and any("smolforge" in a for a in e["argv"]) for e in entries)
    for e in entries:
        assert not any(LEAK_TOKEN in a for a in e["argv"]), e


@pytest.mark.slow
def test_unreachable_hub_does_not_fail_the_run_and_says_how_to_publish(tmp_path):
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {"HF_TOKEN": "hf_OfflineRunToken123456789", "HF_HUB_OFFLINE": "0", "HF_HUB_DISABLE_XET": "1",
           "SMOLFORGE_PUBLISH_RETRY_DELAY": "0.05"}
    proc = run_cli("run", "--preset", "tiny", "--yes", "--experiment-name", "off", *FAST_TINY, *SHORT_RUN,
                   "--repo-id", "alice/off", "--set", f"publish.endpoint={url}", cwd=tmp_path, env=env, check=False)
    run = tmp_path / "runs" / "off"
    assert proc.returncode == 3, proc.stderr  # trained, not published: its own exit code (README)
    assert "Not published:" in proc.stdout and "Done:" in proc.stdout
    assert "was not published" in proc.stderr and "Traceback" not in proc.stderr
    results = json.loads((run / "results.json").read_text())
    assert "publish" not in results and results["eval_loss"] > 0
    assert (run / "model" / "README.md").exists() and (run / "model" / "model.safetensors").exists()
    command = next(line for line in proc.stdout.splitlines() if "Retry with: " in line).split("Retry with: ")[1]
    assert command == f"smolforge publish runs/off --repo-id alice/off --private --endpoint {url}"
    with HubServer(token=env["HF_TOKEN"], user="alice", port=port) as hub:
        run_cli(*shlex.split(command)[1:], cwd=tmp_path, env=env)
        assert hub.repos["alice/off"].files["README.md"].data == (run / "model" / "README.md").read_bytes()


def test_run_with_repo_id_but_no_token_fails_before_training(tmp_path):
    proc = run_cli("run", "--preset", "tiny", "--yes", *FAST_TINY, "--repo-id", "alice/x", cwd=tmp_path,
                   env={"HF_HUB_OFFLINE": "0"}, check=False)
    assert proc.returncode == 2 and "no Hugging Face token" in proc.stderr and "--token-file" in proc.stderr
    assert not (tmp_path / "runs").exists()
