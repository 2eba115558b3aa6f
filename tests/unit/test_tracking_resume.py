"""On resume, the points trackio holds after the checkpoint are removed (they are trained and logged again)."""

from __future__ import annotations

import json
import sqlite3

from smolforge.config.loading import load_config
from smolforge.tracking import drop_points_after


def test_points_after_the_checkpoint_step_are_removed_and_only_for_this_run(tmp_path, monkeypatch):
    from trackio.sqlite_storage import SQLiteStorage

    monkeypatch.setattr(SQLiteStorage, "get_project_db_path", staticmethod(lambda project: tmp_path / f"{project}.db"))
    for run in ("mine", "other"):
        for i, global_step in enumerate([5, 10, 15, 20, 25, 30, 35]):  # trackio numbers points itself (i)
            SQLiteStorage.log("proj", run, {"train/loss": 1.0 / global_step, "train/global_step": global_step}, i)
    cfg = load_config(preset="tiny", sets=["experiment_name=mine", "tracking.project=proj"])
    assert drop_points_after(cfg, 20) == 3
    with sqlite3.connect(tmp_path / "proj.db") as conn:
        rows = conn.execute("select run_name, metrics from metrics").fetchall()
    steps = {run: sorted(json.loads(m)["train/global_step"] for r, m in rows if r == run) for run in ("mine", "other")}
    assert steps == {"mine": [5, 10, 15, 20], "other": [5, 10, 15, 20, 25, 30, 35]}
