"""`smolforge dashboard RUN_DIR`: the trackio dashboard of a run (its local metrics, or its Space)."""

from __future__ import annotations

from pathlib import Path

from smolforge.runfolder import RunFolder
from smolforge.tracking import show_dashboard


def dashboard_command(run_dir: Path, port: int | None, open_browser: bool, console) -> None:
    """Serve the run's metrics on 127.0.0.1 until Ctrl-C (a run tracked in a Space: its link)."""
    show_dashboard(RunFolder.existing(run_dir), port, open_browser, console)
