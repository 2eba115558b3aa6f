"""Write the evaluation folder whole or not at all.

Everything is built in a temporary folder beside the target and renamed into place; a previous
folder is moved aside first and deleted only after the new one is in place. A crash leaves either
the old folder or the new one (plus, at worst, a hidden `.evaluation-*` leftover), never a mix.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from smolforge.runfolder import place_atomically, scratch_dir, share_like_other_files

SUMMARY = "summary.json"


def safe_name(text: str) -> str:
    """A file-name-safe version of a task or model name."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("._") or "item"


def jsonl(rows: list[dict]) -> str:
    return "".join(json.dumps(r, ensure_ascii=False, allow_nan=False) + "\n" for r in rows)


def write_folder(target: Path, files: dict[str, str]) -> None:
    """Create `target` holding exactly `files` (relative path -> text), replacing any previous folder."""
    target = Path(target)
    with scratch_dir(target.parent, f".{target.name}-new-") as tmp:
        for rel, text in files.items():
            path = tmp / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
        share_like_other_files(tmp)  # mkdtemp made it owner-only
        place_atomically(tmp, target)


def summary_text(summary: dict[str, Any]) -> str:
    return json.dumps(summary, indent=2, ensure_ascii=False, allow_nan=False) + "\n"
