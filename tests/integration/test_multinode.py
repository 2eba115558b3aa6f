"""Several nodes: two `smolforge run` launches on 127.0.0.1 (gloo, one process each) train like two processes
on one node and like one process with the same global batch; SIGTERM to both saves one checkpoint and a
resume of both finishes the run; a rendezvous that cannot be hosted, reached or completed, and a run folder
the nodes do not share, stop every node with one paragraph instead of hanging."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import FAST_TINY, SMOLFORGE, run_cli
from tests.integration.test_publish_run import ARGV_HOOK, LEAK_TOKEN
from tests.servers import free_port

pytestmark = [pytest.mark.slow, pytest.mark.multiproc]

COMMON = ["--preset", "tiny", "--yes", *FAST_TINY, "--set", "training.max_steps=12", "--set",
          "training.logging_steps=1", "--set", "data.eval_ratio=0.05", "--set", "tracking.backend=none"]
PER_NODE_BATCH = ["--set", "training.batch_size=4"]  # x 2 processes = the one-process batch of 8
# Two "nodes" share this machine's cores: one thread per process, or they slow each other down many times over.
NODE_ENV = {"OMP_NUM_THREADS": "1"}


def step_losses(run: Path) -> dict[int, float]:
    text = (run / "logs" / "run.log").read_text()
    return {int(s): float(v) for s, v in re.findall(r"step (\d+)/\d+ loss=(\S+)", text)}


def start_node(cwd: Path, args: list[str], rank: int, port: int, env: dict | None = None) -> subprocess.Popen:
    """`smolforge run ARGS --nnodes 2 --node-rank RANK --rdzv-endpoint 127.0.0.1:PORT`."""
    return subprocess.Popen([SMOLFORGE, "run", *args, "--nnodes", "2", "--node-rank", str(rank), "--rdzv-endpoint",
                             f"127.0.0.1:{port}"], cwd=cwd, env={**os.environ, **NODE_ENV, **(env or {})},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)  # a node's processes are one group, as on its own machine


def start_nodes(cwd: Path, args: list[str], port: int, env: dict | None = None) -> list[subprocess.Popen]:
    return [start_node(cwd, args, rank, port, env) for rank in range(2)]


def finish(procs: list[subprocess.Popen], timeout: float = 300) -> list[tuple[int, str]]:
    """(exit code, output) of each process, once all have ended."""
    outputs = [p.communicate(timeout=timeout)[0] for p in procs]
    return [(p.returncode, out) for p, out in zip(procs, outputs, strict=True)]


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> dict[str, Path]:
    """The same 12 steps on one process (batch 8) and on two processes of one node (batch 4 each)."""
    work = tmp_path_factory.mktemp("reference")
    run_cli("run", *COMMON, "--experiment-name", "one", "--set", "training.batch_size=8", cwd=work)
    run_cli("run", *COMMON, *PER_NODE_BATCH, "--experiment-name", "nproc2", "--nproc", "2", cwd=work, env=NODE_ENV)
    return {"one": work / "runs" / "one", "nproc2": work / "runs" / "nproc2"}


def test_two_nodes_train_like_two_processes_and_like_one_process(tmp_path, reference):
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(ARGV_HOOK)
    argv_log = tmp_path / "argv.jsonl"
    env = {"HF_TOKEN": LEAK_TOKEN, "SMOLFORGE_TEST_ARGV_LOG": str(argv_log),
           "PYTHONPATH": os.pathsep.join(p for p in (str(hook), os.environ.get("PYTHONPATH")) if p)}
    (rc0, out0), (rc1, out1) = finish(start_nodes(tmp_path, [*COMMON, *PER_NODE_BATCH, "--experiment-name", "mn"],
                                                  free_port(), env))
    assert (rc0, rc1) == (0, 0), out0 + out1
    run = tmp_path / "runs" / "mn"
    losses, one, nproc2 = step_losses(run), step_losses(reference["one"]), step_losses(reference["nproc2"])
    assert sorted(losses) == sorted(one) == sorted(nproc2) == list(range(1, 13))
    for step in losses:
        assert losses[step] == pytest.approx(nproc2[step], rel=1e-4, abs=1e-5), step
        assert losses[step] == pytest.approx(one[step], rel=1e-4, abs=1e-5), step

    results = json.loads((run / "results.json").read_text())
    assert results["global_steps"] == 12
    assert {k: results["topology"][k] for k in ("nodes", "processes_per_node", "world_size", "backend")} == \
        {"nodes": 2, "processes_per_node": 1, "world_size": 2, "backend": "gloo"}
    one_results = json.loads((reference["one"] / "results.json").read_text())
    assert results["tokens"]["supervised"] == one_results["tokens"]["supervised"]
    card = (run / "model" / "README.md").read_text()
    assert "- Hardware: 2 nodes × 1 process (DDP, gloo); each node: CPU only" in card
    assert "| Batch size | 4 per device × 1 accumulation step × 2 processes = 8 |" in card
    assert {"run.log", "rank1.log", "node1.log"} <= {p.name for p in (run / "logs").iterdir()}
    assert not list((run / "logs").glob(".shared-check-*"))  # the shared-folder probe is removed
    assert "Node 1 of 2 is done" in out1 and "Done:" in out0

    # the token travelled in the environment only: not in the argv of any process on either node
    entries = [json.loads(line) for line in argv_log.read_text().splitlines()]
    assert sum("smolforge.worker" in " ".join(e["argv"]) for e in entries if e["kind"] == "start") == 2
    for e in entries:
        assert not any(LEAK_TOKEN in a for a in e["argv"]), e
    assert LEAK_TOKEN not in out0 + out1


def _wait_for_step(log: Path, step: int, procs: list[subprocess.Popen], timeout: float = 180) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        assert all(p.poll() is None for p in procs), "a node ended early"
        if log.exists() and max(map(int, re.findall(r"step (\d+)/\d+ loss=", log.read_text())), default=0) >= step:
            return
        time.sleep(0.2)
    raise AssertionError("training did not reach the step in time")


def test_sigterm_to_both_nodes_saves_one_checkpoint_and_resuming_both_finishes_the_run(tmp_path):
    port = free_port()
    args = [*COMMON, *PER_NODE_BATCH, "--experiment-name", "stop", "--set", "training.max_steps=60", "--set",
            "training.save_steps=10", "--set", "training.eval_steps=1000"]
    procs = start_nodes(tmp_path, args, port)
    run = tmp_path / "runs" / "stop"
    _wait_for_step(run / "logs" / "run.log", 15, procs)
    for p in procs:
        p.send_signal(signal.SIGTERM)
    (rc0, out0), (rc1, out1) = finish(procs, timeout=120)
    assert (rc0, rc1) == (143, 143), out0 + out1
    for rank, out in enumerate((out0, out1)):
        assert f"smolforge run runs/stop --resume --nnodes 2 --node-rank {rank} --rdzv-endpoint" in out, out
        assert "Traceback" not in out
    # Where the stop landed is the event to check, not which step it was: each training process reports the step
    # it stopped after, and that step's checkpoint (the stop's own, or the regular one when the signal arrived at
    # a save_steps boundary) is the last one, with every rank's part.
    stops = {int(n) for n in re.findall(r"rank \d+: stopped at step (\d+)", out0 + out1)}
    assert len(stops) == 1, out0 + out1
    stopped_at = stops.pop()
    steps = sorted(int(p.name.split("-")[1]) for p in (run / "checkpoints").iterdir())
    assert 15 <= stopped_at < 60 and steps[-1] == stopped_at, (steps, stopped_at)
    ckpt = run / "checkpoints" / f"checkpoint-{stopped_at}"
    assert {"smolforge_progress.json", "rng_state_0.pth", "rng_state_1.pth"} <= {p.name for p in ckpt.iterdir()}
    assert not (run / "results.json").exists() and not (run / "model").exists()

    (rc0, out0), (rc1, out1) = finish(start_nodes(tmp_path, ["runs/stop", "--resume", "--yes"], port))
    assert (rc0, rc1) == (0, 0), out0 + out1
    results = json.loads((run / "results.json").read_text())
    assert results["global_steps"] == 60 and results["resumed_from"] == f"checkpoint-{stopped_at}"
    assert [(s["from_step"], s["to_step"]) for s in results["segments"]] == [(0, stopped_at), (stopped_at, 60)]
    assert set(range(stopped_at + 1, 61)) <= set(step_losses(run))
    assert (run / "model" / "model.safetensors").exists()


def kill_node(proc: subprocess.Popen) -> None:
    """SIGKILL a node's `smolforge run` and its training processes (torchrun starts each in a session of its own):
    what a machine that dies does to them. The launcher is stopped first, so it reports nothing in between."""
    os.kill(proc.pid, signal.SIGSTOP)
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == proc.pid:  # the parent's pid follows the state field
            os.kill(int(stat.parent.name), signal.SIGKILL)
    os.kill(proc.pid, signal.SIGKILL)


@pytest.mark.parametrize("victim", [0, 1])
def test_a_lost_node_is_one_paragraph_and_resuming_both_nodes_finishes_the_run(tmp_path, victim):
    """A node dies mid-run (SIGKILL to all its processes: no handler runs). The survivor says which node was lost,
    the checkpoint to resume from and the command for each node, in one paragraph; resuming both nodes finishes
    the run, whose record and card keep the command that started it."""
    port = free_port()
    args = [*COMMON, *PER_NODE_BATCH, "--experiment-name", "lost", "--set", "training.max_steps=60", "--set",
            "training.save_steps=10", "--set", "training.eval_steps=1000"]
    procs = start_nodes(tmp_path, args, port)
    run = tmp_path / "runs" / "lost"
    _wait_for_step(run / "logs" / "run.log", 15, procs)
    kill_node(procs[victim])
    outcome = finish(procs, timeout=180)
    survivor = 1 - victim
    rc, out = outcome[survivor]
    assert outcome[victim][0] == -signal.SIGKILL and rc == 2, out
    assert "Traceback" not in out and "frame #" not in out and "[W" not in out, out
    errors = [line for line in out.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, out
    lost = "node 1 stopped or became unreachable" if victim == 1 else \
        "node 0, which hosts the rendezvous, stopped or became unreachable"
    assert f"error: Training stopped on node {survivor} of 2: {lost} (" in errors[0], errors
    step = max(int(p.name.split("-")[1]) for p in (run / "checkpoints").iterdir()
               if (p / "smolforge_progress.json").is_file())
    assert 10 <= step < 60 and f"The last complete checkpoint is step {step} " in errors[0], errors
    for rank in (0, 1):
        assert (f"`smolforge run runs/lost --resume --nnodes 2 --node-rank {rank} --rdzv-endpoint 127.0.0.1:{port}` "
                f"on node {rank}") in errors[0], errors

    (rc0, out0), (rc1, out1) = finish(start_nodes(tmp_path, ["runs/lost", "--resume", "--yes"], port))
    assert (rc0, rc1) == (0, 0), out0 + out1
    results = json.loads((run / "results.json").read_text())
    assert results["global_steps"] == 60 and results["resumed_from"] == f"checkpoint-{step}"
    first, second = results["segments"]
    assert first["command"].startswith("smolforge run --preset tiny") and "--resume" not in first["command"]
    assert "--resume" in second["command"] and results["command"] == first["command"]
    card = (run / "model" / "README.md").read_text()
    started = next(line for line in card.splitlines() if line.startswith("- The original run was started with"))
    assert "`smolforge run --preset tiny" in started and "--resume" not in started, started


def test_nodes_that_name_different_endpoints_each_stop_with_one_paragraph_naming_theirs(tmp_path):
    good, wrong = free_port(), free_port()
    # Node 1 also waits rdzv_timeout for node 0 to create the run folder, which node 0 does after its imports and
    # data checks (about 8 s on 2 shared cores): a timeout much shorter than that races it.
    args = [*COMMON, *PER_NODE_BATCH, "--experiment-name", "apart", "--set", "training.rdzv_timeout=20"]
    started = time.monotonic()
    (rc0, out0), (rc1, out1) = finish([start_node(tmp_path, args, 0, good), start_node(tmp_path, args, 1, wrong)],
                                      timeout=120)
    assert time.monotonic() - started < 90  # a timeout, not a hang
    assert (rc0, rc1) == (2, 2)
    assert f"Not every node joined the rendezvous at 127.0.0.1:{good} within 20 s" in " ".join(out0.split())
    assert f"could not reach the rendezvous at 127.0.0.1:{wrong} within 20 s" in " ".join(out1.split())
    for out in (out0, out1):
        assert "Traceback" not in out and "frame #" not in out
    assert not (tmp_path / "runs" / "apart").exists()  # nothing trained: node 0 left no half-made run


def test_an_endpoint_node_0_cannot_listen_on_is_one_paragraph(tmp_path):
    proc = run_cli("run", *COMMON, "--experiment-name", "away", "--nnodes", "2", "--node-rank", "0",
                   "--rdzv-endpoint", "192.0.2.1:29400", cwd=tmp_path, check=False)  # TEST-NET-1: nobody's address
    err = " ".join(proc.stderr.split())
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "node 0 of 2 could not host the rendezvous at 192.0.2.1:29400" in err and "Traceback" not in err


def test_a_run_folder_the_nodes_do_not_share_is_named_before_training(tmp_path):
    """Node 1 trains on its own copy of the run folder (config.yaml included): the check in the training processes
    finds that it does not see the file rank 0 wrote, and every node stops."""
    here, there = tmp_path / "node0", tmp_path / "node1"
    (there / "runs" / "apart").mkdir(parents=True)
    here.mkdir()
    port = free_port()
    args = [*COMMON, *PER_NODE_BATCH, "--experiment-name", "apart", "--set", "training.rdzv_timeout=5"]
    node0 = start_node(here, args, 0, port)
    deadline = time.time() + 120
    while not (here / "runs" / "apart" / "config.yaml").exists():
        assert node0.poll() is None and time.time() < deadline
        time.sleep(0.2)
    (there / "runs" / "apart" / "config.yaml").write_bytes((here / "runs" / "apart" / "config.yaml").read_bytes())
    results = finish([node0, start_node(there, args, 1, port)])
    for rc, out in results:
        text = " ".join(out.split())
        assert rc == 2, out
        assert "is not shared between the nodes: node 1" in text and "did not see the file rank 0 wrote" in text
        assert "Traceback" not in out
    assert not (here / "runs" / "apart").exists()  # nothing trained: node 0 removed the folder it created


def test_the_sbatch_script_on_a_stand_in_srun_trains_like_two_processes(tmp_path, reference):
    """`smolforge slurm`'s script, run with SLURM's variables for 2 nodes and stand-ins for srun/scontrol that
    start both node commands on this machine."""
    from tests.unit.test_slurm import STAND_INS

    settings = [a for a in COMMON if a not in ("--preset", "tiny", "--yes")]
    run_cli("slurm", "--preset", "tiny", *settings, *PER_NODE_BATCH, "--set", "experiment_name=sl", "--nodes", "2",
            "--gpus-per-node", "1", "--port", str(free_port()), "-o", "job.sbatch", cwd=tmp_path)
    env = {**os.environ, **NODE_ENV, "PATH": f"{STAND_INS}{os.pathsep}{os.environ['PATH']}", "SLURM_JOB_ID": "7",
           "SLURM_JOB_NUM_NODES": "2", "SLURM_JOB_NODELIST": "node[1-2]"}
    proc = subprocess.run(["bash", "job.sbatch"], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=600)
    run = tmp_path / "runs" / "sl"
    logs = {p.name: p.read_text() for p in (run / "logs").glob("slurm-7-node*.out")}
    assert proc.returncode == 0, (proc.stdout, proc.stderr, logs)
    assert sorted(logs) == ["slurm-7-node0.out", "slurm-7-node1.out"]
    assert "Done:" in logs["slurm-7-node0.out"] and "Node 1 of 2 is done" in logs["slurm-7-node1.out"]
    losses, one, nproc2 = step_losses(run), step_losses(reference["one"]), step_losses(reference["nproc2"])
    assert sorted(losses) == list(range(1, 13))
    for step in losses:
        assert losses[step] == pytest.approx(nproc2[step], rel=1e-4, abs=1e-5), step
        assert losses[step] == pytest.approx(one[step], rel=1e-4, abs=1e-5), step
    assert json.loads((run / "results.json").read_text())["topology"]["nodes"] == 2
