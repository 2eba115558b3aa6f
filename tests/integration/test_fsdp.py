"""FSDP run, not only configured: two CPU processes (gloo) shard the tiny model with torch's FSDP2 through the
trainer, train like DDP step for step, save sharded checkpoints, gather full weights into model/, and a run
resumed from a sharded checkpoint continues exactly where the uninterrupted one went."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from tests.conftest import FAST_TINY, run_cli

pytestmark = [pytest.mark.slow, pytest.mark.multiproc]

COMMON = ["--preset", "tiny", "--yes", *FAST_TINY, "--set", "training.max_steps=12", "--set",
          "training.save_steps=6", "--set", "training.logging_steps=1", "--set", "data.eval_ratio=0.05", "--set",
          "tracking.backend=none", "--set", "training.batch_size=4", "--nproc", "2"]
NODE_ENV = {"OMP_NUM_THREADS": "1"}  # two processes on this machine's cores
# FSDP reduce-scatters the same per-rank gradients DDP all-reduces; on this CPU the losses came out equal to the
# last digit. The tolerance leaves room for another summation order elsewhere, far below a real difference.
LOSS_TOLERANCE = 1e-5


def step_losses(run: Path) -> dict[int, float]:
    """Per-step training loss from logs/run.log; a step logged twice (a resumed run) keeps its last value."""
    text = (run / "logs" / "run.log").read_text()
    return {int(s): float(v) for s, v in re.findall(r"step (\d+)/\d+ loss=(\S+)", text)}


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> Path:
    work = tmp_path_factory.mktemp("fsdp")
    run_cli("run", *COMMON, "--experiment-name", "ddp", cwd=work, env=NODE_ENV)
    run_cli("run", *COMMON, "--experiment-name", "fsdp", "--set", "training.distributed=fsdp", cwd=work, env=NODE_ENV)
    return work / "runs"


def test_fsdp_on_two_cpu_processes_trains_like_ddp_and_gathers_full_weights(runs):
    import torch
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    ddp, fsdp = step_losses(runs / "ddp"), step_losses(runs / "fsdp")
    assert sorted(ddp) == sorted(fsdp) == list(range(1, 13))
    for step in ddp:
        assert fsdp[step] == pytest.approx(ddp[step], rel=LOSS_TOLERANCE), step

    results = json.loads((runs / "fsdp" / "results.json").read_text())
    assert results["topology"]["distributed"] == "fsdp" and results["topology"]["world_size"] == 2
    assert "- Hardware: 2 processes (FSDP, gloo) on CPU only" in (runs / "fsdp" / "model" / "README.md").read_text()
    # the checkpoint is sharded: one file per rank for the weights and for the optimizer state
    ckpt = runs / "fsdp" / "checkpoints" / "checkpoint-6"
    for part in ("pytorch_model_fsdp_0", "optimizer_0"):
        assert sorted(p.name for p in (ckpt / part).glob("*.distcp")) == ["__0_0.distcp", "__1_0.distcp"]
    assert not list(ckpt.glob("*.safetensors"))

    # model/ holds whole tensors, the same names and shapes as DDP's, close to DDP's values, and loads as usual
    full, reference = (load_file(str(r / "model" / "model.safetensors")) for r in (runs / "fsdp", runs / "ddp"))
    assert sorted(full) == sorted(reference)
    for name, tensor in full.items():
        assert tensor.shape == reference[name].shape, name
        assert torch.allclose(tensor, reference[name], atol=1e-5), name
    model = AutoModelForCausalLM.from_pretrained(str(runs / "fsdp" / "model"))
    assert sum(p.numel() for p in model.parameters()) == results["parameters"]["total"]


def test_a_run_resumed_from_a_sharded_checkpoint_continues_exactly(runs, tmp_path):
    from safetensors.torch import load_file

    resumed = tmp_path / "resumed"
    shutil.copytree(runs / "fsdp", resumed, ignore=shutil.ignore_patterns("checkpoint-12", "model", "results.json"))
    run_cli("run", str(resumed), "--resume", "--yes", cwd=tmp_path, env=NODE_ENV)
    results = json.loads((resumed / "results.json").read_text())
    assert results["resumed_from"] == "checkpoint-6" and results["global_steps"] == 12
    original, again = step_losses(runs / "fsdp"), step_losses(resumed)
    assert {s: again[s] for s in range(7, 13)} == {s: original[s] for s in range(7, 13)}
    before, after = (load_file(str(r / "model" / "model.safetensors")) for r in (runs / "fsdp", resumed))
    assert all(before[name].equal(after[name]) for name in before)
