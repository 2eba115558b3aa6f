"""What the UI does, as plain functions of JSON-able values: the app's buttons call them, and each is also a named
Gradio API endpoint (`validate`, `plan`, `start`, `status`, `stop`, `runs`) for `gradio_client`."""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from smolforge.config import SmolforgeConfig
from smolforge.errors import SmolforgeError
from smolforge.evaluation.taskfile import task_input_files
from smolforge.launchers.skypilot import local_inputs
from smolforge.plan.configured import plan_config
from smolforge.plan.report import record, table_rows
from smolforge.webui import runs as runs_mod
from smolforge.webui.configs import Problem, problems


@dataclass
class UiContext:
    """Where the UI reads and writes: the runs folder, the working directory runs start in, and (when the UI is
    reachable from other machines) the only folders a config may read files from."""

    runs_dir: Path
    cwd: Path
    allowed_roots: list[Path] | None = None  # None: any path (the UI listens on loopback only)


def _outside_roots(cfg: SmolforgeConfig, ctx: UiContext) -> list[Problem]:
    if ctx.allowed_roots is None:
        return []
    try:
        inputs = local_inputs(cfg, None, task_input_files)
    except SmolforgeError as e:
        return [Problem(None, str(e))]
    roots = [r.resolve() for r in ctx.allowed_roots]

    def inside(path: Path) -> bool:
        path = (path if path.is_absolute() else ctx.cwd / path).resolve()
        return any(path == r or r in path.parents for r in roots)

    named = [(up.what, up.local) for up in inputs.distinct()]
    named += [(key, Path(value).expanduser()) for key, value in (("output_dir", cfg.output_dir),
                                                                 ("tracking.dir", cfg.tracking.dir)) if value]
    return [Problem(what if what != "config" else None,
                    f"{path} is outside the folders this UI may use ({', '.join(map(str, roots))}): it listens "
                    "beyond this machine, so a config may only name files and folders under them. Move it there, "
                    "or start the UI on 127.0.0.1.")
            for what, path in named if not inside(path)]


def check(config_yaml: str, ctx: UiContext) -> tuple[SmolforgeConfig | None, list[Problem]]:
    cfg, found = problems(config_yaml, ctx.runs_dir)
    if cfg is not None:
        found += _outside_roots(cfg, ctx)
    return cfg, found


def validate(config_yaml: str, ctx: UiContext) -> list[dict[str, Any]]:
    """Every problem `smolforge run` would stop on, each naming its setting (None: the config as a whole)."""
    return [p.as_dict() for p in check(config_yaml, ctx)[1]]


def plan(config_yaml: str, gpu: str | None, ctx: UiContext) -> dict[str, Any]:
    """`smolforge plan` of the config on `gpu` (empty: this machine): the table's rows and the JSON record."""
    cfg, found = check(config_yaml, ctx)
    if found or cfg is None:
        raise SmolforgeError("Fix the config first: " + "; ".join(
            f"{p.setting}: {p.message}" if p.setting else p.message for p in found))
    from rich.console import Console

    notes = io.StringIO()
    est, *_ = plan_config(cfg, gpu or None, Console(file=notes, highlight=False, soft_wrap=True, emoji=False))
    return {"rows": [list(r) for r in table_rows(est)], "notes": notes.getvalue().strip(), "record": record(est)}


def start(config_yaml: str, ctx: UiContext, env: dict[str, str] | None = None) -> str:
    """Start the run; its folder."""
    cfg, found = check(config_yaml, ctx)
    if found:
        raise SmolforgeError("The run cannot start: " + "; ".join(
            f"{p.setting}: {p.message}" if p.setting else p.message for p in found))
    return str(runs_mod.start(config_yaml, ctx.runs_dir, ctx.cwd, env).run_dir)


def status(run_dir: str, ctx: UiContext) -> dict[str, Any]:
    return runs_mod.status(run_path(run_dir, ctx), ctx.runs_dir)


def stop(run_dir: str, ctx: UiContext) -> dict[str, Any]:
    return runs_mod.stop(run_path(run_dir, ctx), ctx.runs_dir)


def runs(ctx: UiContext) -> list[dict[str, Any]]:
    return runs_mod.list_runs(ctx.runs_dir)


def run_path(run_dir: str, ctx: UiContext) -> Path:
    """A run folder as typed: absolute, or by its name in the runs folder, or relative to the working directory."""
    path = Path(run_dir).expanduser()
    if not path.is_absolute():
        path = ctx.runs_dir / path if (ctx.runs_dir / path).is_dir() else ctx.cwd / path
    if not path.is_dir() and not runs_mod.known(path, ctx.runs_dir):
        raise SmolforgeError(f"{run_dir} is not a run folder (the runs endpoint lists the runs this UI knows).")
    return path
