"""What every launcher shares: the topology check, the run's fixed name and folder, the `smolforge run` words each
node runs (one function renders them for every launcher), and which secrets the run needs.

A launcher file runs the same `smolforge run` on every node, joined by torchrun's c10d rendezvous at node 0;
only where the rendezvous host, the node rank and the run folder come from differs (SLURM's allocation,
SkyPilot's environment). The config is checked now, for this topology, so a bad value fails here and not on
a rented machine or in the queue.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from pathlib import Path

from smolforge.config import SmolforgeConfig
from smolforge.config.fields import SettingError, setting
from smolforge.config.loading import load_config
from smolforge.processenv import pushes_to_hub
from smolforge.resume import default_experiment_name, default_run_folder

DEFAULT_PORT = 29400  # torch's c10d rendezvous port
TOPOLOGY_SETTINGS = ("training.nnodes", "training.nproc", "training.node_rank", "training.rdzv_endpoint")


@dataclass
class LaunchRequest:
    """What every launcher is asked: the config (a file, a preset, --set overrides) and the topology."""

    config: Path | None
    nodes: int
    gpus_per_node: int
    preset: str | None = None
    sets: list[str] = field(default_factory=list)
    port: int | None = None  # None: DEFAULT_PORT


def topology_problems(req: LaunchRequest, nodes_flag: str, gpus_flag: str, file: str, sets_note: str) -> list[str]:
    """The topology's problems, each naming the flag: its bounds are the settings' own."""
    problems = []
    for flag, path, value in ((nodes_flag, "training.nnodes", req.nodes), (gpus_flag, "training.nproc",
                                                                           req.gpus_per_node)):
        try:
            setting(path).validate(value)
        except SettingError as e:
            problems += [f"{flag}: {line}" for line in e.lines]
    topology = sorted({item.partition("=")[0].strip() for item in req.sets} & set(TOPOLOGY_SETTINGS))
    if topology:
        problems.append(f"--set {', '.join(topology)}: {file} sets them itself; give the topology with "
                        f"{nodes_flag} and {gpus_flag} ({sets_note})")
    if req.port is not None and not 0 < req.port < 65536:
        problems.append(f"--port {req.port} is not a TCP port (1 to 65535)")
    return problems


@dataclass
class RunFacts:
    """The run every node starts: its config (checked for the topology), the experiment name fixed in the
    launcher file when the config names none, and the run folder that config gives on this machine."""

    cfg: SmolforgeConfig
    named: str | None
    local_run_dir: Path


def resolve_run(req: LaunchRequest, cwd: Path) -> RunFacts:
    """Check the config for this topology now; fix a default experiment name so every node and every later job
    (a resubmission, a spot restart) names the same run folder."""
    as_given = load_config(req.config, req.preset, req.sets, {"training.nnodes": 1, "training.node_rank": 0})
    named = None if as_given.experiment_name or as_given.output_dir else default_experiment_name(as_given)
    # the endpoint's host is known only on the nodes; any host checks the config here
    topology = {"training.nnodes": req.nodes, "training.nproc": req.gpus_per_node, "training.node_rank": 0,
                "training.rdzv_endpoint": f"localhost:{req.port or DEFAULT_PORT}"}
    cfg = load_config(req.config, req.preset, req.sets, topology | ({"experiment_name": named} if named else {}))
    run_dir = default_run_folder(cfg).root
    return RunFacts(cfg, named, run_dir if run_dir.is_absolute() else cwd / run_dir)


def run_words(req: LaunchRequest, facts: RunFacts, config_path: str | None, extra_sets: list[str] = ()) -> \
        list[list[str]]:
    """`smolforge run`'s arguments on every node (an option with its value, kept on one line), before the run
    folder, the rendezvous and the node rank, which the launcher file fills in."""
    words = [[config_path]] if config_path else []
    words += [["--preset", req.preset]] if req.preset else []
    words += [["--set", item] for item in [*req.sets, *extra_sets]]
    words += [["--experiment-name", facts.named]] if facts.named else []
    return words + [["--nnodes", str(req.nodes)], ["--nproc", str(req.gpus_per_node)], ["--yes"]]


def _wrapped(groups: list[list[str]], indent: str, width: int = 100) -> str:
    """Shell-quoted words on the lines of a bash array literal (newlines need no backslash there), an option and
    its value on the same line."""
    lines: list[str] = []
    for group in (" ".join(shlex.quote(w) for w in g) for g in groups):
        if lines and len(lines[-1]) + 1 + len(group) <= width:
            lines[-1] += " " + group
        else:
            lines.append(group)
    return ("\n" + indent).join(lines)


def node_command(words: list[list[str]], indent: str = "") -> str:
    """The bash lines that put one node's `smolforge run` in the array RUN, from the variables SMOLFORGE, RUN_DIR,
    RDZV_HOST and RDZV_PORT the launcher sets; an earlier start of the run (a resubmitted job, a restarted
    spot job) makes it a resume. The launcher appends `--node-rank` from its own environment."""
    pad = indent + " " * 5
    return (f'{indent}RUN=("$SMOLFORGE" run {_wrapped(words, pad)}\n'
            f'{pad}--output-dir "$RUN_DIR" --rdzv-endpoint "$RDZV_HOST:$RDZV_PORT")\n'
            f'{indent}if [ -f "$RUN_DIR/config.yaml" ]; then\n'
            f'{indent}    RUN+=(--resume)  # an earlier job started this run: continue it\n'
            f'{indent}fi')


def run_secrets(cfg: SmolforgeConfig) -> dict[str, str]:
    """Environment variables holding secrets the run needs on its nodes, each with why; their values never go
    into a launcher file."""
    needs: dict[str, str] = {}
    if pushes_to_hub(cfg):
        needs["HF_TOKEN"] = "the run publishes to the Hub"
    if cfg.tracking.backend == "wandb":
        needs["WANDB_API_KEY"] = "tracking.backend is wandb"
    return needs
