"""What a node checks before any training library loads: a node rank outside the run, a run folder node 0
never creates where this node looks (not shared), a node given another config than node 0's, and a resume
that would change the topology or what is trained. Each is one paragraph and exit 2."""

from __future__ import annotations

import time

from smolforge.config import dump_dict
from smolforge.config.loading import load_config
from smolforge.runfolder import RunFolder
from tests.conftest import run_cli

NODE1 = ["--preset", "tiny", "--yes", "--experiment-name", "mn", "--nnodes", "2", "--node-rank", "1",
         "--rdzv-endpoint", "127.0.0.1:29400", "--set", "training.rdzv_timeout=2"]


def _node0_config(tmp_path, **flags) -> RunFolder:
    """The run folder as node 0 leaves it before training: config.yaml only."""
    cfg = load_config(preset="tiny", flags={"experiment_name": "mn", "training.nnodes": 2,
                                            "training.rdzv_endpoint": "127.0.0.1:29400", **flags})
    run = RunFolder(tmp_path / "runs" / "mn")
    run.root.mkdir(parents=True)
    run.write_config(dump_dict(cfg))
    return run


def _one_paragraph(proc) -> str:
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    return " ".join(proc.stderr.split())


def test_a_node_rank_outside_the_run_is_refused(tmp_path):
    err = _one_paragraph(run_cli("run", *NODE1, "--node-rank", "2", cwd=tmp_path, check=False))
    assert "node_rank 2 is not below nnodes 2: the nodes of this run are numbered 0 to 1" in err
    assert not (tmp_path / "runs").exists()


def test_a_node_that_never_sees_node_0s_run_folder_says_it_must_be_shared(tmp_path):
    started = time.monotonic()
    err = _one_paragraph(run_cli("run", *NODE1, cwd=tmp_path, check=False))
    assert time.monotonic() - started < 60
    assert "Node 1 waited 2 s (training.rdzv_timeout) for node 0 to create the run folder" in err
    assert "on a shared filesystem" in err


def test_a_node_given_another_config_than_node_0_names_the_difference(tmp_path):
    _node0_config(tmp_path)
    err = _one_paragraph(run_cli("run", *NODE1, "--learning-rate", "1e-4", cwd=tmp_path, check=False))
    assert "Node 1 was given a different config from the one node 0 wrote" in err
    assert "training.learning_rate (0.003 on node 0, 0.0001 here)" in err and "Run the same command" in err


def test_a_resume_keeps_the_topology_and_what_is_trained(tmp_path):
    run = _node0_config(tmp_path)
    err = _one_paragraph(run_cli("run", str(run.root), "--resume", "--yes", "--nproc", "2", "--node-rank", "1",
                                 "--rdzv-endpoint", "127.0.0.1:29401", cwd=tmp_path, check=False))
    assert "trained on 2 node(s) x 1 process(es); it continues on the same topology only" in err
    err = _one_paragraph(run_cli("run", str(run.root), "--resume", "--yes", "--learning-rate", "1e-4",
                                 cwd=tmp_path, check=False))
    assert "training.learning_rate cannot change now" in err and "--node-rank" in err
