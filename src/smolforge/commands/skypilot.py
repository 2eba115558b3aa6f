"""`smolforge skypilot CONFIG --gpus H100:8 [--nodes N] ...`: write the SkyPilot task and say how to launch it."""

from __future__ import annotations

from pathlib import Path

from smolforge.commands.launchfit import check_gpu
from smolforge.errors import SmolforgeError
from smolforge.evaluation.taskfile import task_input_files
from smolforge.launchers.skypilot import PLAN_GPUS, SkyRequest, add_install, render, resolve
from smolforge.runfolder import atomic_write_text


def skypilot_command(req: SkyRequest, console) -> Path:
    """Check, then write the task (never over an existing file without --force) and print the launch command."""
    resolved = resolve(req, task_input_files)
    task = req.output or Path(f"{Path(resolved.run_dir).name}.sky.yaml")
    if task.exists() and not req.force:
        raise SmolforgeError(f"{task} already exists. Pass --force to replace it, or --output another file.")
    reverse = {plan: sky for sky, plan in PLAN_GPUS.items()}
    check_gpu(resolved.facts.cfg, PLAN_GPUS.get(req.accelerator.upper()), req.accelerator, console,
              lambda g: f"--gpus {reverse[g.name]}:{req.gpus_per_node}" if g.name in reverse else g.label)
    add_install(req, resolved, task.resolve())
    text = render(req, resolved, task.resolve())
    atomic_write_text(task, text)
    up = sum(u.size for u in resolved.inputs) + (resolved.install_upload.stat().st_size
                                                   if resolved.install_upload else 0)
    console.print(f"Wrote {task} for {req.nodes} node{'s' if req.nodes > 1 else ''} x {req.gpus_per_node} "
                  f"{req.accelerator}; the run folder will be {resolved.run_dir} on the nodes"
                  + (f", kept in {req.output_bucket}." if req.output_bucket else " (node 0's disk)."), markup=False)
    console.print(f"Uploads {len(resolved.inputs)} input{'s' if len(resolved.inputs) != 1 else ''} and smolforge "
                  f"({up / 1e6:,.1f} MB); setup installs smolforge from {resolved.install}.", markup=False)
    for name, why in resolved.secrets.items():
        console.print(f"Set {name} in this shell first ({why}); SkyPilot passes it on, the file holds no value.",
                      markup=False)
    launch = next(line.split("Launch:", 1)[1].strip() for line in text.splitlines() if "Launch:" in line)
    console.print(f"Launch it with:  {launch}", markup=False)
    return task
