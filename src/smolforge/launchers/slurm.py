"""`smolforge slurm`: an sbatch script that runs `smolforge run` on every node of a SLURM allocation.

SLURM starts the nodes and torchrun joins them: the script takes node 0's host from the allocation
(`scontrol show hostnames`), each task's node rank from `SLURM_NODEID`, and runs the same
`smolforge run` on every node with one task per node (`srun`), the run folder on the shared
filesystem and one log per node. Only the options the user gives become `#SBATCH` lines; the rest
stay the cluster's defaults.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from datetime import datetime
from importlib import resources
from pathlib import Path

from smolforge.errors import SmolforgeError
from smolforge.launchers.common import (
    DEFAULT_PORT,
    LaunchRequest,
    RunFacts,
    node_command,
    resolve_run,
    run_words,
    topology_problems,
)
from smolforge.paths import smolforge_executable

TEMPLATE = "resources/slurm.sbatch.j2"

_TIME = re.compile(r"(\d+-)?\d+(:\d{1,2}){0,2}|\d+-\d+(:\d{1,2}){0,2}")  # sbatch --time formats
_NAME = re.compile(r"[A-Za-z0-9_.,+-]+")  # partition (or a comma list of them), account


@dataclass
class SlurmRequest(LaunchRequest):
    partition: str | None = None
    time: str | None = None
    account: str | None = None
    cpus_per_node: int | None = None
    gpu: str | None = None  # the GPU type, for the plan's memory check (the script does not name it)
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
    problems += topology_problems(req, "--nodes", "--gpus-per-node", "the script",
                                  "node rank and rendezvous come from the allocation")
    if req.cpus_per_node is not None and req.cpus_per_node < 1:
        problems.append(f"--cpus-per-node {req.cpus_per_node} must be at least 1")
    if problems:
        raise SmolforgeError("smolforge slurm: " + "; ".join(problems) + ".")


@dataclass
class Resolved:
    """What the script runs: `smolforge run` arguments (the same on every node) and the run folder (absolute)."""

    facts: RunFacts
    run_args: list[list[str]]  # an option with its value, kept on one line of the script

    @property
    def run_dir(self) -> Path:
        return self.facts.local_run_dir


def resolve(req: SlurmRequest, cwd: Path | None = None) -> Resolved:
    """Check the options and the config for this topology; the run folder is the one the config gives here,
    on the shared filesystem every node sees."""
    _check_options(req)
    cwd = (cwd or Path.cwd()).resolve()
    facts = resolve_run(req, cwd)
    return Resolved(facts, run_words(req, facts, str((cwd / req.config).resolve()) if req.config else None))


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
        sbatch_options=options, smolforge_q=shlex.quote(smolforge_executable()), port=req.port or DEFAULT_PORT,
        node_command=node_command(resolved.run_args),
        # srun (Slurm >= 22.05) does not take --cpus-per-task over from sbatch: the step asks for it again
        srun_extra=f" --cpus-per-task={req.cpus_per_node}" if req.cpus_per_node else "")
