"""`smolforge slurm`: the script is valid bash, sets only the #SBATCH options it was given, and runs the same
`smolforge run` on every node with that node's rank (checked with stand-ins for srun, scontrol and smolforge);
bad options and configs stop it before anything is written."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest

from tests.canary import CANARY, assert_written_nowhere
from tests.conftest import run_cli

STAND_INS = Path(__file__).resolve().parents[1] / "fixtures" / "slurm"
# Stands in for smolforge on the "nodes": records the arguments each one got and the SLURM variables it saw.
RECORDER = """#!/usr/bin/env python3
import json, os, sys
with open(os.environ["RECORD"], "a") as f:
    f.write(json.dumps({"argv": sys.argv[1:], "node": os.environ["SLURM_NODEID"]}) + "\\n")
"""
SBATCH = re.compile(r"^#SBATCH (\S+)$", re.M)


def _write(tmp_path: Path, *args: str) -> tuple[Path, str]:
    proc = run_cli("slurm", "--preset", "tiny", *args, "-o", "job.sbatch", cwd=tmp_path)
    return tmp_path / "job.sbatch", proc.stdout


def test_only_the_options_given_become_sbatch_lines_and_the_script_is_valid_bash(tmp_path):
    script, out = _write(tmp_path, "--nodes", "2", "--gpus-per-node", "8", "--set", "experiment_name=mn")
    text = script.read_text()
    assert SBATCH.findall(text) == ["--nodes=2", "--ntasks-per-node=1", "--gpus-per-node=8"]
    subprocess.run(["bash", "-n", str(script)], check=True)
    assert f"Submit it with:  sbatch {script.name}" in out and str(tmp_path / "runs" / "mn") in out

    script, _ = _write(tmp_path, "--nodes", "4", "--gpus-per-node", "8", "--partition", "gpu", "--time",
                       "2-00:00:00", "--account", "proj1", "--cpus-per-node", "64", "--force")
    text = script.read_text()
    assert SBATCH.findall(text) == ["--nodes=4", "--ntasks-per-node=1", "--gpus-per-node=8", "--partition=gpu",
                                    "--time=2-00:00:00", "--account=proj1", "--cpus-per-task=64"]
    assert "srun --nodes=4 --ntasks-per-node=1 --gpus-per-node=8 --cpus-per-task=64" in text
    subprocess.run(["bash", "-n", str(script)], check=True)


def _run_script(script: Path, tmp_path: Path, nodes: int = 2) -> list[dict]:
    recorder = tmp_path / "smolforge-recorder"
    recorder.write_text(RECORDER)
    recorder.chmod(0o755)
    record = tmp_path / "record.jsonl"
    record.unlink(missing_ok=True)
    env = {**os.environ, "PATH": f"{STAND_INS}{os.pathsep}{os.environ['PATH']}", "SMOLFORGE": str(recorder),
           "RECORD": str(record), "SLURM_JOB_ID": "41", "SLURM_JOB_NUM_NODES": str(nodes),
           "SLURM_JOB_NODELIST": f"gpu[01-{nodes:02d}]"}
    subprocess.run(["bash", str(script)], env=env, check=True, cwd=tmp_path)
    return sorted((json.loads(line) for line in record.read_text().splitlines()), key=lambda r: r["node"])


def test_every_node_runs_the_same_command_with_its_own_rank_and_logs_of_its_own(tmp_path):
    (tmp_path / "c.yaml").write_text("preset: tiny\nexperiment_name: mn\n")
    script, _ = _write(tmp_path, "c.yaml", "--nodes", "2", "--gpus-per-node", "1", "--port", "29555",
                       "--set", "card.model_description=It's \"quoted\" $HOME `and` more")
    node0, node1 = _run_script(script, tmp_path)
    run_dir = str(tmp_path / "runs" / "mn")
    for rank, rec in enumerate((node0, node1)):
        argv = rec["argv"]
        assert argv[:2] == ["run", str(tmp_path / "c.yaml")]
        assert "card.model_description=It's \"quoted\" $HOME `and` more" in argv  # passed through untouched
        assert argv[argv.index("--output-dir") + 1] == run_dir
        assert argv[argv.index("--nnodes") + 1] == "2" and argv[argv.index("--nproc") + 1] == "1"
        assert argv[argv.index("--rdzv-endpoint") + 1] == "127.0.0.1:29555"  # the allocation's first node
        assert argv[-2:] == ["--node-rank", str(rank)] and "--resume" not in argv
    assert sorted(p.name for p in (tmp_path / "runs" / "mn" / "logs").iterdir()) == \
        ["slurm-41-node0.out", "slurm-41-node1.out"]

    (tmp_path / "runs" / "mn" / "config.yaml").write_text("")  # an earlier job started the run
    assert all("--resume" in rec["argv"] for rec in _run_script(script, tmp_path))


def test_a_default_experiment_name_is_fixed_in_the_script(tmp_path):
    script, _ = _write(tmp_path, "--nodes", "2", "--gpus-per-node", "1")
    names = {rec["argv"][rec["argv"].index("--experiment-name") + 1] for rec in _run_script(script, tmp_path)}
    (name,) = names
    assert name.startswith("tiny-sft-") and script.read_text().count(name) >= 2


@pytest.mark.parametrize(("args", "message"), [
    (["--nodes", "2", "--gpus-per-node", "1", "--time", "tomorrow"], "--time 'tomorrow' is not a SLURM time limit"),
    (["--nodes", "2", "--gpus-per-node", "1", "--partition", "gpu; rm -rf /"], "is not a SLURM name"),
    (["--nodes", "0", "--gpus-per-node", "1"], "--nodes: training.nnodes: Input should be greater than 0"),
    (["--nodes", "2", "--gpus-per-node", "0"], "--gpus-per-node: training.nproc: Input should be greater than 0"),
    (["--nodes", "3", "--gpus-per-node", "1", "--set", "training.global_batch_size=8"],
     "global_batch_size 8 is not a multiple of batch_size 8 x 3 processes"),
    (["--nodes", "2", "--gpus-per-node", "1", "--set", "training.nnodes=3"],
     "--set training.nnodes: the script sets them itself"),
])
def test_bad_input_is_one_paragraph_and_writes_nothing(tmp_path, args, message):
    proc = run_cli("slurm", "--preset", "tiny", *args, cwd=tmp_path, check=False)
    assert proc.returncode == 2 and message in " ".join(proc.stderr.split()), proc.stderr
    assert "Traceback" not in proc.stderr and not list(tmp_path.iterdir())


def test_an_existing_script_is_kept_without_force(tmp_path):
    (tmp_path / "job.sbatch").write_text("mine")
    proc = run_cli("slurm", "--preset", "tiny", "--nodes", "2", "--gpus-per-node", "1", "-o", "job.sbatch",
                   cwd=tmp_path, check=False)
    assert proc.returncode == 2 and "--force" in proc.stderr
    assert (tmp_path / "job.sbatch").read_text() == "mine"


def test_no_secret_is_written_and_the_gpu_is_checked_against_the_plan(tmp_path):
    proc = run_cli("slurm", "--preset", "tiny", "--nodes", "2", "--gpus-per-node", "1", "--gpu", "l4", "--set",
                   "publish.repo_id=me/tiny", "-o", "job.sbatch", cwd=tmp_path, env={"HF_TOKEN": CANARY})
    assert "Fits: the plan predicts" in proc.stdout and "NVIDIA L4 (24 GB)" in proc.stdout
    assert_written_nowhere(tmp_path, proc.stdout, proc.stderr)

    bad = run_cli("slurm", "--preset", "tiny", "--nodes", "2", "--gpus-per-node", "1", "--gpu", "h1000", "-o",
                  "other.sbatch", cwd=tmp_path, check=False)
    assert bad.returncode == 2 and "--gpu: unknown GPU 'h1000'" in bad.stderr
    assert not (tmp_path / "other.sbatch").exists()
