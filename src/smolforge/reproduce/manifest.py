"""manifest.json: the reproducibility record each run writes beside results.json, before it trains.

It holds the exact command, the resolved config (and the SHA-256 of config.yaml as written), the seeds,
the environment (`environment.capture`: smolforge, every installed package, Python and torch builds, the
device), the data's identity (the SHA-256 of every local file, or the Hub dataset's commit) and the base
model's (its Hub commit, or the SHA-256 of its files). `smolforge reproduce` re-runs from it and checks the
result. A resumed run appends what changed in the environment since the run started.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timezone
from typing import Any

from smolforge.config import SmolforgeConfig, dump_dict
from smolforge.credentials import redact
from smolforge.errors import SmolforgeError
from smolforge.reproduce.environment import capture, differences
from smolforge.reproduce.identity import data_identity, model_identity, reward_identity
from smolforge.runfolder import RunFolder, atomic_write_text

SCHEMA_VERSION = 1


def build(cfg: SmolforgeConfig, run: RunFolder, command: str | None, data) -> dict[str, Any]:
    config_text = run.config_path.read_text(encoding="utf-8") if run.config_path.is_file() else None
    return {
        "schema_version": SCHEMA_VERSION,
        "written_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": command,
        "config": dump_dict(cfg),
        "config_yaml_sha256": hashlib.sha256(config_text.encode()).hexdigest() if config_text else None,
        "seeds": {"training": cfg.training.seed, "data": cfg.data.seed},
        "environment": capture(),
        "data": data_identity(cfg, data),
        "model": model_identity(cfg),
        **({"rewards": reward_identity(cfg)} if cfg.training.method == "grpo" else {}),
    }


def write(run: RunFolder, manifest: dict[str, Any]) -> None:
    text = json.dumps(manifest, indent=2, ensure_ascii=False)
    atomic_write_text(run.manifest_path, redact(text) + "\n")


def read(run: RunFolder) -> dict[str, Any]:
    """The run's manifest; a run without one (trained before smolforge wrote them) is explained."""
    if not run.manifest_path.is_file():
        raise SmolforgeError(
            f"{run.root} has no manifest.json (it was removed, or the run was trained before smolforge recorded "
            "one), so the installed packages, the data's SHA-256 or Hub commit and the base model's revision it "
            "trained with are not "
            f"known, and a re-run could not be checked against them. Its config.yaml is there: `smolforge run "
            f"{run.config_path} --output-dir NEW` trains it again, but the result cannot be called a reproduction.")
    try:
        data = json.loads(run.manifest_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise SmolforgeError(f"{run.manifest_path} cannot be read ({type(e).__name__}). Restore it from a copy of "
                             "the run folder.") from None
    missing = [k for k in ("config", "environment", "data", "model") if k not in data]
    if not isinstance(data, dict) or missing:
        raise SmolforgeError(f"{run.manifest_path} lacks {', '.join(missing) or 'its fields'}. Restore it from a "
                             "copy of the run folder.")
    return data


def record_resume(run: RunFolder, command: str | None) -> None:
    """A resumed segment: when, with which command, and what differs from the environment the run started in."""
    if not run.manifest_path.is_file():
        return
    manifest = read(run)
    manifest.setdefault("resumes", []).append({
        "at": datetime.now(timezone.utc).isoformat(timespec="seconds"), "command": command,
        "environment_differences": differences(manifest["environment"], capture())})
    write(run, manifest)
