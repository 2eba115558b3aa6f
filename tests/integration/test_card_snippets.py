"""Every code snippet a card shows runs: the install line names what the snippets import, and each Python
snippet loads the run's model and generates, from the run folder, as a reader would paste it."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from huggingface_hub import ModelCard

pytestmark = pytest.mark.slow

SERVING = ("vllm", "sglang", "openai")  # servers are not installed here; the tiny card never shows them


def snippets(card_text: str, lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", card_text, flags=re.S)


def run_snippet(code: str, cwd: Path) -> str:
    proc = subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"snippet failed:\n{code}\n{proc.stderr[-3000:]}"
    return proc.stdout


def check_card_snippets(run: Path) -> list[str]:
    text = ModelCard.load(run / "model" / "README.md").text
    code = snippets(text, "python")
    assert code, "the card shows no Python snippet"
    assert not any(s in block for block in code for s in SERVING)
    install = snippets(text, "bash")[0]
    imported = {m for block in code for m in re.findall(r"^(?:from|import) (\w+)", block, flags=re.M)}
    for package in imported:
        assert package in install, f"{package} is imported by a snippet but not in the install line {install!r}"
    return [run_snippet(block, run) for block in code]


def test_every_snippet_of_the_tiny_card_runs_from_the_run_folder(tiny_run):
    outputs = check_card_snippets(tiny_run)
    assert len(outputs) >= 2  # the pipeline one-liner and the full snippet


def test_quantized_variant_snippets_run(quantized_tiny_run):
    text = ModelCard.load(quantized_tiny_run / "model" / "README.md").text
    assert 'from_pretrained("quantized/int8")' in text and "torchao" in snippets(text, "bash")[0]
    check_card_snippets(quantized_tiny_run)


def test_saved_model_files_load_anywhere(tiny_run):
    """No local-only loading flag in the tokenizer config, the KV cache on, files and folders shared like the
    user's other files (no owner-only leftovers from temporary folders)."""
    import json
    import os

    tokenizer_config = json.loads((tiny_run / "model" / "tokenizer_config.json").read_text())
    assert not {"is_local", "local_files_only"} & set(tokenizer_config)
    assert json.loads((tiny_run / "model" / "config.json").read_text())["use_cache"] is True
    umask = os.umask(0)
    os.umask(umask)
    for folder in (tiny_run / "model", tiny_run / "evaluation"):
        assert folder.stat().st_mode & 0o777 == 0o777 & ~umask
        for f in folder.rglob("*"):
            assert f.stat().st_mode & 0o777 == (0o777 if f.is_dir() else 0o666) & ~umask, f
