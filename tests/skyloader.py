"""SkyPilot's own loader, run in the SkyPilot virtualenv (`make sky`: skypilot pins a click that huggingface_hub
does not accept, so it cannot share smolforge's): each task file as SkyPilot reads it, offline, as JSON."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

SKY_PYTHON = Path(__file__).resolve().parents[1] / ".venv-sky" / "bin" / "python"

_LOADER = r"""
import json, sys
import yaml
import sky
from sky.utils import schemas

out = []
for path in sys.argv[1:]:
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
print(json.dumps(out))
"""

_INFRA = r"""
import json
from sky.utils import schemas
print(json.dumps(schemas.get_resources_schema()["properties"]["infra"]["pattern"]))
"""


def _python(code: str, *args: str) -> str:
    assert SKY_PYTHON.exists(), f"{SKY_PYTHON} is missing: run `make sky` (make test does)"
    proc = subprocess.run([str(SKY_PYTHON), "-c", code, *args], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def load_tasks(*paths: Path) -> list[dict]:
    """Each task as SkyPilot loads it (schema-validated, secrets given as `--secret` would give them)."""
    return json.loads(_python(_LOADER, *map(str, paths)))


def infra_pattern() -> str:
    """The regular expression SkyPilot's schema checks `resources.infra` with."""
    return json.loads(_python(_INFRA))
