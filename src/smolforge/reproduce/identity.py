"""What exactly a run trained on: the data's and the base model's identity.

Local data: the SHA-256 of every file the run read. A Hub dataset: the commit it was read at (datasets
resolves the revision to a commit and keeps it in the cache path; a branch name like "main" moves, a
commit does not). The base model: the Hub commit of its config.json in the cache, the SHA-256 of every
file of a local model folder, or, for `tiny`, of the locally built weights and tokenizer.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from smolforge.builtin_data import BUILTIN_FILES
from smolforge.config import SmolforgeConfig
from smolforge.config.training import split_reward
from smolforge.data import is_local_source
from smolforge.data.sources import source_files
from smolforge.modelio import model_source
from smolforge.runfolder import file_sha256

COMMIT = re.compile(r"^[0-9a-f]{40}$")
MODEL_SUFFIXES = (".json", ".safetensors", ".bin", ".model", ".txt", ".jinja", ".py", ".tiktoken")


def _file_entry(path: Path, shown: str) -> dict[str, Any]:
    return {"path": shown, "sha256": file_sha256(path), "bytes": path.stat().st_size}


def _hub_commit(repo_id: str, filename: str, revision: str | None, repo_type: str) -> str | None:
    """The commit a cached Hub file was downloaded at (its snapshot folder), or None when it is not cached."""
    from huggingface_hub import try_to_load_from_cache

    if revision and COMMIT.match(revision):
        return revision
    path = try_to_load_from_cache(repo_id, filename, revision=revision, repo_type=repo_type)
    if isinstance(path, str) and COMMIT.match(Path(path).parent.name):
        return Path(path).parent.name
    return None


def _dataset_commit_from_cache_files(data) -> str | None:
    """datasets keeps a Hub dataset's Arrow files under <name>/<config>/<version>/<commit>/."""
    for split in (data.train, data.eval):
        for entry in getattr(split, "cache_files", None) or []:
            for part in Path(entry.get("filename", "")).parts:
                if COMMIT.match(part):
                    return part
    return None


def data_identity(cfg: SmolforgeConfig, data) -> dict[str, Any]:
    d = cfg.data
    if d.name in BUILTIN_FILES:
        return {"kind": "builtin", "files": [_file_entry(BUILTIN_FILES[d.name], d.name)]}
    if is_local_source(d.name):
        root = Path(d.name).expanduser()
        files = [_file_entry(p, str(Path(d.name) / p.relative_to(root)) if root.is_dir() else d.name)
                 for p in source_files(d)]
        return {"kind": "local", "files": files}
    commit = _hub_commit(d.name, "README.md", d.revision, "dataset") or _dataset_commit_from_cache_files(data)
    return {"kind": "hub", "repo": d.name, "config": d.config, "requested_revision": d.revision, "revision": commit}


def model_identity(cfg: SmolforgeConfig) -> dict[str, Any]:
    m = cfg.model
    if m.is_tiny:
        folder = Path(model_source(cfg))
        return {"kind": "tiny", "spec": m.tiny.model_dump(),
                "files": [_file_entry(folder / n, n) for n in ("model.safetensors", "tokenizer.json")
                          if (folder / n).is_file()]}
    folder = Path(m.name_or_path).expanduser()
    if folder.is_dir():
        files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix in MODEL_SUFFIXES)
        return {"kind": "local", "path": m.name_or_path,
                "files": [_file_entry(p, str(p.relative_to(folder))) for p in files]}
    return {"kind": "hub", "repo": m.name_or_path, "requested_revision": m.revision,
            "revision": _hub_commit(m.name_or_path, "config.json", m.revision, "model")}


def reward_identity(cfg: SmolforgeConfig) -> dict[str, Any]:
    """GRPO's own reward functions: the SHA-256 of each file (a built-in is part of smolforge's version). A file
    that is gone is left out, so `identity_differences` reports it missing."""
    files = []
    for name in cfg.training.grpo.rewards if cfg.training.method == "grpo" else []:
        parts = split_reward(name)
        if parts is not None and Path(parts[0]).is_file():
            files.append(_file_entry(Path(parts[0]), parts[0]))
    return {"kind": "local", "files": files}


def _files_by_path(entry: dict[str, Any]) -> dict[str, str]:
    return {f["path"]: f["sha256"] for f in entry.get("files") or []}


def identity_differences(what: str, recorded: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """One line per file that changed, appeared or went missing, or per revision that moved."""
    lines: list[str] = []
    if recorded.get("kind") != current.get("kind"):
        return [f"{what}: was {recorded.get('kind')}, is {current.get('kind')}"]
    if recorded.get("kind") == "hub":
        if recorded.get("revision") != current.get("revision"):
            lines.append(f"{what} {recorded.get('repo')}: recorded at commit {recorded.get('revision') or 'unknown'}, "
                         f"now {current.get('revision') or 'unknown'}")
        return lines
    old, new = _files_by_path(recorded), _files_by_path(current)
    for path in sorted(set(old) | set(new)):
        if path not in new:
            lines.append(f"{what} file {path} is missing (it had sha256 {old[path]})")
        elif path not in old:
            lines.append(f"{what} file {path} was not part of the run (sha256 {new[path]})")
        elif old[path] != new[path]:
            lines.append(f"{what} file {path} changed: sha256 {old[path]} when the run trained, {new[path]} now")
    return lines
