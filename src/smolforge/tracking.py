"""Experiment tracking with trackio: local SQLite by default, a private Space only on request.

The trainer logs through transformers' trackio integration (`report_to="trackio"`, project =
experiment, run name = experiment); this module points trackio at the right folder before it is
imported, records where the metrics went for results.json and the card, and opens the
dashboard of a finished run.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from smolforge.config import SmolforgeConfig
from smolforge.errors import SmolforgeError
from smolforge.runfolder import RunFolder


def setup_env(cfg: SmolforgeConfig) -> None:
    """trackio reads TRACKIO_DIR at import time: set it first when the config names a folder."""
    if cfg.tracking.backend == "trackio" and cfg.tracking.dir:
        os.environ["TRACKIO_DIR"] = str(Path(cfg.tracking.dir).expanduser().resolve())


def info(cfg: SmolforgeConfig) -> dict[str, Any] | None:
    """Where this run's metrics are, for results.json (None when tracking is off)."""
    tr = cfg.tracking
    if tr.backend == "none":
        return None
    out: dict[str, Any] = {"backend": tr.backend, "project": tr.project or cfg.experiment_name,
                           "run_name": cfg.experiment_name}
    if tr.backend == "trackio":
        from trackio.utils import TRACKIO_DIR

        out["dir"] = str(TRACKIO_DIR)
        if tr.space_id:
            out["space_id"] = tr.space_id
            out["url"] = f"https://huggingface.co/spaces/{tr.space_id}"
        if tr.dataset_repo:
            out["dataset_repo"] = tr.dataset_repo
    return out


def show_dashboard(run: RunFolder, port: int | None, open_browser: bool, console) -> None:
    """Serve trackio's dashboard for a run's project on 127.0.0.1 (blocks until Ctrl-C)."""
    tracking = run.read_results().get("tracking")
    if not tracking:
        raise SmolforgeError(f"{run.root} has no tracking record (tracking.backend was none, or training did not "
                             "finish). Runs log to trackio by default; re-run with --set tracking.backend=trackio.")
    if tracking["backend"] != "trackio":
        raise SmolforgeError(f"{run.root} was tracked with {tracking['backend']}, not trackio: open it with "
                             f"{tracking['backend']}'s own viewer.")
    if tracking.get("url"):
        console.print(f"This run logged to a trackio Space: {tracking['url']}")
        if open_browser:
            import webbrowser

            webbrowser.open(tracking["url"])
        return
    folder = Path(tracking["dir"])
    if not folder.is_dir():
        raise SmolforgeError(f"The trackio folder of this run, {folder}, no longer exists. Set TRACKIO_DIR to "
                             "where the metrics are now, or re-run the training.")
    os.environ["TRACKIO_DIR"] = str(folder)
    import trackio

    console.print(f"trackio dashboard for project {tracking['project']!r} (Ctrl-C to stop)")
    trackio.show(project=tracking["project"], open_browser=open_browser, block_thread=True, host="127.0.0.1",
                 server_port=port)


def config_callback(cfg: SmolforgeConfig):
    """A TrainerCallback that adds smolforge's resolved config (redacted) to the trackio run's config.

    transformers' trackio integration logs the TrainingArguments (with hub_token masked); the
    smolforge config says what the run *is* (preset, data, card inputs) and is what a reader of the
    dashboard wants next to the curves.
    """
    import json

    from transformers import TrainerCallback

    from smolforge.config import dump_dict
    from smolforge.credentials import redact

    config = json.loads(redact(json.dumps(dump_dict(cfg))))

    class SmolforgeConfigToTrackio(TrainerCallback):
        def on_train_begin(self, args, state, control, **kwargs):
            if not state.is_world_process_zero:
                return
            import trackio

            if trackio.context_vars.current_run.get() is not None:
                trackio.config.update({"smolforge": config}, allow_val_change=True)

    return SmolforgeConfigToTrackio()
