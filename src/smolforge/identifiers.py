"""Names a user types that must follow someone else's rules: Hub repo ids, dataset and model ids,
experiment names, card tags and license ids (checked offline against the Hub's list). One rule and one
message each, used by the schema, every flag, the wizard and the stages that take an id as an argument
(publish, demo).
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Annotated

from pydantic import AfterValidator

from smolforge.errors import SmolforgeError

_PART = r"[A-Za-z0-9](?:[A-Za-z0-9_.-]{0,94}[A-Za-z0-9])?"
_REPO_ID = re.compile(rf"{_PART}/{_PART}")
_DATASET_ID = re.compile(rf"(?:{_PART}/)?{_PART}")
_EXPERIMENT = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
_TAG = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:+-]{0,63}")

REPO_ID_RULE = ("must look like user/name: letters, digits, '-', '_' or '.', each part 1 to 96 characters that "
                "starts and ends with a letter or digit, without '--' or '..', e.g. alice/my-model")
DATASET_ID_RULE = "must be name or owner/name (letters, digits, '-', '_' or '.'), e.g. HuggingFaceTB/smoltalk"
MODEL_ID_RULE = "must be name or owner/name (letters, digits, '-', '_' or '.'), e.g. HuggingFaceTB/SmolLM3-3B"
EXPERIMENT_RULE = ("must use letters, digits, '-', '_' or '.', start with a letter or digit and be at most 128 "
                   "characters, e.g. smollm3-sft-run1")
TAG_RULE = ("each tag is one word of letters, digits, '-', '_', '.', ':' or '+' (at most 64 characters), "
            "e.g. chat or text-generation")


def _hub_rule_ok(value: str) -> bool:
    """huggingface_hub's own client-side check ('--', '..', '.git' ...) on top of the pattern."""
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(value)
    except HFValidationError:
        return False
    return True


def repo_id(value: str) -> str:
    """A Hub repo id that can be pushed to (model, Space or dataset): `namespace/name`."""
    if not isinstance(value, str) or not _REPO_ID.fullmatch(value) or not _hub_rule_ok(value):
        raise ValueError(REPO_ID_RULE)
    return value


def dataset_id(value: str) -> str:
    """A Hub dataset id: `name` (canonical datasets) or `owner/name`."""
    if not isinstance(value, str) or not _DATASET_ID.fullmatch(value) or not _hub_rule_ok(value):
        raise ValueError(DATASET_ID_RULE)
    return value


def model_id(value: str) -> str:
    """A Hub model id to load: `name` (canonical models such as gpt2) or `owner/name`."""
    if not isinstance(value, str) or not _DATASET_ID.fullmatch(value) or not _hub_rule_ok(value):
        raise ValueError(MODEL_ID_RULE)
    return value


def local_or_hub_problem(name: str, local: bool, local_problem: Callable[[Path], str | None],
                         hub_id: Callable[[str], str], kind: str) -> str | None:
    """Why `name` cannot be a base model or dataset (None when it can). `local`: it exists on disk or looks like a
    path, so a typo is never sent to the Hub; then it must exist and pass `local_problem`, else be a valid Hub id."""
    if local:
        path = Path(name).expanduser()
        return local_problem(path) if path.exists() else f"{name} does not exist"
    try:
        hub_id(name)
    except ValueError as e:
        return f"{name!r} is not an existing local path, and as a Hub {kind} id it {e}"
    return None


def experiment_name(value: str) -> str:
    """An experiment name: the run folder's name and the tracking project's, so it must be a safe file name."""
    if not isinstance(value, str) or not _EXPERIMENT.fullmatch(value):
        raise ValueError(EXPERIMENT_RULE)
    return value


def tag(value: str) -> str:
    """A model card tag (Hub tags are single words)."""
    if not isinstance(value, str) or not _TAG.fullmatch(value):
        raise ValueError(TAG_RULE)
    return value


def is_repo_id(value: str) -> bool:
    try:
        repo_id(value)
    except ValueError:
        return False
    return True


def require(check, value: str, field: str) -> str:
    """Apply one of the rules above to a command-line argument; a SmolforgeError naming `field` if it fails."""
    try:
        return check(value)
    except ValueError as e:
        raise SmolforgeError(f"{field}: {value!r} {e}.") from None


RepoId = Annotated[str, AfterValidator(repo_id)]
DatasetId = Annotated[str, AfterValidator(dataset_id)]
ExperimentName = Annotated[str, AfterValidator(experiment_name)]
Tag = Annotated[str, AfterValidator(tag)]


def slugify(text: str, sep: str = "-") -> str:
    """Lower-case letters and digits, every other run of characters one `sep`: a name safe in a path or repo."""
    s = re.sub(r"[^a-z0-9]+", sep, text.lower()).strip(sep)
    return s or "model"


_LICENSE_URL = re.compile(r"^https?://\S+$")


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
    if not (_LICENSE_URL.match(link.strip()) or link.strip().startswith("LICENSE")):
        raise ValueError(f"give a URL (https://...) or the name of a LICENSE file you publish (got {link!r})")
    return link.strip()
