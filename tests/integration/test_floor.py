"""The card's install line is true: in a fresh environment with exactly the oldest transformers the card names,
a run's saved files (tokenizer, model, and a LoRA adapter through PEFT's own loader) load and generate the same
greedy tokens as with the transformers smolforge trained with. Needs the package registry (a lane of its own:
`make test-all`)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from smolforge.card.facts import ADAPTER_FLOOR, SAVED_FLOOR
from tests.conftest import FAST_TINY, run_cli

pytestmark = [pytest.mark.slow, pytest.mark.floor]
PROBE = Path(__file__).resolve().parents[1] / "tools" / "floor_probe.py"
PEFT = "peft==0.21.2"  # the project's pin


def _venv(root: Path, transformers: str) -> Path:
    """A new environment: torch 2.13.0 (the CPU build) first, then exactly `transformers`, PEFT and what they need."""
    subprocess.run([sys.executable, "-m", "venv", str(root)], check=True)
    pip = [str(root / "bin" / "python"), "-m", "pip", "install", "--quiet"]
    subprocess.run([*pip, "torch==2.13.0"], check=True)
    subprocess.run([*pip, f"transformers=={transformers}", PEFT, "sentencepiece", "protobuf", "torch==2.13.0"],
                   check=True)
    listed = subprocess.run([str(root / "bin" / "python"), "-m", "pip", "list"], capture_output=True, text=True)
    assert "nvidia" not in listed.stdout.lower()
    return root / "bin" / "python"


def _probe(python: Path | str, folder: Path, *flags: str) -> dict:
    proc = subprocess.run([str(python), str(PROBE), str(folder), *flags], capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout)


def _release(floor: str) -> str:
    return floor if floor.count(".") == 2 else f"{floor}.0"  # ">=5.3" is first true of 5.3.0


@pytest.mark.parametrize("kind", ["model", "adapter"])
def test_the_oldest_transformers_the_card_names_gives_the_same_tokens(tiny_run, tmp_path, kind):
    floor = SAVED_FLOOR if kind == "model" else ADAPTER_FLOOR
    if kind == "model":
        folder, flags = tiny_run / "model", ()
    else:  # a LoRA adapter over the shared run's model, as PEFT's loader reads it
        run_cli("run", "--preset", "tiny", "--yes", "--experiment-name", "lora", *FAST_TINY, "--set",
                f"model.name_or_path={tiny_run / 'model'}", "--set", "training.finetune=lora", "--set",
                "training.lora.merge=false", "--set", "training.max_steps=12", "--set", "tracking.backend=none",
                "--set", "training.learning_rate=1e-2", cwd=tmp_path)
        folder, flags = tmp_path / "runs" / "lora" / "model", ("--adapter",)
    card = (folder / "README.md").read_text(encoding="utf-8")
    assert f'pip install "transformers>={floor}" torch' in card  # the line this test makes true
    now = _probe(sys.executable, folder, *flags)
    assert any(c["new"] for c in now["chats"])
    then = _probe(_venv(tmp_path / f"venv-{floor}", _release(floor)), folder, *flags)
    assert then == now
