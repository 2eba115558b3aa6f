"""Every failure is clean: through the real console script, exit code 2 (or the documented one), one
paragraph naming the field or file and the fix, no traceback, and nothing written or changed."""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

import pytest

from tests.conftest import FAST_TINY, run_cli

COMMANDS_WITH_A_RUN_DIR = ["card", "dashboard", "demo", "quantize", "publish"]


def _tree(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def _clean_error(proc, code: int = 2) -> str:
    assert proc.returncode == code, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr and "Traceback" not in proc.stdout
    return " ".join(proc.stderr.split())


# ---------------------------------------------------------------- usage errors

def test_bare_smolforge_shows_the_help(tmp_path):
    proc = run_cli(cwd=tmp_path, check=False)
    assert proc.returncode == 0 and "Usage: smolforge" in proc.stdout and "Commands" in proc.stdout
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("args,message", [
    (["runn"], "No such command 'runn'"),
    (["run", "--nosuch"], "No such option: --nosuch"),
    (["init", "--nosuch"], "No such option: --nosuch"),
    (["publish", "x", "--retries", "-1"], "Invalid value for '--retries'"),
    (["dashboard", "x", "--port", "abc"], "Invalid value for '--port'"),
    (["demo", "x", "--temperature", "hot"], "Invalid value for '--temperature'"),
    (["demo", "x", "--port", "99999"], "Invalid value for '--port'"),
    (["doctor", "--nosuch"], "No such option: --nosuch"),
    (["presets", "extra"], "Got unexpected extra argument"),
    *[([cmd], "Missing argument 'RUN_DIR'") for cmd in COMMANDS_WITH_A_RUN_DIR],
    *[([cmd, "x", "--nosuch"], "No such option: --nosuch") for cmd in COMMANDS_WITH_A_RUN_DIR],
])
def test_usage_errors_print_clicks_usage_and_exit_2(tmp_path, args, message):
    proc = run_cli(*args, cwd=tmp_path, check=False)
    err = _clean_error(proc)
    assert "Usage: smolforge" in err and f"Error: {message}" in err, err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("args,message,hint", [
    (["init", "--yes", "--epochs", "abc"], "--epochs: training.epochs: Input should be a valid number",
     "Fix the flag"),
    (["init", "--yes", "--epochs", "-1"], "--epochs: training.epochs: Input should be greater than 0", "Fix the flag"),
    (["run", "--preset", "tiny", "--yes", "--batch-size", "0"], "--batch-size: training.batch_size", "Fix the flag"),
    (["run", "--preset", "tiny", "--yes", "--max-length", "99999999999"], "training.max_length: Input should be less",
     "Fix the flag"),
    (["run", "--preset", "tiny", "--yes", "--set", "quantize=int8"], "quantize: a list is expected", "[int8]"),
    (["run", "--preset", "tiny", "--yes", "--tag", "two words"], "each tag is one word", "Fix the flag"),
    (["run", "--preset", "tiny", "--yes", "--set", "evaluation.tasks=[held-out]"],
     "`held-out` scores a GRPO run's held-out prompts against their answers; this run's training.method is 'sft'",
     "Remove it"),
    (["card", "x", "--tag", "two words"], "each tag is one word", "smolforge card --help"),
])
def test_bad_flag_values_name_the_flag_the_setting_and_the_fix(tmp_path, args, message, hint):
    err = _clean_error(run_cli(*args, cwd=tmp_path, check=False, input=""))
    assert message in err and hint in err, err
    assert "1 problem in" in err and "has 1 problem" not in err and "YAML file" not in err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("model,message", [
    ("./missing-model", "model.name_or_path: ./missing-model does not exist."),
    ("not a model", "model.name_or_path: 'not a model' is not an existing local path"),
])
def test_a_base_model_that_cannot_exist_fails_before_the_hub_is_asked(tmp_path, model, message):
    proc = run_cli("run", "--preset", "tiny", "--yes", "--base-model", model, cwd=tmp_path, check=False)
    err = _clean_error(proc)
    assert message in err and "Give a local model folder, `tiny`, or a Hub model id" in err, err
    assert "not reachable" not in proc.stdout + err and list(tmp_path.iterdir()) == []
    err = _clean_error(run_cli("init", "--yes", "--base-model", model, cwd=tmp_path, check=False))
    assert message.replace("model.name_or_path", "--base-model") in err and list(tmp_path.iterdir()) == []


def test_a_dataset_name_that_cannot_exist_fails_before_the_hub_is_asked(tmp_path):
    proc = run_cli("run", "--preset", "tiny", "--yes", "--dataset", "not a dataset", cwd=tmp_path, check=False)
    err = _clean_error(proc)
    assert "data.name: 'not a dataset' is not an existing local path, and as a Hub dataset id it must be name or " \
           "owner/name" in err, err
    assert "not reachable" not in proc.stdout + err and list(tmp_path.iterdir()) == []


def test_an_output_dir_that_cannot_be_made_fails_before_anything_is_written(tmp_path):
    (tmp_path / "afile").write_text("x")
    before = _tree(tmp_path)
    for out, why in [("afile/run", "afile is a file, not a folder"), ("afile", "afile is a file")]:
        err = _clean_error(run_cli("run", "--preset", "tiny", "--yes", "--output-dir", out, cwd=tmp_path, check=False))
        assert f"output_dir: the run folder {out} cannot be created here:" in err and why in err, err
        assert "--output-dir" in err and _tree(tmp_path) == before


@pytest.mark.parametrize("template,message", [
    ("missing.md", "--template: cannot read"),
    ("{{ autor_name }}", "uses unknown variables: autor_name (did you mean author_name"),
    ("{% if %}", "line 1: Expected an expression"),
])
def test_a_card_template_that_cannot_render_fails_before_training(tmp_path, template, message):
    path = tmp_path / "card.md"
    if template != "missing.md":
        path.write_text(template)
    proc = run_cli("run", "--preset", "tiny", "--yes", "--experiment-name", "t", "--template", str(path),
                   cwd=tmp_path, check=False)
    err = _clean_error(proc)
    assert message in err and "step " not in proc.stdout, (err, proc.stdout)
    assert not (tmp_path / "runs").exists()


def test_a_key_written_twice_in_the_yaml_is_an_error(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("preset: tiny\ntraining:\n  epochs: 2\n  epochs: 3\n")
    err = _clean_error(run_cli("run", str(cfg), "--yes", cwd=tmp_path, check=False))
    assert "c.yaml is not valid YAML at line 4" in err and "key 'epochs' appears twice (lines 3 and 4)" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.yaml"]


@pytest.mark.slow
def test_max_length_beyond_the_models_positions_fails_before_the_run_folder(tmp_path):
    err = _clean_error(run_cli("run", "--preset", "tiny", "--yes", *FAST_TINY, "--max-length", "4096", cwd=tmp_path,
                               check=False))
    assert "training.max_length: 4,096 tokens is longer than the tiny model takes" in err
    assert "model.tiny.max_position_embeddings 2,048" in err and "--set training.max_length=2048" in err
    assert not (tmp_path / "runs").exists()


@pytest.mark.slow
def test_liger_kernel_on_a_cpu_fails_before_the_run_folder(tmp_path):
    err = _clean_error(run_cli("run", "--preset", "tiny", "--yes", *FAST_TINY, "--set", "training.liger_kernel=true",
                               cwd=tmp_path, check=False))
    assert "training.liger_kernel: true needs a CUDA GPU" in err and "--set training.liger_kernel=auto" in err
    assert not (tmp_path / "runs").exists()


# ---------------------------------------------------------------- nothing half-written, nothing changed

@pytest.mark.slow
def test_an_error_after_the_folder_exists_leaves_no_folder_behind(tmp_path):
    err = _clean_error(run_cli("run", "--preset", "tiny", "--yes", *FAST_TINY, "--experiment-name", "lora",
                               "--finetune", "lora", "--set", "training.lora.target_modules=[nope_proj]",
                               cwd=tmp_path, check=False))
    assert "training.lora.target_modules: 'nope_proj' matches no linear layer" in err
    assert not (tmp_path / "runs" / "lora").exists()  # the next run starts clean


@pytest.mark.slow
def test_resume_of_a_finished_run_changes_nothing(run_copy, tmp_path):
    before = _tree(run_copy)
    err = _clean_error(run_cli("run", str(run_copy), "--resume", "--yes", cwd=tmp_path, check=False))
    assert "is already finished (step 24/24); nothing to resume" in err
    assert _tree(run_copy) == before


@pytest.mark.slow
def test_resume_refuses_settings_that_would_change_the_run_and_names_them(run_copy, tmp_path):
    (run_copy / "results.json").unlink()  # an unfinished run
    before = _tree(run_copy)
    err = _clean_error(run_cli("run", str(run_copy), "--resume", "--yes", "--set", "training.learning_rate=1",
                               "--max-steps", "99", cwd=tmp_path, check=False))
    assert "training.learning_rate, training.max_steps cannot change now" in err and "card and publish" in err
    assert _tree(run_copy) == before


def test_card_template_that_renders_too_much_is_refused(run_copy, tmp_path):
    tpl = tmp_path / "huge.md"
    tpl.write_text("{% for i in range(3000) %}{% for j in range(100) %}0123456789{% endfor %}{% endfor %}")
    before = _tree(run_copy)
    err = _clean_error(run_cli("card", str(run_copy), "--template", str(tpl), cwd=tmp_path, check=False))
    assert "rendered 3.0 MB of text; a model card is capped at 2 MB" in err and "Nothing was written" in err
    assert _tree(run_copy) == before


def test_files_smolforge_writes_get_the_umask_permissions(tiny_run):
    umask = os.umask(0)
    os.umask(umask)
    for name in ("config.yaml", "results.json", "model/README.md", "model/model.safetensors"):
        assert (tiny_run / name).stat().st_mode & 0o777 == 0o666 & ~umask, name


# ---------------------------------------------------------------- offline and the Hub

@pytest.mark.slow
def test_an_unreachable_hub_fails_fast_without_the_offline_variable(tmp_path):
    import socket

    with socket.socket() as s:  # a port nothing listens on: connections are refused at once
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    env = {"HF_HUB_OFFLINE": "", "HF_DATASETS_OFFLINE": "", "TRANSFORMERS_OFFLINE": "",
           "HF_ENDPOINT": f"http://127.0.0.1:{closed}"}
    t0 = time.monotonic()
    proc = run_cli("run", "--preset", "tiny", "--yes", *FAST_TINY, "--base-model", "nobody-smolforge/no-model",
                   "--license", "mit", cwd=tmp_path, env=env, check=False)
    elapsed = time.monotonic() - t0
    err = _clean_error(proc)
    assert "is not reachable: working offline" in proc.stdout
    assert "model.name_or_path: cannot load a tokenizer from 'nobody-smolforge/no-model'" in err
    assert elapsed < 60, elapsed  # without the check: minutes of "Retrying in 8s" first
    assert "Retrying" not in proc.stderr and not (tmp_path / "runs").exists()


# ---------------------------------------------------------------- output a person can read

def test_presets_never_cut_a_name_at_80_columns(tmp_path):
    from smolforge import presets

    proc = run_cli("presets", cwd=tmp_path, env={"COLUMNS": "80"})
    table = proc.stdout.split("All presets:")[0]
    for name in presets.names():
        assert name in table, name
    assert "All presets: model = " not in proc.stdout  # the model differs between presets: it stays a column


def test_the_run_console_is_plain_text_once_per_eval(tiny_run):
    out = (tiny_run.parent.parent / "stdout.txt").read_text()
    assert "\x1b[" not in out  # not a terminal: no colour codes, from smolforge or trackio
    assert "Uploading logs" not in out and "Trackio" not in out
    evals = [line for line in out.splitlines() if "eval_loss" in line]
    steps = [line.split()[1] for line in evals]
    assert len(steps) == len(set(steps)), evals  # the final evaluation is printed once
    results = json.loads((tiny_run / "results.json").read_text())
    assert f"Run folder: {tiny_run.relative_to(tiny_run.parent.parent)}" in out.splitlines()
    assert len(results["eval_history"]) == len({e["step"] for e in results["eval_history"]})
