"""Cache of the base model's evaluation results, so re-evaluating a fine-tune does not redo its base.

A result is reused only when everything that could change it is the same: the base weights (their
content hash for a local folder, the resolved commit for a Hub model), the dtype and device they
ran in, the tokenizer and chat template, the task (its config and data bytes), the reasoning mode,
the evaluation settings that affect scoring, and the versions of lm-eval, transformers and torch.
A Hub model whose commit cannot be resolved from the local cache is never cached. Entries are
JSON files under `$SMOLFORGE_CACHE/eval/`, written atomically.
"""

from __future__ import annotations

import hashlib
import json
import logging
from importlib.metadata import version
from pathlib import Path
from typing import Any

from smolforge.paths import cache_root
from smolforge.runfolder import atomic_write_text

log = logging.getLogger("smolforge.evaluation")
CACHE_VERSION = 1
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".gguf")


def _sha256_file(path: Path, h: Any) -> None:
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)


def model_fingerprint(source: str, revision: str | None = None) -> str | None:
    """Content hash of a local model folder's weights and config, or `repo@commit` for a cached Hub model."""
    path = Path(source).expanduser()
    if path.is_dir():
        h = hashlib.sha256()
        files = sorted(p for p in path.rglob("*") if p.is_file()
                       and (p.suffix in WEIGHT_SUFFIXES or p.name in ("config.json", "adapter_config.json")))
        if not files:
            return None
        for p in files:
            h.update(str(p.relative_to(path)).encode())
            _sha256_file(p, h)
        return "sha256:" + h.hexdigest()
    if revision and len(revision) == 40 and all(c in "0123456789abcdef" for c in revision):
        return f"{source}@{revision}"
    try:
        from huggingface_hub import snapshot_download

        snap = Path(snapshot_download(source, revision=revision, local_files_only=True))
        return f"{source}@{snap.name}"  # snapshot folders are named by commit
    except Exception:  # not cached (or not a repo id): a moving revision like `main` must not be cached
        return None


def tokenizer_fingerprint(tokenizer: Any) -> str:
    """Vocabulary, special tokens and chat template: what decides the exact prompt tokens."""
    blob = json.dumps({"vocab": sorted(tokenizer.get_vocab().items()),
                       "special": {k: str(v) for k, v in tokenizer.special_tokens_map.items()},
                       "template": tokenizer.chat_template}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def runtime_fingerprint(model: Any) -> dict[str, str]:
    """What the numbers depend on beyond weights: where and in which precision they ran, and library versions."""
    import torch

    return {"dtype": str(getattr(model, "dtype", "")), "device": next(model.parameters()).device.type,
            "torch": torch.__version__, "transformers": version("transformers"), "lm_eval": version("lm_eval")}


def cache_key(**parts: Any) -> str:
    blob = json.dumps({"v": CACHE_VERSION, **parts}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:32]


class ResultCache:
    def __init__(self, root: Path | None = None):
        self.root = root or cache_root() / "eval"

    def _path(self, key: str) -> Path:
        return self.root / f"{key}.json"

    def get(self, key: str) -> dict | None:
        path = self._path(key)
        if not path.exists():
            return None
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):  # a damaged entry is recomputed, never trusted
            log.warning("ignoring unreadable evaluation cache entry %s", path)
            return None

    def put(self, key: str, value: dict) -> None:
        atomic_write_text(self._path(key), json.dumps(value, ensure_ascii=False))
