"""Continuing a run: which run folder, which checkpoint, and whether there is anything left to do.

A checkpoint counts only once it is complete: smolforge writes `smolforge_progress.json` into it
after the trainer saved everything else (see `trainers.CheckpointProgress`), so a checkpoint cut
short by a full disk or a `kill -9` is never resumed from.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
from datetime import datetime
from pathlib import Path
from typing import Any

from smolforge.config import SmolforgeConfig, dump_dict
from smolforge.config.training import LAUNCH_SETTINGS
from smolforge.errors import SmolforgeError
from smolforge.identifiers import slugify
from smolforge.runfolder import RunFolder

PROGRESS_FILE = "smolforge_progress.json"


def default_experiment_name(cfg: SmolforgeConfig, now: datetime | None = None) -> str:
    now = now or datetime.now()
    path = Path(cfg.model.name_or_path.rstrip("/"))
    if path.name == "model" and path.parent.name:  # a run's model/ folder goes by its run's name
        path = path.parent
    model = "tiny" if cfg.model.is_tiny else slugify(path.name)
    method = cfg.training.method + (f"-{cfg.training.finetune}" if cfg.training.adapters else "")
    return f"{model}-{method}-{now:%Y%m%d-%H%M%S}"


def default_run_folder(cfg: SmolforgeConfig) -> RunFolder:
    if cfg.output_dir:
        return RunFolder(Path(cfg.output_dir).expanduser())
    return RunFolder(Path("runs") / str(cfg.experiment_name))


def _comparable(data: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in data.items() if k not in ("experiment_name", "output_dir", "card", "publish")}
    launch = {path.split(".", 1)[1] for path in LAUNCH_SETTINGS}  # where a node joins, not what it trains
    out["training"] = {k: v for k, v in (out.get("training") or {}).items() if k not in launch}
    return out


def with_launch_settings(cfg: SmolforgeConfig, given: SmolforgeConfig) -> SmolforgeConfig:
    """`cfg` (a run's own config) joined the way `given` (this command's) says: node rank, rendezvous, timeout."""
    launch = {path.split(".", 1)[1]: getattr(given.training, path.split(".", 1)[1]) for path in LAUNCH_SETTINGS}
    return cfg.model_copy(update={"training": cfg.training.model_copy(update=launch)})


def _unwritable(root: Path, why: str) -> SmolforgeError:
    return SmolforgeError(f"output_dir: the run folder {root} cannot be created here: {why}. Choose a folder you can "
                          "write to with --output-dir (runs/<experiment_name> is relative to the current folder).")


def _folder_problem(root: Path) -> str | None:
    """Why `root` cannot become a run folder, judged from the nearest part of the path that exists."""
    import os

    if root.exists():
        return None if root.is_dir() else f"{root} is a file"
    parent = next((p for p in root.absolute().parents if p.exists()), None)
    if parent is None or not parent.is_dir():
        return f"{parent} is a file, not a folder"
    if not os.access(parent, os.W_OK | os.X_OK):
        return f"{parent} is not writable"
    return None


def create_new_folder(run: RunFolder) -> None:
    """Make a new run's folder (the first thing a run writes)."""
    try:
        run.root.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise _unwritable(run.root, e.strerror or str(e)) from None


def check_new_folder(run: RunFolder) -> None:
    """A new run needs a folder that can be made, and that holds no run and nothing else (a scheduler's logs/ may
    already be there)."""
    problem = _folder_problem(run.root)
    if problem:
        raise _unwritable(run.root, problem)
    if run.results_path.exists() or run.model_dir.exists() or run.checkpoints_dir.exists():
        raise SmolforgeError(f"The run folder {run.root} already holds a run. Continue it with "
                             f"`smolforge run {shlex.quote(str(run.root))} --resume`, choose another name with "
                             "--experiment-name (or --output-dir), or remove the folder.")
    others = [p for p in run.root.iterdir() if p != run.logs_dir] if run.root.is_dir() else []
    if others and not run.config_path.exists():
        raise SmolforgeError(f"{run.root} exists and holds other files. Choose another --experiment-name or "
                             "--output-dir, or remove that folder.")


def find_resumable(cfg: SmolforgeConfig) -> RunFolder | None:
    """The run to resume for a config: its explicit folder, else the newest run of the same config."""
    if cfg.output_dir or cfg.experiment_name:
        run = default_run_folder(cfg)
        return run if run.config_path.exists() else None
    root = Path("runs")
    if not root.is_dir():
        return None
    wanted = _comparable(dump_dict(cfg))
    candidates = []
    for d in root.iterdir():
        run = RunFolder(d)
        if not run.config_path.exists() or not run.checkpoints_dir.is_dir():
            continue
        try:
            same = _comparable(run.trained_config_data()) == wanted
        except SmolforgeError:  # an unreadable folder is simply not a candidate
            same = False
        if same:
            candidates.append((d.stat().st_mtime, run))
    return max(candidates, key=lambda c: c[0])[1] if candidates else None


def checkpoints(run: RunFolder) -> list[tuple[int, Path, bool]]:
    """(step, folder, complete) for every checkpoint folder, by step."""
    if not run.checkpoints_dir.is_dir():
        return []
    out = []
    for d in run.checkpoints_dir.iterdir():
        m = re.fullmatch(r"checkpoint-(\d+)", d.name)
        if m and d.is_dir():
            out.append((int(m.group(1)), d, (d / PROGRESS_FILE).is_file() and (d / "trainer_state.json").is_file()))
    return sorted(out)


def last_checkpoint(run: RunFolder) -> Path | None:
    complete = [d for _, d, ok in checkpoints(run) if ok]
    return complete[-1] if complete else None


def drop_incomplete_checkpoints(run: RunFolder) -> list[str]:
    """Remove checkpoint folders that were never completed (newer than the last complete one); their names."""
    last = last_checkpoint(run)
    last_step = int(last.name.split("-")[1]) if last else -1
    removed = []
    for step, d, ok in checkpoints(run):
        if not ok and step > last_step:
            shutil.rmtree(d, ignore_errors=True)
            removed.append(d.name)
    return removed


def read_progress(checkpoint: Path | None) -> dict[str, Any]:
    """What smolforge recorded with a checkpoint: token counts, training time and segments so far."""
    if checkpoint is None:
        return {}
    try:
        return json.loads((checkpoint / PROGRESS_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def resume_point(cfg: SmolforgeConfig) -> tuple[SmolforgeConfig, RunFolder, Path | None]:
    """(the run's own config, its folder, the checkpoint to continue from; None = start over) or an error."""
    run = find_resumable(cfg)
    if run is None:
        shared = (" With several nodes, every node must see the run folder on a shared filesystem."
                  if cfg.training.nnodes > 1 else "")
        raise SmolforgeError("--resume: no earlier run of this config was found. Pass the run folder itself "
                             "(smolforge run runs/<experiment> --resume), or start a new run without --resume."
                             + shared)
    given, cfg = cfg, with_launch_settings(run.read_config(), cfg)
    if (cfg.training.nnodes, cfg.training.nproc) != (given.training.nnodes, given.training.nproc):
        t, g = cfg.training, given.training
        raise SmolforgeError(f"--resume: {run.root} trained on {t.nnodes} node(s) x {t.nproc} process(es); it "
                             f"continues on the same topology only (this command asks for {g.nnodes} x {g.nproc}). "
                             f"Pass --nnodes {t.nnodes} --nproc {t.nproc}, or start a new run.")
    if run.finished():
        steps = run.read_results().get("global_steps")
        raise SmolforgeError(f"--resume: {run.root} is already finished (step {steps}/{steps}); nothing to resume. "
                             f"Its results are in {run.results_path}. Start a new run with another "
                             "--experiment-name to train again.")
    if cfg.training.node_rank == 0:  # one node tidies the shared folder; the others read it
        drop_incomplete_checkpoints(run)
    return cfg, run, last_checkpoint(run)
