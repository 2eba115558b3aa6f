"""Publish a run to the Hugging Face Hub in one commit, or export the same folder offline.

What is uploaded: model/ (weights, tokenizer, chat template, loss plot), README.md (the card),
results.json, manifest.json and config.yaml (all redacted, and with this machine's absolute paths reduced to file
names; config.yaml is the run's config with the card and publish choices made after training), the
per-item evaluation results, and each quantized variant as a subfolder (`int8/`), or as
its own repo `<repo>-int8` when `publish.quantized_as: repos`. GGUF files go to their own repo
(`publish.gguf_repo_id`, default `<repo>-GGUF`), only those that passed their checks and the fidelity gate
unless `--force`. checkpoints/ and logs/ are never uploaded. `stage()` lays out every repo for both
`publish` and `--export`.

Order: the token is found (env or --token-file, never argv) and checked -> every repo is staged
with its card (rendered for this repo id unless edited by hand) -> every repo's README.md on the
Hub is compared with the one smolforge last pushed there (no clobbering without --force or
--merge-metadata) -> each card is validated by the Hub -> `create_repo(exist_ok=True)` ->
`upload_folder` (one commit per repo, with the inspected commit as parent, so a concurrent edit
fails the commit instead of being overwritten) -> only then are the card, results.json
(`publish`) and the run's overrides updated: a failed push leaves the run folder as it was.
"""

from __future__ import annotations

import logging
import os
import shlex
import shutil
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from smolforge.card.gguf import gguf_entries, gguf_repo_id, published_gguf
from smolforge.card.hubmeta import merge_metadata, validate_card
from smolforge.card.render import render_card, sha256
from smolforge.card.repocards import gguf_card, variant_card
from smolforge.card.writer import hand_edited
from smolforge.config import SmolforgeConfig, dump_dict
from smolforge.credentials import find_token, redact, whoami
from smolforge.errors import PublishError, SmolforgeError
from smolforge.hubclient import DEFAULT_ENDPOINT, HubUnreachable, Retrier
from smolforge.identifiers import repo_id as repo_id_rule
from smolforge.identifiers import require
from smolforge.publicpaths import has_local_path, public_text
from smolforge.runfolder import RunFolder, atomic_write_text

log = logging.getLogger("smolforge.publish")
PUBLISHED_CONFIG_HEADER = ("# smolforge config of this model: the training settings exactly as trained, the card and "
                           "publish\n# settings as published (secrets redacted). Train it again with: smolforge run "
                           "config.yaml\n")


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


# ---------------------------------------------------------------- what gets uploaded

def variants(run: RunFolder, results: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """torchao variants recorded in results.json whose folder exists (GGUF files go to their own repo)."""
    return {k: v for k, v in (results.get("quantized") or {}).items()
            if isinstance(v, dict) and v.get("path") and v.get("format") != "gguf" and (run.root / v["path"]).is_dir()}


def gguf_to_publish(run: RunFolder, results: dict[str, Any], force: bool, say=None) -> dict[str, dict[str, Any]]:
    """GGUF files that go to the GGUF repo: those that passed every check and the fidelity gate (all with
    --force); says which are held back and why."""
    entries = gguf_entries(results, run)
    chosen = published_gguf(entries, force)
    for m, e in entries.items():
        if m not in chosen and say is not None:
            if not e.get("verified"):
                why = f"checks failed: {', '.join(e.get('failed_checks') or [])}"
            elif e.get("quality_drop") is None:
                why = "its quality drop was not measured: the run has no eval split"
            else:
                why = (f"quality drop {100 * e['quality_drop']:.2f}% is above quantize.max_quality_drop "
                       f"{100 * e.get('max_quality_drop', 0):.1f}%")
            say(f"{e['file']} is not published ({why}); it stays in {e['path']}. Publish it anyway with --force.")
    return chosen


def _stage_gguf(run: RunFolder, cfg: SmolforgeConfig, chosen: dict[str, dict[str, Any]], main_id: str,
                folder: Path, username: str | None) -> StagedRepo:
    """The GGUF repo: the files at the top (the names llama.cpp's and Ollama's `-hf`/`hf.co` pulls look for),
    a Modelfile and the verification evidence per file type, and its card."""
    repo = str(gguf_repo_id(cfg, main_id))
    for e in chosen.values():
        src = run.root / e["path"]
        _link_or_copy(src / e["file"], folder / e["file"])
        _link_or_copy(src / "Modelfile", folder / f"Modelfile.{e['file_type']}")
        _link_or_copy(src / "verification.json", folder / "verification" / f"{e['file_type']}.json")
    text = gguf_card(run, cfg, main_id, repo, list(chosen), username)
    (folder / "README.md").write_text(text, encoding="utf-8")
    return StagedRepo(repo, folder, text, True, variant="gguf")


def _link_or_copy(src: Path, dst: Path) -> None:
    """Hard links make staging free for multi-GB weights; copy where links are not possible."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def _files_under(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file()
                  and not any(part.startswith(".") for part in p.relative_to(folder).parts))


TEXT_SUFFIXES = (".json", ".jsonl", ".yaml", ".yml", ".md", ".txt", ".jinja")  # may name local paths


def _copy_tree(src: Path, dest: Path, skip: tuple[str, ...] = ()) -> None:
    """Stage a folder: weights linked, text files with this machine's absolute paths reduced to their names
    (an adapter's local base, the evaluation's model sources)."""
    for f in _files_under(src):
        rel = f.relative_to(src)
        if rel.as_posix() in skip:
            continue
        if f.suffix in TEXT_SUFFIXES:
            text = f.read_text(encoding="utf-8", errors="surrogateescape")
            if has_local_path(text):
                (dest / rel).parent.mkdir(parents=True, exist_ok=True)
                (dest / rel).write_text(public_text(text), encoding="utf-8", errors="surrogateescape")
                continue
        _link_or_copy(f, dest / rel)


@dataclass
class StagedRepo:
    repo_id: str
    folder: Path
    card_text: str
    card_is_new: bool  # rendered now (False: the hand-edited card, published as is)
    variant: str | None = None  # the quantized variant this repo holds, for separate variant repos


def _with_publish(cfg: SmolforgeConfig, req: PublishRequest) -> SmolforgeConfig:
    update: dict[str, Any] = {"quantized_as": req.quantized_as}
    if req.repo_id:
        update.update(repo_id=req.repo_id, private=req.private,
                      endpoint=None if req.endpoint == DEFAULT_ENDPOINT else req.endpoint)
    return cfg.model_copy(update={"publish": cfg.publish.model_copy(update=update)})


def _main_card(run: RunFolder, cfg: SmolforgeConfig, username: str | None, say) -> tuple[str, bool]:
    """(card text, rendered now): rendered for this repo in memory, unless model/README.md was edited by hand."""
    if hand_edited(run, run.card_path):
        say(f"{run.card_path} was edited by hand: publishing it as is (rewrite it with "
            f"`smolforge card {shlex.quote(str(run.root))} --force`).")
        return run.card_path.read_text(encoding="utf-8"), False
    return str(render_card(run, cfg, run.read_results(), username=username)), True


def stage(run: RunFolder, cfg: SmolforgeConfig, req: PublishRequest, root: Path, username: str | None,
          say) -> list[StagedRepo]:
    """Lay out every repo of this publish under `root` (one folder each); the main repo comes last.

    `cfg` already carries this publish's settings; nothing in the run folder changes here."""
    if not run.finished():
        raise SmolforgeError(f"{run.model_dir} has no trained model to publish. Finish the run first "
                             f"(smolforge run {run.root} --resume).")
    results = run.read_results()
    main_id = req.repo_id or run.root.name
    staged = []
    if req.quantized_as == "repos":
        for name, entry in variants(run, results).items():
            vrepo = f"{main_id}-{name}"
            folder = root / f"variant-{name}"
            _copy_tree(run.root / entry["path"], folder)
            text = variant_card(run, cfg, name, main_id, vrepo, username)
            (folder / "README.md").write_text(text, encoding="utf-8")
            staged.append(StagedRepo(vrepo, folder, text, True, variant=name))
    chosen = gguf_to_publish(run, results, req.force, say)
    if chosen:
        staged.append(_stage_gguf(run, cfg, chosen, main_id, root / "gguf", username))
    card_text, card_is_new = _main_card(run, cfg, username, say)
    folder = root / "repo"
    _copy_tree(run.model_dir, folder, skip=("README.md",))
    (folder / "README.md").write_text(card_text, encoding="utf-8")
    config_text = RunFolder.config_text(dump_dict(cfg), PUBLISHED_CONFIG_HEADER)
    (folder / "config.yaml").write_text(public_text(config_text), encoding="utf-8")
    if run.results_path.exists():
        results_text = redact(run.results_path.read_text(encoding="utf-8"))
        (folder / "results.json").write_text(public_text(results_text), encoding="utf-8")
    if run.manifest_path.exists():  # the reproducibility record the card describes
        manifest_text = redact(run.manifest_path.read_text(encoding="utf-8"))
        (folder / "manifest.json").write_text(public_text(manifest_text), encoding="utf-8")
    if run.evaluation_dir.is_dir():  # per-item benchmark results: which items each model got right
        _copy_tree(run.evaluation_dir, folder / "evaluation")
    if req.quantized_as == "subfolders":
        for name, entry in variants(run, results).items():
            _copy_tree(run.root / entry["path"], folder / (entry.get("subfolder") or name))
    staged.append(StagedRepo(main_id, folder, card_text, card_is_new))
    return staged


# ---------------------------------------------------------------- one repo

def _info_or_none(api, repo_id: str):
    from huggingface_hub.errors import RepositoryNotFoundError

    try:
        return api.model_info(repo_id)
    except RepositoryNotFoundError:
        return None


def _remote_readme(api, repo_id: str, revision: str, cache: str) -> str:
    path = api.hf_hub_download(repo_id, "README.md", revision=revision, cache_dir=cache)
    return Path(path).read_text(encoding="utf-8")


class RepoPusher:
    """Pushes one folder as one commit to one repo, refusing to clobber a card edited on the Hub."""

    def __init__(self, api, retrier: Retrier, run: RunFolder, req: PublishRequest, say):
        self.api, self.retrier, self.run, self.req, self.say = api, retrier, run, req, say

    def resolve_card(self, repo_id: str, card_text: str, last_pushed: str | None, tmp: str):
        """(card text to push, repo info or None): checks the README.md now on the Hub."""
        info = self.retrier(f"Reading {repo_id}", lambda: _info_or_none(self.api, repo_id))
        if info is None or "README.md" not in {s.rfilename for s in (info.siblings or [])}:
            return card_text, info
        remote = self.retrier(f"Reading {repo_id}/README.md", lambda: _remote_readme(self.api, repo_id, info.sha, tmp))
        if sha256(remote) in (last_pushed, sha256(card_text)):
            return card_text, info
        origin = ("was edited on the Hub since smolforge last pushed it" if last_pushed
                  else "was not pushed by smolforge from this run")
        if self.req.force:
            self.say(f"--force: replacing the README.md of {repo_id}, which {origin}.")
            return card_text, info
        if self.req.merge_metadata:
            self.say(f"--merge-metadata: the README.md of {repo_id} {origin}; keeping its text and merging this "
                     "run's metadata into it (metadata_update rules: smolforge's keys and metric values win, "
                     "everything else is kept).")
            return merge_metadata(remote, card_text), info
        cmd = retry_command(self.run, self.req, force=False, merge_metadata=False)
        raise SmolforgeError(
            f"The README.md of {repo_id} on the Hub {origin}, so nothing was pushed: smolforge does not overwrite it "
            f"silently. To keep the Hub's text and merge only this run's metadata into it: {cmd} --merge-metadata. "
            f"To replace it with this run's card: {cmd} --force.")

    def push(self, repo_id: str, folder: Path, card_text: str, info, message: str,
             description: str) -> dict[str, Any]:
        validate_card(card_text, self.req.endpoint, f"for {repo_id}", retry_command(self.run, self.req))
        self.retrier(f"Creating {repo_id}",
                     lambda: self.api.create_repo(repo_id, private=self.req.private, exist_ok=True))
        private = self.req.private
        if info is not None and info.private is not None:
            private = bool(info.private)
            if self.req.private_given and private != self.req.private:
                self.say(f"{repo_id} already exists and is {'private' if private else 'public'}; smolforge does not "
                         "change the visibility of an existing repo (change it in the repo's settings).")
        (folder / "README.md").write_text(card_text, encoding="utf-8")
        files = [f for f in folder.rglob("*") if f.is_file()]
        self.say(f"Pushing {len(files)} files ({sum(f.stat().st_size for f in files) / 1e6:.1f} MB) to {repo_id} "
                 f"on {self.req.endpoint} in one commit...")
        parent = info.sha if info is not None and info.sha else None
        commit = self.retrier(f"Uploading to {repo_id}", lambda: self.api.upload_folder(
            repo_id=repo_id, folder_path=str(folder), commit_message=message, parent_commit=parent,
            commit_description=description))
        return {"repo_id": repo_id, "url": f"{self.req.endpoint}/{repo_id}", "commit": commit.oid,
                "commit_url": commit.commit_url, "readme_sha256": sha256(card_text), "private": private,
                "pushed_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}


# ---------------------------------------------------------------- the whole publish

@contextmanager
def _xet_for(endpoint: str):
    """Uploads go through Xet on huggingface.co; a Hub-compatible server without Xet answers 404 on
    /xet-write-token, so for any other endpoint the plain LFS protocol is used."""
    from huggingface_hub import constants

    saved = constants.HF_HUB_DISABLE_XET
    if endpoint.rstrip("/") != DEFAULT_ENDPOINT:
        constants.HF_HUB_DISABLE_XET = True
    try:
        yield
    finally:
        constants.HF_HUB_DISABLE_XET = saved


def publish(run: RunFolder, cfg: SmolforgeConfig, req: PublishRequest, console=None,
            username: str | None = None) -> dict[str, Any]:
    """Push the run; record and return results.json's `publish` section. Raises SmolforgeError on failure."""
    require(repo_id_rule, req.repo_id, "--repo-id")
    say = _sayer(console)
    command = retry_command(run, req)
    token, source = find_token(req.token_file)
    if not token:
        raise SmolforgeError("No Hugging Face token found to publish with: set HF_TOKEN, run `hf auth login`, or "
                             f"pass --token-file FILE (a file holding only the token). Then: {command}")
    from huggingface_hub import HfApi

    api = HfApi(endpoint=req.endpoint, token=token)
    retrier = Retrier(req.endpoint, command, source, req.retries, say=say)
    # The token is checked first (a 401 here names the fix before anything else happens); the user name it
    # belongs to is the card's default author.
    me = retrier("Checking the token", lambda: whoami(token, req.endpoint))
    username = username or me.get("name")
    cfg = _with_publish(cfg, req)
    results = run.read_results()
    previous = results.get("publish") or {}
    same_repo = previous.get("repo_id") == req.repo_id and previous.get("endpoint") == req.endpoint
    pusher = RepoPusher(api, retrier, run, req, say)
    section: dict[str, Any] = {"endpoint": req.endpoint, "quantized_as": req.quantized_as}
    with tempfile.TemporaryDirectory(prefix="smolforge-publish-") as tmp, _xet_for(req.endpoint):
        staged = stage(run, cfg, req, Path(tmp) / "staged", username, say)
        # Every repo's README.md is checked before anything is pushed, so a refusal leaves all repos untouched.
        checked = []
        for repo in staged:
            last = ((previous.get("quantized_repos") or {}).get(repo.variant) or {}).get("readme_sha256") \
                if repo.variant else previous.get("readme_sha256")
            text, info = pusher.resolve_card(repo.repo_id, repo.card_text, last if same_repo else None, tmp)
            checked.append((repo, text, info))
        loss = results.get("eval_loss")
        experiment = cfg.experiment_name or run.root.name
        for repo, text, info in checked:
            if repo.variant == "gguf":
                section.setdefault("quantized_repos", {})["gguf"] = pusher.push(
                    repo.repo_id, repo.folder, text, info, f"smolforge: GGUF files of {req.repo_id}",
                    "GGUF files for llama.cpp and Ollama, their Modelfiles and verification, card. Pushed by "
                    "smolforge.")
                continue
            if repo.variant:
                section.setdefault("quantized_repos", {})[repo.variant] = pusher.push(
                    repo.repo_id, repo.folder, text, info, f"smolforge: {repo.variant} variant of {req.repo_id}",
                    f"{repo.variant} weights quantized with torchao, tokenizer, card. Pushed by smolforge.")
                continue
            message = f"smolforge: {experiment}" + (f" (eval loss {loss:.4f})" if loss is not None else "")
            description = "Model, card, results.json, config.yaml" + \
                (", quantized variants" if req.quantized_as == "subfolders" and variants(run, results) else "") + \
                ". Pushed by smolforge."
            section.update(pusher.push(repo.repo_id, repo.folder, text, info, message, description))
            section["files"] = [p.relative_to(repo.folder).as_posix() for p in _files_under(repo.folder)]
            main_text, main_is_new = text, repo.card_is_new and text == repo.card_text
    # Only a successful push changes the run folder: the card as pushed, its hash, the publish record, the choices.
    updates: dict[str, Any] = {"publish": section}
    if main_is_new:
        atomic_write_text(run.card_path, main_text)
        updates["card"] = {"sha256": sha256(main_text), "path": "model/README.md"}
    run.update_results(**updates)
    run.write_overrides({"publish": {k: v for k, v in dump_dict(cfg)["publish"].items()
                                     if k in ("repo_id", "private", "endpoint", "quantized_as")}})
    say(f"Published: {section['url']} ({'private' if section['private'] else 'public'}, commit "
        f"{section['commit'][:10]})")
    return section


def export(run: RunFolder, cfg: SmolforgeConfig, dest: Path, repo_id: str | None, quantized_as: str,
           username: str | None = None, console=None, force: bool = False) -> list[Path]:
    """Write exactly what `publish` would upload into `dest` (and `dest-<variant>` for separate repos, `dest-GGUF`
    for the GGUF files), offline."""
    say = _sayer(console)
    req = PublishRequest(repo_id=repo_id or "", quantized_as=quantized_as, force=force)
    cfg = _with_publish(cfg, req)
    results = run.read_results()
    names = [n for n in variants(run, results)] if quantized_as == "repos" else []
    if gguf_to_publish(run, results, force):
        names.append("GGUF")
    targets = [dest.with_name(f"{dest.name}-{n}") for n in names] + [dest]
    for t in targets:
        if t.exists() and (not t.is_dir() or any(t.iterdir())):
            raise SmolforgeError(f"--export: {t} already exists and is not empty. Choose a new folder (nothing "
                                 "was written).")
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".smolforge-export-", dir=dest.parent) as tmp:
        staged = stage(run, cfg, req, Path(tmp), username, say)
        for repo, target in zip(staged, targets, strict=True):  # everything staged: only now does anything appear
            if target.exists():
                target.rmdir()
            os.replace(repo.folder, target)
    for target in targets:
        say(f"Exported {target} ({len(_files_under(target))} files)")
    return targets


def _sayer(console):
    def say(text: str) -> None:
        log.info(redact(text))
        if console is not None:
            console.print(redact(text), markup=False, highlight=False)
    return say


__all__ = ["PublishRequest", "publish", "export", "retry_command", "HubUnreachable", "PublishError"]
