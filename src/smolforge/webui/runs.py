"""Runs the UI starts, watches and stops, and the runs it lists.

A run starts as its own `smolforge run CONFIG --yes` process in a new session (the worker the CLI uses; the UI
never trains in its own process), so closing the browser or the UI stops nothing. What the UI needs to find
it again lives in the runs folder, under UI_DIR: the config as started (`<name>.yaml`), the console output
(`<name>.out`) and the process (`<name>.json`). Progress comes from the run's own log (`logs/run.log`: one
line per logged step), the state from the run folder (trained, a complete checkpoint) and the process.
A stop is SIGTERM, which smolforge answers by saving a checkpoint: the run is then listed as resumable.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from smolforge.errors import SmolforgeError
from smolforge.paths import smolforge_executable
from smolforge.resume import checkpoints, default_experiment_name
from smolforge.runfolder import RunFolder, atomic_write_text
from smolforge.webui.configs import problems, run_folder

UI_DIR = ".smolforge-ui"
_STEP = re.compile(r"^(\S+ \S+) INFO smolforge\.\w+: step (\d+)/(\d+) (.*)$")
_VALUE = re.compile(r"(\w+)=(\S+)")
_CHILDREN: dict[int, subprocess.Popen] = {}  # runs this process started (so their exit codes are known)


@dataclass
class Started:
    run_dir: Path
    pid: int


def _meta_dir(runs_dir: Path) -> Path:
    return runs_dir / UI_DIR


def _problem_text(found) -> str:
    return "; ".join(f"{p.setting}: {p.message}" if p.setting else p.message for p in found)


def start(text: str, runs_dir: Path, cwd: Path, env: dict[str, str] | None = None) -> Started:
    """Start `smolforge run` on the YAML text; refused (SmolforgeError) while the config has problems or the
    folder holds a run, as `smolforge run` refuses it."""
    cfg, found = problems(text, runs_dir)
    if found or cfg is None:
        raise SmolforgeError(f"The run cannot start: {_problem_text(found)}")
    name = cfg.experiment_name or default_experiment_name(cfg)
    cfg = cfg.model_copy(update={"experiment_name": name})
    run = run_folder(cfg, runs_dir)
    root = run.root if run.root.is_absolute() else cwd / run.root
    meta = _meta_dir(runs_dir)
    meta.mkdir(parents=True, exist_ok=True)
    if _alive(_read_meta(root, runs_dir)):
        raise SmolforgeError(f"{root} is being trained by a run this UI started; stop it first or pick another "
                             "experiment name.")
    config = meta / f"{name}.yaml"
    atomic_write_text(config, text)
    argv = [smolforge_executable(), "run", str(config), "--yes", "--experiment-name", name]
    argv += [] if cfg.output_dir else ["--output-dir", str(root)]
    out = (meta / f"{name}.out").open("w", encoding="utf-8")
    proc = subprocess.Popen(argv, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            start_new_session=True, env={**os.environ, **(env or {}), "COLUMNS": "120"})
    out.close()
    _CHILDREN[proc.pid] = proc
    atomic_write_text(meta / f"{name}.json", json.dumps({
        "pid": proc.pid, "run_dir": str(root), "config": str(config), "out": str(meta / f"{name}.out"),
        "argv": argv[1:], "started": datetime.now().isoformat(timespec="seconds")}, indent=2))
    return Started(root, proc.pid)


def _read_meta(run_dir: Path, runs_dir: Path) -> dict[str, Any] | None:
    meta = _meta_dir(runs_dir)
    if not meta.is_dir():
        return None
    for path in meta.glob("*.json"):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if Path(data.get("run_dir", "")) == run_dir:
            return data
    return None


def known(run_dir: Path, runs_dir: Path) -> bool:
    """Whether the UI started a run in `run_dir` (it may not have created the folder yet, or failed first)."""
    return _read_meta(run_dir, runs_dir) is not None


def _exit_code(meta: dict[str, Any] | None) -> int | None:
    if meta is None:
        return None
    proc = _CHILDREN.get(meta["pid"])
    return proc.poll() if proc is not None else None


def _alive(meta: dict[str, Any] | None) -> bool:
    if meta is None:
        return False
    proc = _CHILDREN.get(meta["pid"])
    if proc is not None:
        return proc.poll() is None
    try:
        os.kill(meta["pid"], 0)  # started by an earlier UI: reparented, so no zombie to mistake for a run
    except (ProcessLookupError, PermissionError):
        return False
    return True


def progress(run: RunFolder) -> dict[str, Any]:
    """Steps, losses and the ETA from the run's log: one point per logged step."""
    log = run.logs_dir / "run.log"
    points: list[dict[str, Any]] = []
    times: list[tuple[float, int]] = []
    if log.is_file():
        for line in log.read_text(encoding="utf-8", errors="replace").splitlines():
            m = _STEP.match(line)
            if not m:
                continue
            step, total = int(m.group(2)), int(m.group(3))
            values = {k: float(v) for k, v in _VALUE.findall(m.group(4)) if _number(v)}
            points.append({"step": step, "max_steps": total, **values})
            try:
                stamp = datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp()
                times.append((stamp, step))
            except ValueError:
                pass
    out: dict[str, Any] = {"points": points, "step": None, "max_steps": None, "loss": None, "eta_s": None}
    if points:
        last = points[-1]
        out.update(step=last["step"], max_steps=last["max_steps"],
                   loss=next((p["loss"] for p in reversed(points) if "loss" in p), None))
        if len(times) >= 2 and times[-1][1] > times[0][1]:
            rate = (times[-1][0] - times[0][0]) / (times[-1][1] - times[0][1])
            out["eta_s"] = round(max(0.0, rate * (last["max_steps"] - last["step"])), 1)
    return out


def _number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _tail(path: Path | None, lines: int = 40) -> str:
    if path is None or not path.is_file():
        return ""
    return "\n".join(path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])


def status(run_dir: Path, runs_dir: Path) -> dict[str, Any]:
    """The state of one run: running, finished (trained; the card may still be written while running),
    stopped (a complete checkpoint to resume from), failed, or not started."""
    run = RunFolder(run_dir)
    meta = _read_meta(run_dir, runs_dir)
    out_file = Path(meta["out"]) if meta else None
    alive = _alive(meta)
    complete = [step for step, _, ok in checkpoints(run) if ok]
    if alive:
        state = "running"
    elif run.finished():
        state = "finished"
    elif complete:
        state = "stopped"
    elif meta is not None or run.config_path.is_file():
        state = "failed"
    else:
        state = "not started"
    tail = _tail(out_file)
    info: dict[str, Any] = {"run_dir": str(run_dir), "state": state, "resumable": state == "stopped",
                            "exit_code": _exit_code(meta), "console": tail, **progress(run)}
    if state == "stopped":
        info["checkpoint_step"] = complete[-1]
        info["resume_command"] = f"smolforge run {run_dir} --resume"
    if state == "failed":
        errors = [line for line in tail.splitlines() if line.startswith("error:")]
        info["error"] = errors[-1][len("error:"):].strip() if errors else tail.splitlines()[-1:] or None
    info["card"] = str(run.card_path) if run.card_path.is_file() else None
    return info


def stop(run_dir: Path, runs_dir: Path, wait_s: float = 120.0) -> dict[str, Any]:
    """SIGTERM to the run's process group: smolforge saves a checkpoint and exits; wait for it."""
    meta = _read_meta(run_dir, runs_dir)
    if not _alive(meta):
        raise SmolforgeError(f"{run_dir} is not running (only runs this UI started can be stopped here).")
    try:
        os.killpg(meta["pid"], signal.SIGTERM)
    except ProcessLookupError:
        pass
    deadline = time.monotonic() + wait_s
    while _alive(meta) and time.monotonic() < deadline:
        time.sleep(0.2)
    return status(run_dir, runs_dir)


def list_runs(runs_dir: Path) -> list[dict[str, Any]]:
    """Every run folder in runs_dir (and every run the UI started elsewhere), newest first."""
    folders = {p for p in runs_dir.iterdir() if (p / "config.yaml").is_file()} if runs_dir.is_dir() else set()
    meta = _meta_dir(runs_dir)
    if meta.is_dir():
        for path in meta.glob("*.json"):
            try:
                folders.add(Path(json.loads(path.read_text(encoding="utf-8"))["run_dir"]))
            except (OSError, ValueError, KeyError):
                continue
    rows = []
    for folder in folders:
        run = RunFolder(folder)
        info = status(folder, runs_dir)
        try:
            config = run.read_config_data() if run.config_path.is_file() else {}
        except SmolforgeError:
            config = {}
        results = run.read_results() if run.results_path.is_file() else {}
        training = config.get("training") or {}
        method = training.get("method", "?") + (f" ({training['finetune']})" if training.get("finetune") else "")
        when = folder.stat().st_mtime if folder.exists() else 0.0
        rows.append({"name": folder.name, "run_dir": str(folder), "state": info["state"], "method": method,
                     "base": (config.get("model") or {}).get("name_or_path"), "headline": _headline(results),
                     "modified": datetime.fromtimestamp(when).isoformat(timespec="seconds") if when else None})
    return sorted(rows, key=lambda r: r["modified"] or "", reverse=True)


def _headline(results: dict[str, Any]) -> str | None:
    for key, label in (("eval_loss", "eval loss"), ("final_train_loss", "train loss"), ("train_loss", "train loss")):
        if isinstance(results.get(key), (int, float)):
            return f"{label} {results[key]:.4f}"
    return None
