"""The base model's license, the default of the card's (license ids themselves are checked by `identifiers`).

The default license is the base model's, when it can be known without a network call: a table
of models smolforge ships presets for, the README of a local base model, or the README in the
Hugging Face cache. Otherwise the user must choose; smolforge never picks one silently.
"""

from __future__ import annotations

from pathlib import Path

from smolforge.card.frontmatter import read_metadata
from smolforge.identifiers import hub_licenses

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
