"""Published files never hold this machine's absolute paths: each becomes its last component.

A run records where things were on disk (a local dataset file, the tracking folder, the tiny model's
cache, the command line), which is useful locally and both useless and revealing elsewhere. Publishing
and exporting pass every text file they write through `public_text`; the run folder keeps full paths.
"""

from __future__ import annotations

import re
from pathlib import PurePosixPath

# An absolute path of two or more parts, or a ~/ path, starting a value, a word, an option's value (`=`,
# `:`) or a quoted/bracketed string. One-part names such as `/think` and URLs (`https://...`) are not paths.
_PART = r"""[^\s/'"\]\),;|<>`]+"""
_PATH = re.compile(rf"""(?<![^\s=:'"(\[,])(?:/{_PART}(?:/{_PART})+|~(?:/{_PART})+)/?""")


def _last_part(match: re.Match[str]) -> str:
    text = match.group(0)
    return PurePosixPath(text.rstrip("/")).name or text


def public_text(text: str) -> str:
    """`text` with every absolute or home-relative path replaced by its last component."""
    return _PATH.sub(_last_part, text)


def has_local_path(text: str) -> bool:
    return _PATH.search(text) is not None
