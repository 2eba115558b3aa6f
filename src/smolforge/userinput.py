"""Text a user gives on the command line or at a prompt that may point at a file instead.

One reader for every `@FILE` option (card texts, demo texts, the wizard): `@path` reads the
UTF-8 file (surrounding whitespace dropped, an empty file refused), `@@text` is the literal
`@text`, anything else is the text itself.
"""

from __future__ import annotations

from pathlib import Path


def read_text_or_file(value: str) -> str:
    """The text `value` stands for; ValueError (with the reason) when its file cannot be used."""
    if not value.startswith("@"):
        return value
    if value.startswith("@@"):
        return value[1:]
    path = Path(value[1:]).expanduser()
    try:
        content = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ValueError(f"{path} is not UTF-8 text; re-save it as UTF-8") from None
    except OSError as e:
        raise ValueError(f"cannot read {path} ({e.strerror or e})") from None
    if not content.strip():
        raise ValueError(f"{path} is empty")
    return content.strip()
