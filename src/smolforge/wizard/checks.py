"""Parse and check one answer at a time, with a reason a person can act on.

Each `parse_*` returns the typed value or raises `ValueError(reason)`; `validator()` adapts it to
questionary, which shows the reason under the prompt and keeps asking until the answer parses.
The same parsers check `smolforge init --yes` flags, so both paths accept exactly the same values.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from smolforge.config import EXPERIMENT_RE, REPO_ID_RE

# Hub dataset ids: `name` (canonical) or `owner/name`.
DATASET_ID_RE = re.compile(r"^(?:[A-Za-z0-9][A-Za-z0-9_.-]{0,95}/)?[A-Za-z0-9][A-Za-z0-9_.-]{0,95}$")
TAG_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:+-]{0,63}$")


def validator(parse: Callable[[str], Any]) -> Callable[[str], bool | str]:
    """questionary's validate: True, or the reason shown under the prompt."""

    def check(text: str) -> bool | str:
        try:
            parse(text)
        except ValueError as e:
            return str(e)
        return True

    return check


def parse_int(text: str, what: str, lo: int, hi: int) -> int:
    raw = text.strip().replace("_", "").replace(",", "")
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"{what} must be a whole number from {lo:,} to {hi:,} (got {text.strip()!r})") from None
    if not lo <= value <= hi:
        raise ValueError(f"{what} must be from {lo:,} to {hi:,} (got {value:,})")
    return value


def parse_float(text: str, what: str, lo: float, hi: float, example: str, lo_open: bool = True) -> float:
    raw = text.strip()
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"{what} must be a number, e.g. {example} (got {raw!r})") from None
    low_ok = value > lo if lo_open else value >= lo
    if not math.isfinite(value) or not low_ok or value > hi:
        bound = f"above {lo:g}" if lo_open else f"at least {lo:g}"
        raise ValueError(f"{what} must be {bound} and at most {hi:g}, e.g. {example} (got {raw})")
    return value


def parse_learning_rate(text: str) -> float:
    return parse_float(text, "The learning rate", 0.0, 1.0, "2e-5 (full fine-tune) or 2e-4 (LoRA)")


def parse_epochs(text: str) -> float:
    return parse_float(text, "Epochs", 0.0, 1000.0, "1 or 0.5")


def parse_optional_int(text: str, what: str, lo: int, hi: int) -> int | None:
    return None if not text.strip() else parse_int(text, what, lo, hi)


def parse_experiment_name(text: str) -> str:
    name = text.strip()
    if not EXPERIMENT_RE.fullmatch(name):
        raise ValueError("Use letters, digits, '-', '_' or '.', starting with a letter or digit (at most 128), "
                         f"e.g. smollm3-sft-run1 (got {name!r})")
    return name


def parse_repo_id(text: str, what: str = "The repo id") -> str:
    rid = text.strip()
    if not REPO_ID_RE.fullmatch(rid):
        raise ValueError(f"{what} must look like user/name: letters, digits, '-', '_' or '.', each part starting "
                         f"with a letter or digit (got {rid!r})")
    return rid


def parse_optional_repo_id(text: str, what: str = "The repo id") -> str | None:
    return parse_repo_id(text, what) if text.strip() else None


def parse_dataset(text: str) -> str:
    """`builtin`, an existing local data file/folder, or a Hub dataset id."""
    name = text.strip()
    if not name:
        raise ValueError("Give a Hub dataset id (e.g. HuggingFaceTB/smoltalk), a local .jsonl/.json/.csv/.parquet "
                         "file or folder, or `builtin`")
    if name == "builtin":
        return name
    from smolforge.data import LOCAL_SUFFIXES, is_local_source  # the same rule `smolforge run` applies

    path = Path(name).expanduser()
    if is_local_source(name):
        if not path.exists():
            raise ValueError(f"{path} does not exist")
        if path.is_file() and path.suffix.lower() not in LOCAL_SUFFIXES:
            raise ValueError(f"{path.name}: use a {', '.join(LOCAL_SUFFIXES)} file")
        return name
    if not DATASET_ID_RE.fullmatch(name):
        raise ValueError(f"{name!r} is neither an existing local path nor a Hub dataset id like "
                         "HuggingFaceTB/smoltalk")
    return name


def parse_model(text: str) -> str:
    """`tiny`, an existing local model folder, or a Hub model id."""
    name = text.strip()
    if name == "tiny":
        return name
    path = Path(name).expanduser()
    if path.exists() or name.startswith((".", "/", "~")):
        if not path.is_dir():
            raise ValueError(f"{path} is not a model folder (it must exist and hold config.json)")
        return name
    if not REPO_ID_RE.fullmatch(name):
        raise ValueError(f"{name!r} is neither a local model folder nor a Hub model id like HuggingFaceTB/SmolLM3-3B")
    return name


def parse_tags(text: str) -> list[str]:
    tags = [t.strip() for t in text.split(",") if t.strip()]
    bad = [t for t in tags if not TAG_RE.fullmatch(t)]
    if bad:
        raise ValueError(f"Tags are separated by commas; each is one word of letters, digits, '-', '_', '.', ':' "
                         f"or '+' (at most 64): {', '.join(repr(b) for b in bad)}")
    return list(dict.fromkeys(tags))


def parse_text_or_file(text: str, what: str) -> str | None:
    """Free text, empty for none, `@FILE` to read it from a UTF-8 file (`@@` for a literal `@`)."""
    value = text.strip()
    if not value:
        return None
    if value.startswith("@@"):
        return value[1:]
    if value.startswith("@"):
        path = Path(value[1:]).expanduser()
        try:
            content = path.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as e:
            raise ValueError(f"{what}: cannot read {path} ({getattr(e, 'strerror', None) or e})") from None
        if not content:
            raise ValueError(f"{what}: {path} is empty")
        return content
    return value


def parse_required_text(text: str, what: str) -> str:
    value = parse_text_or_file(text, what)
    if not value:
        raise ValueError(f"{what} cannot be empty")
    return value


def parse_license(text: str) -> str:
    from smolforge.card.licenses import validate_license
    from smolforge.errors import SmolforgeError

    if text.strip() == "other":  # its name and link are asked next
        return "other"
    try:
        lid = validate_license(text.strip())
    except SmolforgeError as e:
        raise ValueError(str(e).replace("card.license: ", "")) from None
    if not lid:
        raise ValueError("Give a Hugging Face license identifier, e.g. apache-2.0 or mit")
    return lid


def parse_license_name(text: str) -> str:
    name = text.strip()
    if not re.fullmatch(r"[a-z0-9][a-z0-9._-]*", name):
        raise ValueError(f"Use lowercase letters, digits, '.', '-' or '_', e.g. my-license-1.0 (got {name!r})")
    return name


def parse_license_link(text: str) -> str:
    link = text.strip()
    if not (re.match(r"^https?://\S+$", link) or link.startswith("LICENSE")):
        raise ValueError(f"Give a URL (https://...) or the name of a LICENSE file you publish (got {link!r})")
    return link


def parse_token(text: str) -> str:
    """A token typed at the hidden prompt: empty skips; never part of the message."""
    token = text.strip()
    if token and (len(token) < 8 or any(c.isspace() for c in token)):
        raise ValueError("That does not look like a Hugging Face token (hf_...): paste it again, "
                         "or leave it empty to continue offline")
    return token
