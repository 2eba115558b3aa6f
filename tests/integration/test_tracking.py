"""trackio: rows written locally for a run, its config logged (redacted), and `smolforge dashboard`."""

from __future__ import annotations

import json
import socket
import sqlite3
import subprocess
import time
import urllib.request

from tests.conftest import SMOLFORGE, run_cli


def test_trackio_rows_and_config_are_written_locally(tiny_run):
    results = json.loads((tiny_run / "results.json").read_text())
    tracking = results["tracking"]
    assert tracking["backend"] == "trackio" and tracking["project"] == "shared" and "url" not in tracking
    db = sqlite3.connect(f"{tracking['dir']}/{tracking['project']}.db")
    rows = [json.loads(m) for (m,) in db.execute("select metrics from metrics where run_name = 'shared'")]
    losses = [r["train/loss"] for r in rows if "train/loss" in r]
    evals = [r["eval/loss"] for r in rows if "eval/loss" in r]
    assert len(losses) >= 5 and len(evals) >= 3
    assert evals[-1] == results["eval_loss"]
    (config,) = db.execute("select config from configs where run_name = 'shared'").fetchone()
    config = json.loads(config)
    assert config["smolforge"]["experiment_name"] == "shared"
    assert config["smolforge"]["training"]["max_steps"] == 24
    assert config["hub_token"] == "<HUB_TOKEN>"  # transformers masks its own token field


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_dashboard_serves_the_runs_project(tiny_run, tmp_path):
    """Waits for the event, not for luck: the link line (printed once trackio's server is up), then the page."""
    import threading

    port = _free_port()
    proc = subprocess.Popen([SMOLFORGE, "dashboard", str(tiny_run), "--port", str(port), "--no-browser"],
                            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True)
    reader.start()
    try:
        deadline = time.time() + 60
        while time.time() < deadline and not any("trackio dashboard for project" in line for line in lines):
            if proc.poll() is not None:
                reader.join(5)
                raise AssertionError("".join(lines))
            time.sleep(0.2)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10) as r:
            assert r.status == 200
    finally:
        proc.terminate()
        proc.wait(timeout=20)
        reader.join(5)
    out = "".join(lines)
    assert f"http://127.0.0.1:{port}?project=shared" in out  # the link to open, said by smolforge
    assert "opened in browser" not in out and "\x1b[" not in out  # --no-browser, and no colour codes in a pipe


def test_dashboard_of_an_untracked_run_says_why(run_copy, tmp_path):
    results = json.loads((run_copy / "results.json").read_text())
    results.pop("tracking")
    (run_copy / "results.json").write_text(json.dumps(results))
    proc = run_cli("dashboard", str(run_copy), "--no-browser", cwd=tmp_path, check=False)
    assert proc.returncode == 2 and "no tracking record" in proc.stderr
