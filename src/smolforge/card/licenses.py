"""License identifiers for card metadata, validated offline against the Hub's list.

The default license is the base model's, when it can be known without a network call: a table
of models smolforge ships presets for, the README of a local base model, or the README in the
Hugging Face cache. Otherwise the user must choose; smolforge never picks one silently.
"""

from __future__ import annotations

import difflib
import re
from functools import lru_cache
from importlib import resources
from pathlib import Path

from smolforge.card.frontmatter import read_metadata

KNOWN_BASE_LICENSES = {
    "HuggingFaceTB/SmolLM3-3B": "apache-2.0",
    "HuggingFaceTB/SmolLM3-3B-Base": "apache-2.0",
    "HuggingFaceTB/SmolLM2-135M": "apache-2.0",
    "HuggingFaceTB/SmolLM2-135M-Instruct": "apache-2.0",
    "HuggingFaceTB/SmolLM2-360M": "apache-2.0",
    "HuggingFaceTB/SmolLM2-360M-Instruct": "apache-2.0",
    "HuggingFaceTB/SmolLM2-1.7B": "apache-2.0",
    "HuggingFaceTB/SmolLM2-1.7B-Instruct": "apache-2.0",
}
_URL = re.compile(r"^https?://\S+$")


@lru_cache(maxsize=1)
def hub_licenses() -> tuple[str, ...]:
    text = resources.files("smolforge").joinpath("resources/hub_licenses.txt").read_text("utf-8")
    return tuple(line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#"))


def license_id(value: str) -> str:
    """A Hub license identifier (case as the Hub spells it); ValueError naming the closest ones otherwise."""
    lid = value.strip()
    if lid in hub_licenses():
        return lid
    lower = {x.lower(): x for x in hub_licenses()}
    if lid.lower() in lower:
        return lower[lid.lower()]
    close = difflib.get_close_matches(lid.lower(), hub_licenses(), n=3, cutoff=0.6)
    hint = f" (did you mean {' or '.join(close)}?)" if close else ""
    raise ValueError(f"must be a Hugging Face license identifier{hint}: one of the Hub's ids (apache-2.0, mit, "
                     "cc-by-4.0, llama3.2, ...), or `other` with card.license_name and card.license_link for a "
                     "custom license")


def check_license_name(name: str) -> str:
    """A custom license's short name, as the Hub's `license_name` metadata takes it."""
    if not re.fullmatch(r"[a-z0-9][a-z0-9._-]*", name.strip()):
        raise ValueError(f"use lowercase letters, digits, '.', '-' or '_', e.g. my-license-1.0 (got {name!r})")
    return name.strip()


def check_license_link(link: str) -> str:
    """A custom license's link: a URL, or the name of a LICENSE file published with the model."""
    if not (_URL.match(link.strip()) or link.strip().startswith("LICENSE")):
        raise ValueError(f"give a URL (https://...) or the name of a LICENSE file you publish (got {link!r})")
    return link.strip()


def _license_from_readme(path: Path) -> str | None:
    lic = read_metadata(path).get("license")
    return lic if isinstance(lic, str) and lic in hub_licenses() and lic not in ("other", "unknown") else None


def base_model_license(name_or_path: str) -> str | None:
    """The base model's license, known offline (table, local README, or HF cache), else None."""
    if name_or_path in KNOWN_BASE_LICENSES:
        return KNOWN_BASE_LICENSES[name_or_path]
    local = Path(name_or_path).expanduser()
    if local.is_dir():
        return _license_from_readme(local / "README.md")
    try:
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(name_or_path, "README.md")
    except Exception:  # not a valid repo id: nothing cached
        return None
    return _license_from_readme(Path(cached)) if isinstance(cached, str) else None
