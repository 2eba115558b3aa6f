"""The YAML header of a card (README.md): one reader, built on huggingface_hub's own.

`metadata_load` handles a UTF-8 BOM and CRLF line endings the way the Hub does; smolforge reads
local base models' cards, the run's card and user templates through these two functions only.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def read_metadata(path: Path) -> dict[str, Any]:
    """The card's metadata; {} when the file is missing or its header is absent or not valid YAML."""
    import yaml
    from huggingface_hub.repocard import metadata_load

    if not path.is_file():
        return {}
    try:
        return metadata_load(path) or {}
    except (OSError, UnicodeDecodeError, ValueError, yaml.YAMLError):
        return {}


def split(text: str) -> tuple[str | None, str]:
    """(the YAML header's text, or None when there is none; the rest) of a card or a card template."""
    from huggingface_hub.repocard import REGEX_YAML_BLOCK

    body = text[1:] if text.startswith("\ufeff") else text
    match = REGEX_YAML_BLOCK.match(body)
    return (match.group(2), body[match.end():]) if match else (None, text)


def strip(text: str) -> str:
    """`text` without its leading YAML header (a template's header is rendered apart: `render.template_metadata`)."""
    return split(text)[1]
