"""The run folder: the only contract between stages.

    runs/<experiment>/config.yaml   resolved config as trained (secrets redacted)
                      results.json  measured numbers (train/eval/quantization/publish)
                      model/        what gets published, README.md = the card
                      checkpoints/  resumable trainer checkpoints, never published
                      quantized/    one loadable folder per variant
                      logs/         plain-text logs

Every stage reads and writes through this class, so `smolforge card|quantize|publish RUN_DIR`
can re-run any stage alone. Writes are atomic (temp file + rename): nothing half-written.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from smolforge.credentials import redact
from smolforge.errors import SmolforgeError


def atomic_write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
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

    # ---- config
    @staticmethod
    def config_text(data: dict[str, Any]) -> str:
        header = "# Resolved smolforge config: exactly what this run trained with (secrets redacted).\n"
        return header + redact(yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=100))

    def write_config(self, data: dict[str, Any]) -> None:
        atomic_write_text(self.config_path, self.config_text(data))

    def read_config_data(self) -> dict[str, Any]:
        if not self.config_path.exists():
            raise SmolforgeError(f"{self.root} is not a smolforge run folder (no config.yaml). "
                                 "Pass the folder that `smolforge run` printed, e.g. runs/<experiment_name>.")
        return yaml.safe_load(self.config_path.read_text(encoding="utf-8")) or {}

    def read_config(self):
        from smolforge.configfile import validate

        return validate(self.read_config_data(), str(self.config_path))

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

    def update_results(self, **sections: Any) -> dict[str, Any]:
        results = self.read_results()
        results.update(sections)
        self.write_results(results)
        return results

    def require(self) -> RunFolder:
        if not self.root.is_dir():
            raise SmolforgeError(f"Run folder {self.root} does not exist. Pass the folder that `smolforge run` "
                                 "printed (runs/<experiment_name> by default).")
        self.read_config_data()
        return self
