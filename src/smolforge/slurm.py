"""`smolforge slurm`: an sbatch script that runs `smolforge run` on every node of a SLURM allocation.

SLURM starts the nodes and torchrun joins them: the script takes node 0's host from the allocation
(`scontrol show hostnames`), each task's node rank from `SLURM_NODEID`, and runs the same
`smolforge run` on every node with one task per node (`srun`), the run folder on the shared
filesystem and one log per node. Only the options the user gives become `#SBATCH` lines; the rest
stay the cluster's defaults. The config is checked now, for this topology, so a bad value fails
here and not in the queue.
"""

from __future__ import annotations

import re
import shlex
import shutil
import sys
from dataclasses import dataclass, field
from datetime import datetime
from importlib import resources
from pathlib import Path

from smolforge.config.fields import SettingError, setting
from smolforge.config.loading import load_config
from smolforge.errors import SmolforgeError
from smolforge.resume import default_experiment_name, default_run_folder

TEMPLATE = "resources/slurm.sbatch.j2"
DEFAULT_PORT = 29400  # torch's c10d rendezvous port
TOPOLOGY_SETTINGS = ("training.nnodes", "training.nproc", "training.node_rank", "training.rdzv_endpoint")

_TIME = re.compile(r"(\d+-)?\d+(:\d{1,2}){0,2}|\d+-\d+(:\d{1,2}){0,2}")  # sbatch --time formats
_NAME = re.compile(r"[A-Za-z0-9_.,+-]+")  # partition (or a comma list of them), account


@dataclass
class SlurmRequest:
    config: Path | None
    nodes: int
    gpus_per_node: int
    preset: str | None = None
    sets: list[str] = field(default_factory=list)
    partition: str | None = None
    time: str | None = None
    account: str | None = None
    cpus_per_node: int | None = None
    port: int | None = None  # None: DEFAULT_PORT
    output: Path | None = None
    force: bool = False


def _check_options(req: SlurmRequest) -> None:
    problems = []
    if req.time is not None and not _TIME.fullmatch(req.time):
        problems.append(f"--time {req.time!r} is not a SLURM time limit: use minutes, MM:SS, HH:MM:SS, D-HH, D-HH:MM "
                        "or D-HH:MM:SS (e.g. 2-00:00:00)")
    for flag, value in (("--partition", req.partition), ("--account", req.account)):
        if value is not None and not _NAME.fullmatch(value):
            problems.append(f"{flag} {value!r} is not a SLURM name (letters, digits, _ . , + -)")

    for flag, path, value in (("--nodes", "training.nnodes", req.nodes),
                              ("--gpus-per-node", "training.nproc", req.gpus_per_node)):
        try:
            setting(path).validate(value)  # the bounds the setting itself declares
        except SettingError as e:
            problems += [f"{flag}: {line}" for line in e.lines]
    if req.cpus_per_node is not None and req.cpus_per_node < 1:
        problems.append(f"--cpus-per-node {req.cpus_per_node} must be at least 1")
    topology = sorted({item.partition("=")[0].strip() for item in req.sets} & set(TOPOLOGY_SETTINGS))
    if topology:
        problems.append(f"--set {', '.join(topology)}: the script sets them itself; give the topology with --nodes "
                        "and --gpus-per-node (node rank and rendezvous come from the allocation)")
    if req.port is not None and not 0 < req.port < 65536:
        problems.append(f"--port {req.port} is not a TCP port (1 to 65535)")
    if problems:
        raise SmolforgeError("smolforge slurm: " + "; ".join(problems) + ".")


def _smolforge_executable() -> str:
    """The smolforge this command runs from (the nodes run the same one, on the shared filesystem)."""
    beside = Path(sys.executable).with_name("smolforge")
    if beside.is_file():
        return str(beside)
    return shutil.which("smolforge") or "smolforge"


def _wrapped(groups: list[list[str]], indent: str = "     ", width: int = 100) -> str:
    """Shell-quoted words on the lines of a bash array literal (newlines need no backslash there), an option and
    its value on the same line."""
    lines: list[str] = []
    for group in (" ".join(shlex.quote(w) for w in g) for g in groups):
        if lines and len(lines[-1]) + 1 + len(group) <= width:
            lines[-1] += " " + group
        else:
            lines.append(group)
    return ("\n" + indent).join(lines)


@dataclass
class Resolved:
    """What the script runs: `smolforge run` arguments (same on every node) and the run folder (absolute)."""

    run_args: list[list[str]]  # an option with its value, kept on one line of the script
    run_dir: Path


def resolve(req: SlurmRequest, cwd: Path | None = None) -> Resolved:
    """Check the config for this topology now; fix the run folder (and a default experiment name) so that every
    node and every later job names the same folder."""
    _check_options(req)
    cwd = (cwd or Path.cwd()).resolve()
    as_given = load_config(req.config, req.preset, req.sets, {"training.nnodes": 1, "training.node_rank": 0})
    named = {} if as_given.experiment_name or as_given.output_dir else \
        {"experiment_name": default_experiment_name(as_given)}
    # the endpoint's host is each job's first node, filled in by the script; any host checks the config here
    topology = {"training.nnodes": req.nodes, "training.nproc": req.gpus_per_node, "training.node_rank": 0,
                "training.rdzv_endpoint": f"localhost:{req.port or DEFAULT_PORT}"}
    cfg = load_config(req.config, req.preset, req.sets, topology | named)
    run_dir = default_run_folder(cfg).root
    run_dir = run_dir if run_dir.is_absolute() else cwd / run_dir

    args = [[str((cwd / req.config).resolve())]] if req.config else []
    args += [["--preset", req.preset]] if req.preset else []
    args += [["--set", item] for item in req.sets]
    args += [["--experiment-name", str(named["experiment_name"])]] if named else []
    args += [["--output-dir", str(run_dir)], ["--nnodes", str(req.nodes)], ["--nproc", str(req.gpus_per_node)],
             ["--yes"]]
    return Resolved(args, run_dir)


def render(req: SlurmRequest, resolved: Resolved, script: Path) -> str:
    """The sbatch script's text."""
    from jinja2 import Environment, StrictUndefined

    options = [f"--partition={req.partition}"] if req.partition else []
    options += [f"--time={req.time}"] if req.time else []
    options += [f"--account={req.account}"] if req.account else []
    options += [f"--cpus-per-task={req.cpus_per_node}"] if req.cpus_per_node else []
    env = Environment(undefined=StrictUndefined, keep_trailing_newline=True)
    template = env.from_string(resources.files("smolforge").joinpath(TEMPLATE).read_text(encoding="utf-8"))
    return template.render(
        written=f"{datetime.now():%Y-%m-%d %H:%M}", script=shlex.quote(str(script)), run_dir=resolved.run_dir,
        run_dir_q=shlex.quote(str(resolved.run_dir)), nodes=req.nodes, gpus=req.gpus_per_node,
        sbatch_options=options, smolforge_q=shlex.quote(_smolforge_executable()), port=req.port or DEFAULT_PORT,
        run_args=_wrapped(resolved.run_args),
        # srun (Slurm >= 22.05) does not take --cpus-per-task over from sbatch: the step asks for it again
        srun_extra=f" --cpus-per-task={req.cpus_per_node}" if req.cpus_per_node else "")
