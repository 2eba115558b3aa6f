"""The GGUF files as facts for cards: the variants recorded, which of them are published, and their rows.

Every number comes from results.json's `quantized.gguf-*` entries (sizes on disk, the quality drop
llama.cpp measured against the fine-tune, the checks). The GGUF repo's own card is in `repocards`.
"""

from __future__ import annotations

from typing import Any

from smolforge.card.facts import sizes
from smolforge.config import SmolforgeConfig
from smolforge.config.outputs import GGUF_METHODS
from smolforge.runfolder import RunFolder

GGUF_REPO_SUFFIX = "-GGUF"
RECOMMENDED = "gguf-q4_k_m"
USES = {
    "gguf-f16": "Reference quality, largest: for re-quantizing, or a GPU with memory to spare.",
    "gguf-q8_0": "Close to the full model at about half the f16 size, when memory allows.",
    "gguf-q4_k_m": "The usual choice for CPUs, laptops and small GPUs: about a third of the f16 size.",
}


def gguf_entries(results: dict[str, Any], run: RunFolder | None = None) -> dict[str, dict[str, Any]]:
    """The GGUF variants recorded in results.json (whose file exists, when `run` is given), in method order."""
    q = results.get("quantized") or {}
    return {m: q[m] for m in GGUF_METHODS if isinstance(q.get(m), dict) and q[m].get("format") == "gguf"
            and (run is None or (run.root / q[m]["path"] / q[m]["file"]).is_file())}


def gguf_repo_id(cfg: SmolforgeConfig, main_repo: str | None) -> str | None:
    return cfg.publish.gguf_repo_id or (f"{main_repo}{GGUF_REPO_SUFFIX}" if main_repo else None)


def published_gguf(entries: dict[str, dict[str, Any]], force: bool) -> dict[str, dict[str, Any]]:
    """What goes to the GGUF repo: the variants that passed every check and the fidelity gate (all with --force)."""
    return {m: e for m, e in entries.items() if force or e.get("publishable")}


def gguf_rows(results: dict[str, Any], run: RunFolder, cfg: SmolforgeConfig, repo_name: str | None,
              force: bool = False) -> list[dict[str, Any]]:
    entries = gguf_entries(results, run)
    repo = gguf_repo_id(cfg, repo_name)
    published = published_gguf(entries, force)
    rows = []
    for method, e in entries.items():
        rows.append({"quality_drop": None, "scored_tokens": None, "scored_rows": None, "greedy_identical": None,
                     **e, "name": method,
                     "size": sizes(e["size_bytes"]), "memory": sizes(e.get("memory_bytes")),
                     "use": USES[method], "recommended": method == RECOMMENDED,
                     "published": method in published, "repo_id": repo if method in published else None})
    return rows
