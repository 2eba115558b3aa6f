"""The parts of a multi-node run that need no training: the torchrun command line each node builds, the
settings that say how a node joins, the comparison of two nodes' configs, the card's topology line, the
stop signal under a launcher, and the FSDP settings as the trainer reads them."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest

from smolforge import hardware, launch
from smolforge.callbacks import REPEAT_WINDOW_S, StopOnSignal
from smolforge.config import dump_dict
from smolforge.config.loading import load_config
from smolforge.errors import ConfigError, SmolforgeError
from smolforge.nodes import training_differences
from smolforge.resume import _comparable, check_new_folder, with_launch_settings
from smolforge.runfolder import RunFolder

NODES = {"training.nnodes": 2, "training.rdzv_endpoint": "node0.cluster:29400", "experiment_name": "mn"}


def _cfg(**flags):
    return load_config(preset="tiny", flags={**NODES, **flags})


def _torchrun(argv: list[str]):
    """The LaunchConfig torchrun itself makes of a command line (its own parser and checks)."""
    from torch.distributed.run import config_from_args, parse_args

    return config_from_args(parse_args(argv))


def test_one_node_is_a_private_standalone_rendezvous(tmp_path):
    t = load_config(preset="tiny", flags={"training.nproc": 2}).training
    argv = launch.torchrun_args(t, RunFolder(tmp_path / "run"), None)
    config, entrypoint, args = _torchrun(argv)
    assert (config.min_nodes, config.max_nodes, config.nproc_per_node) == (1, 1, 2)
    assert config.rdzv_endpoint == "localhost:0" and config.max_restarts == 0
    assert args[-2:] == ["smolforge.worker", str((tmp_path / "run").resolve())]


def test_every_node_names_the_same_rendezvous_and_only_node_0_hosts_it(tmp_path):
    run = RunFolder(tmp_path / "mn")
    ckpt = tmp_path / "mn" / "checkpoints" / "checkpoint-20"
    configs = [_torchrun(launch.torchrun_args(_cfg(**{"training.node_rank": r, "training.nproc": 8,
                                                      "training.rdzv_timeout": 90}).training, run, ckpt))
               for r in (0, 1)]
    for config, _, args in configs:
        assert (config.min_nodes, config.max_nodes, config.nproc_per_node) == (2, 2, 8)
        assert config.rdzv_backend == "c10d" and config.rdzv_endpoint == "node0.cluster:29400"
        assert config.run_id == "smolforge-mn"
        assert config.rdzv_configs["join_timeout"] == "90" and config.rdzv_configs["read_timeout"] == "90"
        assert args[-2:] == ["--resume-from", str(ckpt.resolve())]
    assert [c.rdzv_configs["is_host"] for c, _, _ in configs] == ["1", "0"]


def test_worker_environment_names_the_node_and_turns_fsdp_loading_on():
    assert launch.worker_environment(_cfg(**{"training.node_rank": 1}).training)[launch.NODE_RANK_ENV] == "1"
    env = launch.worker_environment(load_config(preset="tiny", flags={"training.distributed": "fsdp"}).training)
    assert env["ACCELERATE_USE_FSDP"] == "true" and env["FSDP_CPU_RAM_EFFICIENT_LOADING"] == "true"


def test_the_resume_command_of_a_node_repeats_how_it_joins(tmp_path):
    t = _cfg(**{"training.node_rank": 1}).training
    cmd = launch.resume_command(RunFolder(Path("runs/mn")), t)
    assert cmd.startswith("smolforge run runs/mn --resume --nnodes 2 --node-rank 1 --rdzv-endpoint node0.cluster:29400")


@pytest.mark.parametrize("endpoint", ["node0", "node0:", ":29400", "node0:0", "node0:70000", "no de:1", "a:b"])
def test_an_endpoint_is_host_and_port(endpoint):
    with pytest.raises(ConfigError) as e:
        _cfg(**{"training.rdzv_endpoint": endpoint})
    assert "training.rdzv_endpoint: must be HOST:PORT" in str(e.value)


@pytest.mark.parametrize("endpoint", ["node0:29400", "10.0.0.1:1", "[::1]:29400", "n-0.cluster.local:65535"])
def test_endpoints_torchrun_takes(endpoint):
    assert _cfg(**{"training.rdzv_endpoint": endpoint}).training.rdzv_endpoint == endpoint


def test_node_rank_must_be_below_nnodes_and_nodes_need_an_endpoint_and_a_shared_name():
    with pytest.raises(ConfigError, match="node_rank 2 is not below nnodes 2"):
        _cfg(**{"training.node_rank": 2})
    with pytest.raises(ConfigError, match="nnodes 2 needs rdzv_endpoint"):
        load_config(preset="tiny", flags={"training.nnodes": 2, "experiment_name": "mn"})
    with pytest.raises(ConfigError, match="every node must name the same run folder"):
        load_config(preset="tiny", flags={"training.nnodes": 2, "training.rdzv_endpoint": "n:1"})


def test_global_batch_size_derives_accumulation_or_names_the_world_sizes_that_divide_it():
    t = _cfg(**{"training.global_batch_size": 64, "training.nproc": 2}).training  # tiny: batch_size 8
    assert (t.gradient_accumulation_steps, t.world_size, t.global_batch) == (2, 4, 64)
    with pytest.raises(ConfigError) as e:
        _cfg(**{"training.global_batch_size": 64, "training.nnodes": 3})
    text = str(e.value)
    assert "global_batch_size 64 is not a multiple of batch_size 8 x 3 processes" in text
    assert "a world size (nnodes x nproc) that divides 8: 1, 2, 4, 8" in text
    with pytest.raises(ConfigError, match="batch_size that divides 20"):
        load_config(preset="tiny", flags={"training.global_batch_size": 20})
    with pytest.raises(ConfigError) as e:  # no world size helps: one batch is the whole global batch
        _cfg(**{"training.global_batch_size": 8, "training.nproc": 2})
    text = str(e.value)
    assert "use a global_batch_size that is a multiple of 32 (e.g. 32 or 64)" in text and "divides 1" not in text


def test_fsdp_is_for_full_fine_tunes():
    with pytest.raises(ConfigError, match="distributed 'fsdp' shards the weights of a full fine-tune"):
        load_config(preset="tiny", flags={"training.distributed": "fsdp", "training.finetune": "lora"})


def test_nodes_compare_what_they_train_not_how_they_join():
    node0 = dump_dict(_cfg(**{"training.node_rank": 0}))
    node1 = dump_dict(_cfg(**{"training.node_rank": 1, "training.rdzv_endpoint": "10.0.0.1:1",
                              "card.author_name": "someone"}))
    assert training_differences(node0, node1) == []
    other = dump_dict(_cfg(**{"training.node_rank": 1, "training.learning_rate": 1e-4}))
    assert training_differences(node0, other) == ["training.learning_rate"]


def test_a_resume_keeps_the_runs_config_and_takes_how_this_node_joins():
    trained = _cfg()
    given = _cfg(**{"training.node_rank": 1, "training.rdzv_endpoint": "other:1", "training.rdzv_timeout": 5})
    joined = with_launch_settings(trained, given)
    assert (joined.training.node_rank, joined.training.rdzv_endpoint, joined.training.rdzv_timeout) == \
        (1, "other:1", 5)
    assert _comparable(dump_dict(joined)) == _comparable(dump_dict(trained))


def test_a_new_run_may_find_only_a_schedulers_logs_in_its_folder(tmp_path):
    run = RunFolder(tmp_path / "run")
    (run.logs_dir).mkdir(parents=True)
    (run.logs_dir / "slurm-1-node0.out").write_text("")
    check_new_folder(run)
    (run.root / "notes.txt").write_text("mine")
    with pytest.raises(SmolforgeError, match="holds other files"):
        check_new_folder(run)


CPU = {"summary": "CPU only: AMD EPYC (2 cores), 23.5 GiB RAM"}
H100 = "8x NVIDIA H100 80GB HBM3 (79.1 GiB); Intel Xeon (96 cores), 2015.6 GiB RAM"


def test_the_hardware_line_names_the_topology():
    assert hardware.run_summary(CPU, None) == CPU["summary"]
    assert hardware.run_summary(CPU, {"nodes": 1, "processes_per_node": 1, "world_size": 1}) == CPU["summary"]
    assert hardware.run_summary(CPU, {"nodes": 1, "processes_per_node": 2, "world_size": 2, "distributed": "ddp",
                                      "backend": "gloo", "node_hardware": [CPU["summary"]]}) == \
        "2 processes (DDP, gloo) on CPU only: AMD EPYC (2 cores), 23.5 GiB RAM"
    two = {"nodes": 2, "processes_per_node": 8, "world_size": 16, "distributed": "fsdp", "backend": "nccl",
           "node_hardware": [H100, H100]}
    assert hardware.run_summary({"summary": H100}, two) == f"2 nodes × 8 processes (FSDP, nccl); each node: {H100}"
    mixed = {**two, "node_hardware": [H100, "8x NVIDIA A100"]}
    assert hardware.run_summary({"summary": H100}, mixed).endswith(f"node 0: {H100}; node 1: 8x NVIDIA A100")


def test_a_repeated_stop_signal_under_a_launcher_is_one_request():
    alone, launched = StopOnSignal(world_size=1), StopOnSignal(world_size=2)
    for stopper in (alone, launched):
        stopper._handle(signal.SIGTERM, None)
        assert stopper.received == signal.SIGTERM
    launched._handle(signal.SIGTERM, None)  # the scheduler's copy and torchrun's forwarded copy
    with pytest.raises(KeyboardInterrupt):
        alone._handle(signal.SIGINT, None)  # one process: a second Ctrl-C aborts at once
    launched._received_at = time.monotonic() - REPEAT_WINDOW_S - 1
    with pytest.raises(KeyboardInterrupt):
        launched._handle(signal.SIGINT, None)  # later, it is a second request


def test_the_shipped_fsdp_settings_are_what_the_trainer_uses(tmp_path, monkeypatch):
    from transformers import TrainingArguments

    monkeypatch.delenv("FSDP_CPU_RAM_EFFICIENT_LOADING", raising=False)  # TrainingArguments sets it; restored after
    from smolforge import fsdp

    args = TrainingArguments(output_dir=str(tmp_path), use_cpu=True, report_to=[], **fsdp.trainer_arguments())
    plugin = args.fsdp_plugin_args
    assert plugin["fsdp_version"] == 2 and plugin["state_dict_type"] == "SHARDED_STATE_DICT"
    assert plugin["auto_wrap_policy"] == "TRANSFORMER_BASED_WRAP" and "transformer_cls_names_to_wrap" not in plugin
    assert plugin["reshard_after_forward"] is True and plugin["activation_checkpointing"] is True
    assert plugin["cpu_ram_efficient_loading"] is True and not plugin.get("cpu_offload")
