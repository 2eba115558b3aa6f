"""What a publish takes (repo, visibility, endpoint, layout, the checks to override), the exact
`smolforge publish` command that repeats it, and how it reports progress."""

from __future__ import annotations

import logging
import shlex
from dataclasses import dataclass, replace
from typing import Any

from smolforge.credentials import redact
from smolforge.hubclient import DEFAULT_ENDPOINT
from smolforge.runfolder import RunFolder

log = logging.getLogger("smolforge.publish")


@dataclass
class PublishRequest:
    repo_id: str
    private: bool = True
    private_given: bool = False  # --private/--public was given (else publish.private from the config)
    endpoint: str = DEFAULT_ENDPOINT
    quantized_as: str = "subfolders"
    force: bool = False
    merge_metadata: bool = False
    retries: int = 4
    token_file: str | None = None


def retry_command(run: RunFolder, req: PublishRequest, **changes: Any) -> str:
    """The exact `smolforge publish` command that repeats this request (never with a token in it)."""
    req = replace(req, **changes)
    parts = ["smolforge", "publish", str(run.root), "--repo-id", req.repo_id,
             "--private" if req.private else "--public"]
    if req.endpoint != DEFAULT_ENDPOINT:
        parts += ["--endpoint", req.endpoint]
    if req.quantized_as != "subfolders":
        parts += ["--quantized-as", req.quantized_as]
    if req.token_file:
        parts += ["--token-file", req.token_file]
    if req.force:
        parts.append("--force")
    if req.merge_metadata:
        parts.append("--merge-metadata")
    return redact(shlex.join(parts))


def sayer(console):
    """A function that logs a line and prints it (redacted), for the steps of a publish."""

    def say(text: str) -> None:
        log.info(redact(text))
        if console is not None:
            console.print(redact(text), markup=False, highlight=False)
    return say
