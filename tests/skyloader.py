"""SkyPilot's own loader, run in the SkyPilot virtualenv (`make sky`: skypilot pins a click that huggingface_hub
does not accept, so it cannot share smolforge's): each task file as SkyPilot reads it, offline, as JSON.

`import sky` takes several seconds, so one loader process serves every test of the session: it reads a request
per line on stdin and answers one JSON line on stdout.
"""

from __future__ import annotations

import atexit
import json
import subprocess
from pathlib import Path

SKY_PYTHON = Path(__file__).resolve().parents[1] / ".venv-sky" / "bin" / "python"

_SERVER = r"""
import json, sys, traceback
import yaml
import sky
from sky.utils import schemas


def load(paths):
    out = []
    for path in paths:
        with open(path) as f:
            config = yaml.safe_load(f)
        secrets = [(k, "value-given-at-launch") for k in (config.get("secrets") or {})]
        sky.Task.from_yaml(path)  # the loader `sky launch task.yaml` runs
        task = sky.Task.from_yaml_config(config, secrets_overrides=secrets)  # ...and with `--secret NAME`
        (res,) = task.resources
        out.append({
            "num_nodes": task.num_nodes, "accelerators": res.accelerators, "use_spot": res.use_spot,
            "job_recovery": res.job_recovery, "disk_size": res.disk_size,
            "cloud": str(res.cloud).lower() if res.cloud else None,
            "file_mounts": task.file_mounts or {},
            "storage_mounts": {k: {"source": s.source, "mode": s.mode.value} for k, s in task.storage_mounts.items()},
            "secrets": sorted(task.secrets), "setup": task.setup, "run": task.run, "name": task.name,
        })
    return out


for line in sys.stdin:
    request = json.loads(line)
    try:
        if request["what"] == "tasks":
            answer = {"ok": load(request["paths"])}
        else:
            answer = {"ok": schemas.get_resources_schema()["properties"]["infra"]["pattern"]}
    except Exception:
        answer = {"error": traceback.format_exc()}
    print(json.dumps(answer), flush=True)
"""

_server: subprocess.Popen | None = None


def _ask(request: dict):
    global _server
    assert SKY_PYTHON.exists(), f"{SKY_PYTHON} is missing: run `make sky` (make test does)"
    if _server is None or _server.poll() is not None:
        _server = subprocess.Popen([str(SKY_PYTHON), "-c", _SERVER], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                   text=True)
        atexit.register(_server.kill)
    _server.stdin.write(json.dumps(request) + "\n")
    _server.stdin.flush()
    line = _server.stdout.readline()
    assert line, f"SkyPilot's loader exited ({_server.wait()})"
    answer = json.loads(line)
    assert "error" not in answer, answer["error"][-3000:]
    return answer["ok"]


def load_tasks(*paths: Path) -> list[dict]:
    """Each task as SkyPilot loads it (schema-validated, secrets given as `--secret` would give them)."""
    return _ask({"what": "tasks", "paths": [str(p) for p in paths]})


def infra_pattern() -> str:
    """The regular expression SkyPilot's schema checks `resources.infra` with."""
    return _ask({"what": "infra"})
