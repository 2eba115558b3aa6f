"""`smolforge publish RUN_DIR`: check the flags, then push the finished run to the Hub (or --export it)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from smolforge import processenv
from smolforge.commands.finished import logged, open_finished
from smolforge.credentials import cached_username
from smolforge.errors import SmolforgeError
from smolforge.hubclient import resolve_endpoint
from smolforge.identifiers import repo_id as repo_id_rule
from smolforge.identifiers import require
from smolforge.publish.push import publish
from smolforge.publish.request import PublishRequest
from smolforge.publish.staging import export


@dataclass
class PublishFlags:
    """`smolforge publish` as typed: None = not given (the run's config decides)."""

    repo_id: str | None = None
    private: bool | None = None
    endpoint: str | None = None
    token_file: str | None = None
    quantized_as: str | None = None
    force: bool = False
    merge_metadata: bool = False
    retries: int = 4
    export: Path | None = None
    token_given: bool = False


def publish_command(run_dir: Path, flags: PublishFlags, console) -> None:
    """Check the flags, then push (or export) the finished run."""
    if flags.token_given:
        raise SmolforgeError("--token: tokens are not accepted on the command line (every process on the machine "
                             "can read it). Set HF_TOKEN, run `hf auth login`, or pass --token-file FILE.")
    if flags.force and flags.merge_metadata:
        raise SmolforgeError("--force and --merge-metadata exclude each other: --force replaces the card on the "
                             "Hub, --merge-metadata keeps it and merges metadata. Choose one.")
    if flags.quantized_as is not None and flags.quantized_as not in ("subfolders", "repos"):
        raise SmolforgeError(f"--quantized-as: {flags.quantized_as!r} is not allowed. Use subfolders or repos.")
    done = open_finished(run_dir, "publish")
    run, cfg = done.run, done.cfg
    processenv.quiet_libraries()
    layout = flags.quantized_as or cfg.publish.quantized_as
    repo = flags.repo_id or cfg.publish.repo_id
    if flags.export is not None:
        if repo:
            require(repo_id_rule, repo, "--repo-id")
        export(run, cfg, flags.export, repo, layout, username=cached_username(), console=console, force=flags.force)
        return
    if not repo:
        raise SmolforgeError("--repo-id: no Hub repo given. Pass --repo-id user/name (or set publish.repo_id in the "
                             "config).")
    req = PublishRequest(repo_id=require(repo_id_rule, repo, "--repo-id"),
                         private=cfg.publish.private if flags.private is None else flags.private,
                         private_given=flags.private is not None,
                         endpoint=resolve_endpoint(flags.endpoint, cfg.publish.endpoint), quantized_as=layout,
                         force=flags.force, merge_metadata=flags.merge_metadata, retries=flags.retries,
                         token_file=flags.token_file)
    with logged(run, "publish"):
        publish(run, cfg, req, console, username=cached_username())
