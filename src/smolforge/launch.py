"""Several training processes on one machine: torchrun for DDP, accelerate for FSDP.

Each process runs `smolforge.worker` on the run folder the parent prepared; the token, if any,
travels in the environment, never in argv (visible to every process on the machine).
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from importlib import resources
from pathlib import Path

from smolforge.errors import SmolforgeError
from smolforge.runfolder import RunFolder


def launch_workers(run: RunFolder, nproc: int, distributed: str, resume_from: Path | None) -> None:
    worker = ["-m", "smolforge.worker", str(run.root)] + (["--resume-from", str(resume_from)] if resume_from else [])
    if distributed == "fsdp":
        fsdp_cfg = resources.files("smolforge").joinpath("resources/accelerate_fsdp.yaml")
        cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(fsdp_cfg),
               "--num_processes", str(nproc), *worker]
    else:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
               *worker]
    env = dict(os.environ)
    if "OMP_NUM_THREADS" not in env:  # N processes share the cores instead of each taking all of them
        env["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // nproc))
    proc = subprocess.run(cmd, env=env)
    if proc.returncode in (130, 143, -2, -15):
        raise SmolforgeError(f"Training was interrupted. Resume with: smolforge run {shlex.quote(str(run.root))} "
                             "--resume")
    if proc.returncode != 0:
        raise SmolforgeError(f"Training workers failed (exit code {proc.returncode}); see "
                             f"{run.logs_dir / 'run.log'} and the output above.")
