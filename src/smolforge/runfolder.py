"""The run folder: the only contract between stages.

    runs/<experiment>/config.yaml     resolved config as trained (secrets redacted); never rewritten
                      overrides.yaml  card:/publish:/evaluation: choices made after training (card, publish,
                                      evaluate)
                      results.json    measured numbers (train/eval/quantization/evaluation/publish), and the
                                      memory/time plan next to what was measured
                      manifest.json   reproducibility record: command, config, environment, data and model
                                      identity (smolforge reproduce)
                      data_report.json  what training sees of the data, written before it starts (`smolforge data
                                      check` prints the same)
                      evaluation/     per-item benchmark results, base and fine-tune
                      model/        what gets published, README.md = the card
                      checkpoints/  resumable trainer checkpoints, never published
                      quantized/    one loadable folder per variant
                      logs/         plain-text logs

Every stage reads and writes through this class, so `smolforge card|quantize|publish RUN_DIR`
can re-run any stage alone. Writes are atomic (temp file + rename): nothing half-written, and
files get the same permissions as any other file the user creates (the umask).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import socket
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from smolforge.config.loading import deep_merge, validate
from smolforge.credentials import redact
from smolforge.errors import SmolforgeError, first_line


def umask_mode(mode: int = 0o666) -> int:
    """`mode` as the user's umask leaves it (what open() would give a new file)."""
    umask = os.umask(0)
    os.umask(umask)
    return mode & ~umask


def share_like_other_files(folder: Path) -> None:
    """Give `folder` and everything under it the modes the umask gives new files and folders (some writers
    create owner-only ones: safetensors' writer, mkstemp, mkdtemp)."""
    file_mode, dir_mode = umask_mode(), umask_mode(0o777)
    folder.chmod(dir_mode)
    for p in folder.rglob("*"):
        if p.is_dir():
            p.chmod(dir_mode)
        elif p.is_file():
            p.chmod(file_mode)


def file_sha256(path: Path) -> str:
    """Hex SHA-256 of a file's bytes, read in blocks (weights can be gigabytes)."""
    import hashlib

    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def atomic_write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
            f.write(text)
        os.chmod(tmp, umask_mode())  # mkstemp makes owner-only files; a run folder is shared like any other
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _owner_gone(name: str, prefix: str) -> bool:
    """A scratch folder `<prefix><host>-<pid>-<random>` whose process (on this machine) no longer runs."""
    parts = name[len(prefix):].rsplit("-", 2)
    if len(parts) != 3 or parts[0] != socket.gethostname() or not parts[1].isdigit():
        return False  # another machine's (a run folder on a shared filesystem), or not one of ours
    try:
        os.kill(int(parts[1]), 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, someone else's
        return False
    return False


@contextmanager
def scratch_dir(parent: Path, prefix: str) -> Iterator[Path]:
    """A work folder inside the run folder, removed when the work is done. A stage that was killed cannot
    remove its own: one left by a process of this machine that no longer runs (same prefix) is removed first."""
    parent.mkdir(parents=True, exist_ok=True)
    for leftover in parent.glob(f"{prefix}*"):
        if leftover.is_dir() and _owner_gone(leftover.name, prefix):
            shutil.rmtree(leftover, ignore_errors=True)
    tmp = Path(tempfile.mkdtemp(prefix=f"{prefix}{socket.gethostname()}-{os.getpid()}-", dir=parent))
    try:
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def place_atomically(tmp: Path, dest: Path) -> None:
    """Replace `dest` by the finished folder `tmp`; a reader never sees half a variant."""
    with scratch_dir(dest.parent, f".{dest.name}-old-") as old:
        if dest.exists():
            os.replace(dest, old / dest.name)
        try:
            os.replace(tmp, dest)
        except BaseException:
            if (old / dest.name).exists() and not dest.exists():
                os.replace(old / dest.name, dest)  # put the previous one back
            raise


def _finite(obj: Any) -> Any:
    """JSON has no NaN/inf: a non-finite measurement is dropped (absent, never made up)."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items() if not (isinstance(v, float) and not math.isfinite(v))}
    if isinstance(obj, list):
        return [_finite(v) for v in obj]
    return obj


CONFIG_HEADER = "# Resolved smolforge config: exactly what this run trained with (secrets redacted).\n"
OVERRIDES_HEADER = ("# Card and publish choices made after training (smolforge card / publish), layered over\n"
                    "# config.yaml by every stage that reads this run's config.\n")
OVERRIDABLE = ("card", "publish", "evaluation")


@dataclass(frozen=True)
class RunFolder:
    root: Path

    @property
    def config_path(self) -> Path:
        return self.root / "config.yaml"

    @property
    def results_path(self) -> Path:
        return self.root / "results.json"

    @property
    def manifest_path(self) -> Path:
        return self.root / "manifest.json"

    @property
    def data_report_path(self) -> Path:
        return self.root / "data_report.json"

    @property
    def model_dir(self) -> Path:
        return self.root / "model"

    @property
    def card_path(self) -> Path:
        return self.model_dir / "README.md"

    @property
    def checkpoints_dir(self) -> Path:
        return self.root / "checkpoints"

    @property
    def quantized_dir(self) -> Path:
        return self.root / "quantized"

    @property
    def logs_dir(self) -> Path:
        return self.root / "logs"

    @property
    def evaluation_dir(self) -> Path:
        return self.root / "evaluation"

    @property
    def overrides_path(self) -> Path:
        return self.root / "overrides.yaml"

    # ---- config
    @classmethod
    def existing(cls, path: Path) -> RunFolder:
        """The run folder at `path`; an error naming the fix when it is not one."""
        run = cls(path)
        if not run.root.is_dir():
            raise SmolforgeError(f"Run folder {run.root} does not exist. Pass the folder that `smolforge run` "
                                 "printed (runs/<experiment_name> by default).")
        if not run.config_path.is_file():
            raise SmolforgeError(f"{run.root} is not a smolforge run folder (no config.yaml). "
                                 "Pass the folder that `smolforge run` printed, e.g. runs/<experiment_name>.")
        return run

    @staticmethod
    def config_text(data: dict[str, Any], header: str = CONFIG_HEADER) -> str:
        return header + redact(yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=100))

    def write_config(self, data: dict[str, Any]) -> None:
        """config.yaml is written once, when training starts: afterwards it is the record of what was trained."""
        atomic_write_text(self.config_path, self.config_text(data))

    def _read_yaml(self, path: Path) -> dict[str, Any]:
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
            raise SmolforgeError(f"{path} cannot be read ({type(e).__name__}: {first_line(e)}). "
                                 "Restore it, or start the run again.") from None
        if not isinstance(data, dict):
            raise SmolforgeError(f"{path} is not a YAML mapping. Restore it, or start the run again.")
        return data

    def trained_config_data(self) -> dict[str, Any]:
        """config.yaml exactly as trained (what --resume compares and continues)."""
        if not self.config_path.is_file():
            raise SmolforgeError(f"{self.root} is not a smolforge run folder (no config.yaml). "
                                 "Pass the folder that `smolforge run` printed, e.g. runs/<experiment_name>.")
        return self._read_yaml(self.config_path)

    def read_overrides(self) -> dict[str, Any]:
        return self._read_yaml(self.overrides_path) if self.overrides_path.is_file() else {}

    def write_overrides(self, values: dict[str, Any]) -> None:
        """Record card:/publish: choices made after training (merged into the earlier ones)."""
        unknown = sorted(k for k in values if k not in OVERRIDABLE)
        if unknown:
            raise ValueError(f"only {', '.join(OVERRIDABLE)} can change after training, not {', '.join(unknown)}")
        merged = deep_merge(self.read_overrides(), values)
        atomic_write_text(self.overrides_path, self.config_text(merged, OVERRIDES_HEADER))

    def read_config_data(self) -> dict[str, Any]:
        """The config the stages after training use: config.yaml with overrides.yaml layered on top."""
        return deep_merge(self.trained_config_data(), self.read_overrides())

    def read_config(self):
        source = str(self.config_path) + (f" with {self.overrides_path.name}" if self.overrides_path.is_file() else "")
        return validate(self.read_config_data(), source)

    def finished(self) -> bool:
        """Training ended and saved its model (results.json records the steps; model/ holds weights)."""
        results = self.read_results()
        return bool(results.get("global_steps")) and self.model_dir.is_dir() and \
            any(self.model_dir.glob("*.safetensors"))

    def require_finished(self) -> RunFolder:
        if not self.finished():
            has_model = self.model_dir.is_dir() and any(self.model_dir.glob("*.safetensors"))
            if has_model and not self.results_path.is_file():
                missing = f"its {self.model_dir.name}/ holds weights, but {self.results_path.name} is missing"
            elif has_model:
                missing = f"{self.results_path.name} records no training steps"
            else:
                missing = f"no trained model in {self.model_dir}"
            raise SmolforgeError(f"{self.root}: this run did not finish ({missing}), so there is nothing to describe, "
                                 f"quantize or publish yet. Finish it with `smolforge run {self.root} --resume` (or "
                                 "restore the file from a copy of the run folder), or pass the folder of a finished "
                                 "run.")
        return self

    # ---- results
    def read_results(self) -> dict[str, Any]:
        if not self.results_path.exists():
            return {}
        try:
            return json.loads(self.results_path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise SmolforgeError(f"{self.results_path} is not valid JSON ({e}). Re-run the stage that "
                                 "writes it, or restore the file.") from None

    def write_results(self, results: dict[str, Any]) -> None:
        text = json.dumps(_finite(results), indent=2, ensure_ascii=False, allow_nan=False)
        atomic_write_text(self.results_path, redact(text) + "\n")

    def write_data_report(self, report: dict[str, Any]) -> None:
        text = json.dumps(_finite(report), indent=2, ensure_ascii=False, allow_nan=False)
        atomic_write_text(self.data_report_path, redact(text) + "\n")

    def update_results(self, **sections: Any) -> dict[str, Any]:
        results = self.read_results()
        results.update(sections)
        self.write_results(results)
        return results
