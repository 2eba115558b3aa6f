"""`smolforge slurm CONFIG --nodes N --gpus-per-node G`: write the sbatch script and say how to submit it."""

from __future__ import annotations

import os
import shlex
from pathlib import Path

from smolforge.commands.launchfit import check_gpu
from smolforge.errors import SmolforgeError
from smolforge.launchers.slurm import SlurmRequest, render, resolve
from smolforge.plan.gpus import lookup
from smolforge.runfolder import atomic_write_text


def slurm_command(req: SlurmRequest, console) -> Path:
    """Write the script (never over an existing file without --force) and say how to submit it."""
    if req.gpu is not None:
        lookup(req.gpu)  # an unknown name fails before the config is read
    resolved = resolve(req)
    script = req.output or Path(f"{resolved.run_dir.name}.sbatch")
    if script.exists() and not req.force:
        raise SmolforgeError(f"{script} already exists. Pass --force to replace it, or --output another file.")
    if req.gpu is not None:
        check_gpu(resolved.facts.cfg, lookup(req.gpu).name, req.gpu, console, lambda g: f"--gpu {g.name}")
    atomic_write_text(script, render(req, resolved, script.resolve()))
    os.chmod(script, os.stat(script).st_mode | 0o111)
    run_dir = resolved.run_dir
    console.print(f"Wrote {script} for {req.nodes} nodes x {req.gpus_per_node} GPUs; the run folder will be "
                  f"{run_dir} (it must be on a filesystem every node shares).", markup=False)
    if (run_dir / "config.yaml").exists():
        console.print(f"{run_dir} already holds a run: the job continues it (--resume).", markup=False)
    console.print(f"Submit it with:  sbatch {shlex.quote(str(script))}", markup=False)
    return script
