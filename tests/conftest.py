"""Shared test set-up: an isolated, offline environment and the real `smolforge` entry point.

Every test runs with HF_HOME, the smolforge cache and TRACKIO_DIR in temporary folders, no HF
token, and the Hub marked offline, so nothing can touch the network or the developer's files.
Tiny models are built once per session (they are cached by spec in SMOLFORGE_CACHE).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

# A tiny SmolLM3 small enough that a few dozen real training steps take seconds.
FAST_TINY = [
    "--set", "model.tiny.hidden_size=64", "--set", "model.tiny.intermediate_size=128",
    "--set", "model.tiny.num_layers=2", "--set", "model.tiny.num_heads=2",
    "--set", "model.tiny.num_kv_heads=1", "--set", "model.tiny.vocab_size=512",
    "--set", "evaluation.tasks=[]",  # the benchmark stage has its own tests (and the shared tiny run below)
]
# The shared run also compares base and fine-tune on a few items of the bundled suite.
EVAL_FEW = ["--set", "evaluation.tasks=[builtin]", "--set", "evaluation.limit=6", "--set", "evaluation.samples=3",
            "--set", "evaluation.retention_prompts=2", "--set", "evaluation.max_gen_tokens=16"]
SHORT_RUN = [
    "--set", "training.max_steps=24", "--set", "training.eval_steps=8", "--set", "training.save_steps=12",
    "--set", "training.logging_steps=4", "--set", "training.learning_rate=3e-3",
]
SMOLFORGE = str(Path(sys.executable).with_name("smolforge"))


# Fixtures that train a model: a test that uses one is in the slow lane (`make test-fast` leaves it out).
TRAINING_FIXTURES = {"tiny_run", "run_copy", "quantized_tiny_run", "quantized_copy"}


def pytest_collection_modifyitems(items):
    for item in items:
        if TRAINING_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session", autouse=True)
def isolated_env(tmp_path_factory):
    root = tmp_path_factory.mktemp("env")
    saved = dict(os.environ)
    for key in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_ENDPOINT", "WANDB_API_KEY"):
        os.environ.pop(key, None)
    os.environ.update({
        "HF_HOME": str(root / "hf"),
        "SMOLFORGE_CACHE": str(root / "smolforge-cache"),
        "TRACKIO_DIR": str(root / "trackio"),
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "HF_HUB_DISABLE_PROGRESS_BARS": "1",
        "TORCHAO_FORCE_SKIP_LOADING_SO_FILES": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "COLUMNS": "120",
    })
    yield root
    os.environ.clear()
    os.environ.update(saved)


def run_cli(*args: str, cwd: Path | str, env: dict | None = None, check: bool = True,
            timeout: float = 600, input: str | None = None) -> subprocess.CompletedProcess:
    """Run the installed `smolforge` console script, as a user would."""
    proc = subprocess.run([SMOLFORGE, *args], cwd=cwd, env={**os.environ, **(env or {})}, capture_output=True,
                          text=True, timeout=timeout, input=input)
    if check and proc.returncode != 0:
        raise AssertionError(f"smolforge {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> Path:
    """One real tiny SFT run through the CLI, shared by tests that only read its run folder."""
    work = tmp_path_factory.mktemp("tiny-run")
    proc = run_cli("run", "--preset", "tiny", "--yes", "--experiment-name", "shared", *FAST_TINY, *SHORT_RUN,
                   *EVAL_FEW, cwd=work)
    (work / "stdout.txt").write_text(proc.stdout)  # what the user saw, for tests of the console output
    return work / "runs" / "shared"


@pytest.fixture
def run_copy(tiny_run, tmp_path) -> Path:
    """A private copy of the shared run folder (without checkpoints) for tests that modify it."""
    import shutil

    dest = tmp_path / "run"
    shutil.copytree(tiny_run, dest, ignore=shutil.ignore_patterns("checkpoints"))
    return dest


@pytest.fixture(scope="session")
def quantized_tiny_run(tiny_run, tmp_path_factory) -> Path:
    """A copy of the shared run after `smolforge quantize --method int8 --method int4` (read-only)."""
    import shutil

    dest = tmp_path_factory.mktemp("quantized-run") / "run"
    shutil.copytree(tiny_run, dest, ignore=shutil.ignore_patterns("checkpoints"))
    run_cli("quantize", str(dest), "--method", "int8", "--method", "int4", cwd=dest.parent)
    return dest


@pytest.fixture
def quantized_copy(quantized_tiny_run, tmp_path) -> Path:
    """A private copy of the quantized run for tests that modify it (publish records, cards)."""
    import shutil

    dest = tmp_path / "run"
    shutil.copytree(quantized_tiny_run, dest)
    return dest


def run_main(*args: str, cwd: Path | str) -> int:
    """Run the CLI's real `main()` in this process (libraries are imported once for many runs).

    Used where a test needs many full runs; tests of the console script itself use run_cli.
    """
    import contextlib

    from smolforge.cli import main

    old_argv, old_cwd = sys.argv, os.getcwd()
    sys.argv = ["smolforge", *args]
    try:
        os.chdir(cwd)
        with contextlib.suppress(SystemExit):
            try:
                main()
            except SystemExit as e:
                return int(e.code or 0)
        return 0
    finally:
        sys.argv = old_argv
        os.chdir(old_cwd)
