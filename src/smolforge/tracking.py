"""Experiment tracking with trackio: local SQLite by default, a private Space only on request.

The trainer logs through transformers' trackio integration (`report_to="trackio"`, project =
experiment, run name = experiment); this module points trackio at the right folder before it is
imported, records where the metrics went for results.json and the card, and opens the
dashboard of a finished run.
"""

from __future__ import annotations

import io
import logging
import os
import re
from contextlib import contextmanager, redirect_stdout
from pathlib import Path
from typing import Any

from smolforge import processenv
from smolforge.config import SmolforgeConfig, dump_dict
from smolforge.credentials import redact_data
from smolforge.errors import SmolforgeError
from smolforge.hubclient import endpoint_from_env
from smolforge.netports import choose_port
from smolforge.runfolder import RunFolder

log = logging.getLogger("smolforge.tracking")
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


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

            out["url"] = f"{endpoint_from_env(cfg.publish.endpoint)}/spaces/{tr.space_id}"
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
        console.print(f"This run logged to a trackio Space: {tracking['url']}", markup=False)
        if open_browser:
            import webbrowser

            webbrowser.open(tracking["url"])
        return
    folder = Path(tracking["dir"])
    if not folder.is_dir():
        raise SmolforgeError(f"The trackio folder of this run, {folder}, no longer exists. Set TRACKIO_DIR to "
                             "where the metrics are now, or re-run the training.")

    port = choose_port(port)
    processenv.quiet_libraries()
    os.environ["TRACKIO_DIR"] = str(folder)
    import trackio

    with _to_log():  # trackio's own lines carry terminal colour codes and say a browser opened when none did
        _, _, _, url = trackio.show(project=tracking["project"], open_browser=False, block_thread=False,
                                    host="127.0.0.1", server_port=port)
    console.print(f"trackio dashboard for project {tracking['project']!r}: {url}", markup=False)
    console.print("The link carries a write token for these metrics: share it only with people you trust. Ctrl-C "
                  "stops the dashboard.", markup=False)
    if open_browser:
        import webbrowser

        webbrowser.open(url)
    trackio.utils.block_main_thread_until_keyboard_interrupt()


@contextmanager
def _to_log():
    """trackio prints status lines (with colour codes, and "Uploading logs" even for local runs): they go to the
    run's log instead of the console, where smolforge says what happened in its own words."""
    buffer = io.StringIO()
    with redirect_stdout(buffer):
        yield
    for line in buffer.getvalue().splitlines():
        clean = _ANSI.sub("", line).strip()
        if clean:
            log.info("trackio: %s", clean)


def quiet_callbacks(trainer) -> None:
    """Route the prints of transformers' trackio callback (init, finish) to the log."""
    for cb in trainer.callback_handler.callbacks:
        if type(cb).__name__ != "TrackioCallback":
            continue
        for name in ("setup", "on_train_end"):
            original = getattr(cb, name)

            def wrapped(*args, __original=original, **kwargs):
                with _to_log():
                    return __original(*args, **kwargs)

            setattr(cb, name, wrapped)


def drop_points_after(cfg: SmolforgeConfig, step: int) -> int:
    """On resume from a checkpoint at `step`: delete the run's points logged after it (they are trained again).

    trackio resumes a run by name and appends, and it has no call that removes points after a step, so
    its SQLite table is edited here. Returns the number of rows removed."""
    import sqlite3

    from trackio.sqlite_storage import SQLiteStorage

    project = cfg.tracking.project or cfg.experiment_name
    db = SQLiteStorage.get_project_db_path(project)
    if not Path(db).is_file():
        return 0
    # trackio numbers points itself; the trainer's step is the metric `train/global_step` inside each point
    with sqlite3.connect(db) as conn:
        removed = conn.execute("DELETE FROM metrics WHERE run_name = ? AND "
                               "json_extract(CAST(metrics AS TEXT), '$.\"train/global_step\"') > ?",
                               (cfg.experiment_name, step)).rowcount
    if removed:
        log.info("trackio: removed %d points after step %d (they are trained again after the resume)", removed, step)
    return removed


def config_callback(cfg: SmolforgeConfig):
    """A TrainerCallback that adds smolforge's resolved config (redacted) to the trackio run's config.

    transformers' trackio integration logs the TrainingArguments (with hub_token masked); the
    smolforge config says what the run *is* (preset, data, card inputs) and is what a reader of the
    dashboard wants next to the curves.
    """
    from transformers import TrainerCallback

    config = redact_data(dump_dict(cfg))

    class SmolforgeConfigToTrackio(TrainerCallback):
        def on_train_begin(self, args, state, control, **kwargs):
            if not state.is_world_process_zero:
                return
            import trackio

            if trackio.context_vars.current_run.get() is not None:
                trackio.config.update({"smolforge": config}, allow_val_change=True)

    return SmolforgeConfigToTrackio()
