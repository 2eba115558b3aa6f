"""Stop on a real SIGINT/SIGTERM, resume to the same final step; 2 CPU processes train like 1."""

from __future__ import annotations

import json
import os
import re
import signal
import time
from pathlib import Path

import pytest

from tests.conftest import FAST_TINY, run_cli, start_cli

pytestmark = pytest.mark.slow

TOTAL = 120  # steps of the interrupted runs: far more than the stop needs, so it always lands mid-run
LONG = ["--set", f"training.max_steps={TOTAL}", "--set", "training.save_steps=10", "--set", "training.logging_steps=5",
        "--set", "training.eval_steps=1000", "--set", "data.eval_ratio=0.02"]


def _wait_for_step(log: Path, step: int, proc, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"run ended early: {proc.output()}")
        if log.exists():
            steps = [int(s) for s in re.findall(r"step (\d+)/\d+ loss=", log.read_text())]
            if steps and max(steps) >= step:
                return
        time.sleep(0.2)
    raise AssertionError("training did not reach the step in time")


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_signal_saves_a_checkpoint_and_resume_finishes_the_same_run(tmp_path, sig):
    proc = start_cli("run", "--preset", "tiny", "--yes", "--experiment-name", "stop", *FAST_TINY, *LONG, cwd=tmp_path)
    run = tmp_path / "runs" / "stop"
    _wait_for_step(run / "logs" / "run.log", 25, proc)
    proc.send_signal(sig)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 128 + sig, out
    assert "checkpoint saved" in out and "smolforge run runs/stop --resume" in out
    assert "Traceback" not in out
    ckpts = sorted(int(p.name.split("-")[1]) for p in (run / "checkpoints").iterdir())
    stopped_at = ckpts[-1]
    assert 25 <= stopped_at < TOTAL
    assert not (run / "results.json").exists() and not (run / "model").exists()
    if sig == signal.SIGTERM:  # the same checkpoint as Ctrl-C leaves: resuming it is checked once, below
        return

    run_cli("run", str(run), "--resume", "--yes", cwd=tmp_path)
    results = json.loads((run / "results.json").read_text())
    assert results["global_steps"] == TOTAL
    assert results["resumed_from"] == f"checkpoint-{stopped_at}"
    # the record covers the whole run: both segments, their totals, and the command that started it
    first, second = results["segments"]
    assert (first["from_step"], first["to_step"], second["from_step"], second["to_step"]) == \
        (0, stopped_at, stopped_at, TOTAL)
    assert first["command"].startswith("smolforge run --preset tiny") and second["command"].endswith("--resume --yes")
    assert results["command"] == first["command"]
    assert results["train_runtime_s"] == pytest.approx(first["runtime_s"] + second["runtime_s"])
    for key in ("processed", "real", "supervised"):
        assert results["tokens"][key] == first["tokens"][key] + second["tokens"][key] > second["tokens"][key]
    state = json.loads((run / "checkpoints" / f"checkpoint-{TOTAL}" / "trainer_state.json").read_text())
    assert state["global_step"] == TOTAL and state["max_steps"] == TOTAL
    assert (run / "model" / "model.safetensors").exists()


def test_resume_finds_the_run_of_a_config_file(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("preset: tiny\n")
    proc = start_cli("run", str(cfg), "--yes", *FAST_TINY, *LONG, cwd=tmp_path)
    deadline = time.time() + 60
    while not list((tmp_path / "runs").glob("*/logs/run.log")) and time.time() < deadline:
        time.sleep(0.2)
    (run,) = list((tmp_path / "runs").iterdir())
    _wait_for_step(run / "logs" / "run.log", 15, proc)
    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=120)
    assert proc.returncode == 130
    run_cli("run", str(cfg), "--resume", "--yes", *FAST_TINY, *LONG, cwd=tmp_path)
    assert json.loads((run / "results.json").read_text())["global_steps"] == TOTAL


def test_resume_without_checkpoint_says_why(tmp_path):
    proc = run_cli("run", str(tmp_path / "nope"), "--resume", "--yes", cwd=tmp_path, check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr


def _step_losses(run: Path) -> dict[int, float]:
    text = (run / "logs" / "run.log").read_text()
    return {int(s): float(v) for s, v in re.findall(r"step (\d+)/\d+ loss=(\S+)", text)}


def test_two_cpu_processes_match_one_process_with_the_same_global_batch(tmp_path):
    common = ["--preset", "tiny", "--yes", *FAST_TINY, "--set", "training.max_steps=12", "--set",
              "training.logging_steps=1", "--set", "data.eval_ratio=0.05", "--set", "tracking.backend=none"]
    run_cli("run", *common, "--experiment-name", "one", "--set", "training.batch_size=8", cwd=tmp_path)
    run_cli("run", *common, "--experiment-name", "two", "--set", "training.batch_size=4", "--nproc", "2",
            cwd=tmp_path)
    one, two = _step_losses(tmp_path / "runs" / "one"), _step_losses(tmp_path / "runs" / "two")
    assert sorted(one) == sorted(two) == list(range(1, 13))
    for step in one:
        assert two[step] == pytest.approx(one[step], rel=1e-4, abs=1e-5), step
    r1 = json.loads((tmp_path / "runs" / "one" / "results.json").read_text())
    r2 = json.loads((tmp_path / "runs" / "two" / "results.json").read_text())
    assert r2["runtime"]["world_size"] == 2
    assert r2["tokens"]["supervised"] == r1["tokens"]["supervised"]
    # evaluate() averages per-batch mean losses, and the eval batches differ (8 rows vs 2 ranks x 4 rows),
    # so eval loss matches only approximately; the training losses above match step for step.
    assert r2["eval_loss"] == pytest.approx(r1["eval_loss"], rel=1e-2)
    assert (tmp_path / "runs" / "two" / "logs" / "rank1.log").exists()


def _trackio_steps(run_name: str) -> list[int]:
    """The trainer steps of the training-loss points trackio holds for a run."""
    import sqlite3

    db = Path(os.environ["TRACKIO_DIR"]) / f"{run_name}.db"
    if not db.exists():
        return []
    with sqlite3.connect(db) as conn:
        try:
            rows = [json.loads(m) for (m,) in conn.execute("select metrics from metrics where run_name = ?",
                                                             (run_name,))]
        except sqlite3.OperationalError:  # trackio created the file but not yet its tables: no points yet
            return []
    return [r["train/global_step"] for r in rows if "train/loss" in r]


@pytest.mark.slow
def test_kill_9_then_resume_continues_from_the_last_complete_checkpoint_without_repeated_points(tmp_path):
    proc = start_cli("run", "--preset", "tiny", "--yes", "--experiment-name", "killed", *FAST_TINY, *LONG,
                     cwd=tmp_path)
    run = tmp_path / "runs" / "killed"
    deadline = time.time() + 180
    while not any(step > 30 for step in _trackio_steps("killed")):  # points after checkpoint-30 reached trackio
        assert proc.poll() is None and time.time() < deadline
        time.sleep(0.2)
    proc.kill()  # SIGKILL: no handler runs, a checkpoint may be half-written
    proc.wait(timeout=30)
    logged_before = _trackio_steps("killed")
    run_cli("run", str(run), "--resume", "--yes", cwd=tmp_path)
    results = json.loads((run / "results.json").read_text())
    resumed = int(results["resumed_from"].split("-")[1])
    assert results["global_steps"] == TOTAL and resumed % 10 == 0 and logged_before
    steps = _trackio_steps("killed")
    assert len(steps) == len(set(steps)), "points between the checkpoint and the kill were logged twice"
    assert set(range(resumed + 5, TOTAL + 1, 5)) <= set(steps)  # the resumed segment logged every step again, once


@pytest.mark.slow
def test_a_full_disk_while_saving_a_checkpoint_is_one_paragraph_and_resume_uses_the_last_complete_one(
        tmp_path, monkeypatch, capsys):
    import torch

    from tests.conftest import run_main

    real_save = torch.save

    def disk_full_at_checkpoint_12(obj, f, *args, **kwargs):
        if str(f).endswith("optimizer.pt") and "checkpoint-12" in str(f):
            Path(f).write_bytes(b"partial")  # what a full disk leaves behind
            raise RuntimeError("[enforce fail at inline_container.cc:664] . unexpected pos 64 vs 0: "
                               "PytorchStreamWriter failed writing file data/0: file write failed")
        return real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", disk_full_at_checkpoint_12)
    args = ["--preset", "tiny", "--yes", "--experiment-name", "full", *FAST_TINY, "--max-steps", "18",
            "--set", "training.save_steps=6", "--set", "training.eval_steps=100", "--tracking", "none"]
    assert run_main("run", *args, cwd=tmp_path) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "No space left on the disk" in err and "while saving checkpoint-12" in err and "--resume" in err
    assert "Traceback" not in err and "enforce fail" not in err
    checkpoints = tmp_path / "runs" / "full" / "checkpoints"
    assert sorted(p.name for p in checkpoints.iterdir()) == ["checkpoint-6"]  # the partial one is gone

    monkeypatch.setattr(torch, "save", real_save)
    assert run_main("run", "runs/full", "--resume", "--yes", cwd=tmp_path) == 0
    results = json.loads((tmp_path / "runs" / "full" / "results.json").read_text())
    assert results["global_steps"] == 18 and results["resumed_from"] == "checkpoint-6"
