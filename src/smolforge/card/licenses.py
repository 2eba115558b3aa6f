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

import yaml

from smolforge.errors import SmolforgeError

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


def validate_license(license_id: str | None, license_name: str | None = None,
                     license_link: str | None = None, field: str = "card.license") -> str | None:
    """Return the license id if valid; raise a message that names the field and the fix."""
    if license_id is None:
        return None
    lid = license_id.strip()
    if lid not in hub_licenses():
        lower = {x.lower(): x for x in hub_licenses()}
        if lid.lower() in lower:
            return lower[lid.lower()]
        close = difflib.get_close_matches(lid.lower(), hub_licenses(), n=3, cutoff=0.6)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise SmolforgeError(
            f"{field}: {license_id!r} is not a Hugging Face license identifier.{hint} Use one of the Hub's ids "
            "(apache-2.0, mit, cc-by-4.0, llama3.2, ... see `smolforge card --help`), or `other` with "
            "card.license_name and card.license_link for a custom license."
        )
    if lid == "other":
        if not license_name or not license_name.strip():
            raise SmolforgeError(f"{field}: `other` needs card.license_name (a short name for your license, e.g. "
                                 "my-license-1.0) and card.license_link (a URL or LICENSE file in the repo).")
        if not license_link or not (license_link.strip() == "LICENSE" or _URL.match(license_link.strip())
                                    or license_link.strip().startswith("LICENSE")):
            raise SmolforgeError(f"{field}: `other` needs card.license_link: a URL (https://...) or the name of a "
                                 "LICENSE file that you publish with the model.")
        if not re.fullmatch(r"[a-z0-9][a-z0-9._-]*", license_name.strip()):
            raise SmolforgeError("card.license_name: use lowercase letters, digits, '.', '-' or '_' "
                                 f"(got {license_name!r}), e.g. my-license-1.0.")
    return lid


def _license_from_readme(path: Path) -> str | None:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError:
        return None
    m = re.match(r"^---\s*\n(.*?)\n---\s*\n", text, re.S)
    if not m:
        return None
    try:
        data = yaml.safe_load(m.group(1)) or {}
    except yaml.YAMLError:
        return None
    lic = data.get("license") if isinstance(data, dict) else None
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
