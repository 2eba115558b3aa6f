"""Answers the wizard checks itself, beyond one setting's own declaration.

A setting's answer is checked by its declaration (`config.fields`: the same parsing, bounds and
message as a flag or `--set`); the few answers here need more than one setting can know: whether a
dataset or model name is a local path or a Hub id, a license from the Hub's list, a token. Each
returns the value or raises `ValueError(reason)`, which the prompt shows before asking again.
"""

from __future__ import annotations

from smolforge.data.sources import source_problem
from smolforge.identifiers import license_id
from smolforge.modelio import model_problem


def parse_dataset(text: str) -> str:
    """`builtin`, an existing local data file/folder, or a Hub dataset id."""
    name = text.strip()
    if not name:
        raise ValueError("Give a Hub dataset id (e.g. HuggingFaceTB/smoltalk), a local .jsonl/.json/.csv/.parquet "
                         "file or folder, or `builtin`")
    problem = source_problem(name)
    if problem:
        raise ValueError(problem)
    return name


def parse_model(text: str) -> str:
    """`tiny`, an existing local model folder, or a Hub model id."""
    name = text.strip()
    if not name:
        raise ValueError("Give a Hub model id (e.g. HuggingFaceTB/SmolLM3-3B), a local model folder, or `tiny`")
    problem = model_problem(name)
    if problem:
        raise ValueError(problem)
    return name


def parse_license(text: str) -> str:
    """A Hub license id typed by hand (`other` asks for its name and link next)."""
    return license_id(text) if text.strip() else license_id("(empty)")


def parse_token(text: str) -> str:
    """A token typed at the hidden prompt: empty skips; never part of the message."""
    token = text.strip()
    if token and (len(token) < 8 or any(c.isspace() for c in token)):
        raise ValueError("That does not look like a Hugging Face token (hf_...): paste it again, "
                         "or leave it empty to continue offline")
    return token
