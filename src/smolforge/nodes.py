"""Several machines, one run folder: what nodes other than node 0 do, and the checks that every node
sees the same run folder.

The run folder is the only state the nodes share, so it must be on a filesystem every node mounts
(NFS, Lustre, ...). Node 0 creates it and writes config.yaml; the other nodes wait for that file
and for the rendezvous, then start their training processes. Once every process has joined, global
rank 0 writes a file with a fresh random name into the run folder and every process must find it:
a node that trains on its own copy of the folder (a local disk, a stale copy) is named and the run
stops before training. Global rank 0 (on whichever node torchrun's rendezvous places it) writes
checkpoints, model/ and results.json; node 0's `smolforge run` then writes the card and publishes.
"""

from __future__ import annotations

import os
import secrets
import socket
from datetime import timedelta
from pathlib import Path
from typing import Any

from smolforge import hardware, logs
from smolforge.config import SmolforgeConfig, TrainingSection, dump_dict
from smolforge.config.training import LAUNCH_SETTINGS
from smolforge.errors import SmolforgeError, first_line
from smolforge.launch import JOINED_ENV, NODE_RANK_ENV, run_workers, wait_until
from smolforge.resume import check_new_folder, default_run_folder, resume_point
from smolforge.runfolder import RunFolder
from smolforge.runtime import resolve

VISIBLE_WAIT_S = 60  # a file another node wrote can stay hidden this long (NFS attribute caching)
NOT_COMPARED = ("experiment_name", "output_dir", "card", "publish")  # node 0 alone uses these


def _flat(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in data.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(_flat(value, path + "."))
        else:
            out[path] = value
    return out


def training_differences(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    """Settings (dotted paths) in which two configs would train differently; launch settings and what only
    node 0 uses (names, card, publish) do not count."""
    fa, fb = _flat(a), _flat(b)
    skip = set(LAUNCH_SETTINGS)
    return sorted(k for k in set(fa) | set(fb)
                  if k not in skip and k.split(".")[0] not in NOT_COMPARED and fa.get(k) != fb.get(k))


def wait_for_config(run: RunFolder, cfg: SmolforgeConfig) -> None:
    """Node 1..N-1 of a new run: wait for node 0's config.yaml, and check it trains what this node was given."""
    t = cfg.training
    if not wait_until(run.config_path.is_file, t.rdzv_timeout):
        raise SmolforgeError(
            f"Node {t.node_rank} waited {t.rdzv_timeout} s (training.rdzv_timeout) for node 0 to create the run "
            f"folder {run.root.resolve()} (its config.yaml), and it did not appear. Every node must see the run "
            "folder on a shared filesystem: start node 0 with the same command, and set --output-dir (or run from a "
            "directory) on a filesystem all nodes mount.")
    mine, theirs = dump_dict(cfg), run.trained_config_data()
    differ = training_differences(mine, theirs)
    if differ:
        shown = ", ".join(f"{k} ({_get(theirs, k)!r} on node 0, {_get(mine, k)!r} here)" for k in differ[:5])
        raise SmolforgeError(
            f"Node {t.node_rank} was given a different config from the one node 0 wrote to {run.config_path}: "
            f"{shown}{', ...' if len(differ) > 5 else ''}. Run the same command on every node (only --node-rank "
            "differs).")


def _get(data: dict[str, Any], path: str) -> Any:
    for part in path.split("."):
        data = data.get(part) if isinstance(data, dict) else None
    return data


def start_process_group(cfg: SmolforgeConfig) -> None:
    """In a training process: join the other processes now, before the data and the model load, so the run
    folder check below fails in seconds and FSDP loads the weights on rank 0 only. The trainer then uses this
    process group (accelerate only creates one when none exists); backend and timeout are the trainer's own."""
    if int(os.environ.get("WORLD_SIZE", "1")) < 2:
        return
    from accelerate import PartialState
    from transformers import TrainingArguments

    PartialState(cpu=resolve(cfg).device == "cpu", timeout=timedelta(seconds=TrainingArguments.ddp_timeout))


def meet(run: RunFolder, t: TrainingSection, resume_from: Path | None) -> dict[str, Any]:
    """In every training process, once all have joined: check that they all see this run folder and resume from
    the same checkpoint; return the topology of the run as results.json records it."""
    import torch.distributed as dist

    if not dist.is_initialized() or dist.get_world_size() < 2:
        return single_process()
    rank, world = dist.get_rank(), dist.get_world_size()
    name = [f".shared-check-{secrets.token_hex(8)}" if rank == 0 else None]
    marker = run.logs_dir / str(name[0])
    if rank == 0:
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text(f"written by rank 0 on {socket.gethostname()}\n", encoding="utf-8")
    dist.broadcast_object_list(name, src=0)
    marker = run.logs_dir / str(name[0])
    seen = wait_until(marker.is_file, min(t.rdzv_timeout, VISIBLE_WAIT_S))
    node = int(os.environ.get(NODE_RANK_ENV, "0"))
    mine = {"seen": seen, "where": f"node {node} ({socket.gethostname()})", "node": node,
            "resume": resume_from.name if resume_from else None,
            "hardware": hardware.detect()["summary"] if int(os.environ.get("LOCAL_RANK", "0")) == 0 else None}
    facts: list[Any] = [None] * world
    dist.all_gather_object(facts, mine)
    if rank == 0:
        marker.unlink(missing_ok=True)
    blind = sorted({f["where"] for f in facts if not f["seen"]})
    if blind:
        raise SmolforgeError(
            f"The run folder {run.root.resolve()} is not shared between the nodes: {', '.join(blind)} did not see "
            f"the file rank 0 wrote there within {min(t.rdzv_timeout, VISIBLE_WAIT_S)} s. Every node must use the "
            "same folder on a shared filesystem (NFS, Lustre, ...); set --output-dir to a path there, the same on "
            "every node.")
    starts = {f["resume"] for f in facts}
    if len(starts) > 1:
        shown = ", ".join(sorted(str(s or "step 0") for s in starts))
        raise SmolforgeError(
            f"The nodes would continue {run.root} from different points ({shown}): they do not see the same "
            "checkpoints. Use one shared run folder for every node, then resume again.")
    nodes = {f["node"]: f["hardware"] for f in facts if f["hardware"] is not None}
    return {"nodes": len(nodes), "processes_per_node": int(os.environ.get("LOCAL_WORLD_SIZE", world)),
            "world_size": world, "distributed": t.distributed, "backend": dist.get_backend(),
            "node_hardware": [nodes[n] for n in sorted(nodes)]}


# What a collective reports when a peer process went away (gloo's TCP pairs, NCCL, the c10d store).
LOST_PEER_SIGNS = ("Connection reset by peer", "Connection closed by peer", "Broken pipe", "Connection refused",
                   "gloo/transport", "NCCL", "Socket Timeout", "recvValue", "Connection was likely closed")


def lost_peer(e: BaseException) -> bool:
    """Whether a training process failed because another process of the run went away."""
    import torch.distributed as dist

    return isinstance(e, dist.DistError) or (isinstance(e, RuntimeError) and any(s in str(e) for s in LOST_PEER_SIGNS))


def peer_failure(e: BaseException) -> str:
    """The gist of a collective's failure: its first sentence, without the source location torch puts first."""
    text = first_line(e)
    if text.startswith("[") and "] " in text:
        text = text.split("] ", 1)[1]
    return text.split(". ", 1)[0].rstrip(".")


def mark_joined() -> None:
    """Tell this node's launcher that its processes met the others (`launch.JOINED_ENV`): a rendezvous failure after
    this is a lost node, not a node that never arrived."""
    path = os.environ.get(JOINED_ENV)
    if path and int(os.environ.get("LOCAL_RANK", "0")) == 0:
        Path(path).write_text("joined\n", encoding="utf-8")


def single_process() -> dict[str, Any]:
    return {"nodes": 1, "processes_per_node": 1, "world_size": 1}


def finish() -> None:
    """In every training process, after rank 0 wrote model/ and results.json: wait for each other, so that no
    node's launch returns before the run's results exist."""
    import torch.distributed as dist

    if dist.is_initialized() and dist.get_world_size() > 1:
        dist.barrier()


def wait_for_results(run: RunFolder, t: TrainingSection) -> dict[str, Any]:
    """Node 0 after its processes ended: results.json, written by global rank 0 on whichever node it ran."""
    if not wait_until(run.results_path.is_file, VISIBLE_WAIT_S if t.nnodes > 1 else 0):
        raise SmolforgeError(f"Training ended but {run.results_path} does not exist on this node. With several "
                             "nodes the run folder must be on a filesystem they all share; see the logs in "
                             f"{run.logs_dir}.")
    return run.read_results()


def join_run(cfg: SmolforgeConfig, opts, console) -> RunFolder:
    """`smolforge run` on node 1..N-1: find the run folder node 0 creates (or the run to resume), start this
    node's training processes, and leave results, card and publishing to node 0."""
    t = cfg.training
    if opts.resume:
        cfg, run, resume_from = resume_point(cfg)
    else:
        run, resume_from = default_run_folder(cfg), None
        check_new_folder(run)
        console.print(f"Node {t.node_rank} of {t.nnodes}: waiting for node 0 to create {run.root} ...", markup=False)
        wait_for_config(run, cfg)
    handler = logs.attach_file(run.logs_dir, f"node{t.node_rank}.log")
    try:
        logs.log.info("node %d of %d joins %s at %s%s", t.node_rank, t.nnodes, run.root, t.rdzv_endpoint,
                      f" (resuming from {resume_from.name})" if resume_from else "")
        console.print(f"Node {t.node_rank} of {t.nnodes}: starting {t.nproc} training process"
                      f"{'es' if t.nproc > 1 else ''}, rendezvous at {t.rdzv_endpoint} ...", markup=False)
        run_workers(cfg.training, run, resume_from)
    finally:
        logs.detach(handler)
    return run
