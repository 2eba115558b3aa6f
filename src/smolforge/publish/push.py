"""Push a staged publish to the Hub: every repo in one commit, nothing clobbered.

Order: the token is found (env or --token-file, never argv) and checked -> every repo is staged
with its card (rendered for this repo id unless edited by hand) -> every repo's README.md on the
Hub is compared with the one smolforge last pushed there (no clobbering without --force or
--merge-metadata) -> each card is validated by the Hub -> `create_repo(exist_ok=True)` ->
`upload_folder` (one commit per repo, with the inspected commit as parent, so a concurrent edit
fails the commit instead of being overwritten) -> only then are the card, results.json
(`publish`) and the run's overrides updated: a failed push leaves the run folder as it was.
"""

from __future__ import annotations

import tempfile
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from smolforge.card.hubmeta import merge_metadata, validate_card
from smolforge.card.render import sha256
from smolforge.config import SmolforgeConfig, dump_dict
from smolforge.credentials import find_token, whoami
from smolforge.errors import SmolforgeError
from smolforge.hubclient import DEFAULT_ENDPOINT, Retrier
from smolforge.identifiers import repo_id as repo_id_rule
from smolforge.identifiers import require
from smolforge.publish.request import PublishRequest, retry_command, sayer
from smolforge.publish.staging import files_under, stage, variants, with_publish
from smolforge.runfolder import RunFolder, atomic_write_text


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
    say = sayer(console)
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
    cfg = with_publish(cfg, req)
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
            section["files"] = [p.relative_to(repo.folder).as_posix() for p in files_under(repo.folder)]
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
