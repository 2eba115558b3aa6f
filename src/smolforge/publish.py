"""Publish a run to the Hugging Face Hub in one commit, or export the same folder offline.

What is uploaded (the seed's layout): model/ (weights, tokenizer, chat template, loss plot),
README.md (the card), results.json and config.yaml (both redacted), and each quantized variant
as a subfolder (`int8/`), or as its own repo `<repo>-int8` with `base_model_relation: quantized`
when `publish.quantized_as: repos`. checkpoints/ and logs/ are never uploaded.

Order: the token is found (env or --token-file, never argv) -> the card is rewritten with the
repo id unless it was edited by hand -> the repo's current README.md is compared with the one
smolforge last pushed there (no clobbering without --force or --merge-metadata) -> the card is
validated by the Hub -> `create_repo(exist_ok=True)` -> `upload_folder` (one commit, with the
inspected commit as parent, so a concurrent edit fails the commit instead of being overwritten)
-> only then are the card, results.json (`publish`) and config.yaml updated: a failed push leaves the
run folder exactly as it was.
"""

from __future__ import annotations

import logging
import os
import shlex
import shutil
import tempfile
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from smolforge.card.context import CardInputs
from smolforge.card.render import sha256
from smolforge.config import REPO_ID_RE, SmolforgeConfig, dump_dict
from smolforge.credentials import redact
from smolforge.errors import PublishError, SmolforgeError
from smolforge.hubclient import DEFAULT_ENDPOINT, HubUnreachable, Retrier
from smolforge.runfolder import RunFolder, atomic_write_text

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


def check_repo_id(repo_id: str | None, flag: str = "--repo-id") -> str:
    if not repo_id:
        raise SmolforgeError(f"{flag}: no Hub repo given. Pass {flag} user/name (or set publish.repo_id in the "
                             "config).")
    if not REPO_ID_RE.fullmatch(repo_id):
        raise SmolforgeError(f"{flag}: {repo_id!r} is not a Hub repo id. Use user/name (letters, digits, '-', '_', "
                             "'.'; at most 96 characters each).")
    return repo_id


def publish_command(run: RunFolder, req: PublishRequest, **changes: Any) -> str:
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
    """Quantized variants recorded in results.json whose folder exists."""
    return {k: v for k, v in (results.get("quantized") or {}).items()
            if isinstance(v, dict) and v.get("path") and (run.root / v["path"]).is_dir()}


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


def stage(run: RunFolder, cfg: SmolforgeConfig, card_text: str, dest: Path, quantized_as: str) -> list[str]:
    """Lay out the repo's files in `dest` (which must be empty); returns their paths in the repo.

    config.yaml is the run's config with this publish's settings (what the run folder will hold after a
    successful push); results.json is the run's, both redacted once more with every token this process saw."""
    results = run.read_results()
    if not (run.model_dir.is_dir() and any(run.model_dir.glob("*.safetensors"))):
        raise SmolforgeError(f"{run.model_dir} has no weights (*.safetensors) to publish. Finish the run first "
                             f"(smolforge run ... or smolforge run {run.root} --resume).")
    dest.mkdir(parents=True, exist_ok=True)
    for f in _files_under(run.model_dir):
        if f.relative_to(run.model_dir).as_posix() != "README.md":
            _link_or_copy(f, dest / f.relative_to(run.model_dir))
    (dest / "README.md").write_text(card_text, encoding="utf-8")
    (dest / "config.yaml").write_text(RunFolder.config_text(dump_dict(cfg)), encoding="utf-8")
    if run.results_path.exists():
        (dest / "results.json").write_text(redact(run.results_path.read_text(encoding="utf-8")), encoding="utf-8")
    if quantized_as == "subfolders":
        for name, entry in variants(run, results).items():
            src = run.root / entry["path"]
            for f in _files_under(src):
                _link_or_copy(f, dest / (entry.get("subfolder") or name) / f.relative_to(src))
    return [p.relative_to(dest).as_posix() for p in _files_under(dest)]


def variant_card(run: RunFolder, cfg: SmolforgeConfig, name: str, entry: dict[str, Any], main_repo: str,
                 variant_repo: str, username: str | None) -> str:
    """The card of a variant published as its own repo: `base_model: <main repo>`, relation `quantized`."""
    from huggingface_hub import ModelCard

    from smolforge.card.context import build_context
    from smolforge.card.render import card_data

    results = run.read_results()
    ctx = build_context(run, cfg, results, CardInputs.from_section(cfg.card, main_repo), username=username)
    ctx.update(model_name=variant_repo.split("/")[-1], base_model_id=main_repo, is_adapter=False,
               validation_loss=entry.get("eval_loss"), perplexity=entry.get("perplexity"),
               tags=list(dict.fromkeys([*ctx["tags"], "torchao", name, "quantized"])))
    data = card_data(ctx, results, relation="quantized")
    ref = entry.get("reference") or {}
    rows = [f"| Weights on disk | {_mb(ref.get('size_bytes'))} | {_mb(entry.get('size_bytes'))}"
            + (f" ({entry['size_bytes'] / ref['size_bytes']:.0%})" if ref.get("size_bytes") else "") + " |"]
    if entry.get("eval_loss") is not None and ref.get("eval_loss") is not None:
        rows.append(f"| Validation loss | {ref['eval_loss']:.4f} | {entry['eval_loss']:.4f} |")
    if entry.get("perplexity") is not None and ctx.get("quantized_reference"):
        ref_ppl = ctx["quantized_reference"].get("perplexity")
        rows.append(f"| Perplexity | {ref_ppl:.2f} | {entry['perplexity']:.2f} |" if ref_ppl is not None else
                    f"| Perplexity | | {entry['perplexity']:.2f} |")
    body = "\n".join([
        f"# {ctx['model_name']}", "",
        f"{name} weight-only quantization of [`{main_repo}`](https://huggingface.co/{main_repo}), made with "
        f"torchao {entry.get('torchao', '')} ({entry.get('method')}: {entry.get('scheme')}).", "",
        f"| | Full precision ({ref.get('dtype', 'unquantized')}) | {name} |", "|---|---|---|", *rows, "",
        f"Measured on {ctx.get('eval_split') or 'the evaluation split'} with the same data preparation and loss as "
        "the full-precision model; sizes count the weight files (`*.safetensors`).", "",
        "## Usage", "", "Needs `torchao` (`pip install torchao`):", "", "```python",
        "from transformers import AutoModelForCausalLM, AutoTokenizer", "",
        f'model = AutoModelForCausalLM.from_pretrained("{variant_repo}")',
        f'tokenizer = AutoTokenizer.from_pretrained("{variant_repo}")', "```", "",
        f"Training details, data, limitations and license: see [`{main_repo}`](https://huggingface.co/{main_repo}).",
        ""])
    return str(ModelCard(f"---\n{data.to_yaml()}\n---\n\n{body}"))


def _mb(n: int | None) -> str:
    return f"{n / 1e6:.2f} MB" if n else ""


# ---------------------------------------------------------------- the card

def prepare_card(run: RunFolder, cfg: SmolforgeConfig, req: PublishRequest, username: str | None,
                 say) -> tuple[str, bool]:
    """(card text to publish, whether it is new): rendered for this repo id in memory, unless model/README.md
    was edited by hand (then it is published as is). Nothing is written here, so a failed push changes nothing."""
    from smolforge.card.render import render_card
    from smolforge.card.writer import hand_edited

    if hand_edited(run, run.card_path):
        say(f"{run.card_path} was edited by hand: publishing it as is (rewrite it with "
            f"`smolforge card {shlex.quote(str(run.root))} --force`).")
        return run.card_path.read_text(encoding="utf-8"), False
    inputs = CardInputs.from_section(cfg.card, req.repo_id or None)
    return str(render_card(run, cfg, run.read_results(), inputs, username=username)), True


def _with_publish(cfg: SmolforgeConfig, req: PublishRequest) -> SmolforgeConfig:
    update = {"quantized_as": req.quantized_as}
    if req.repo_id:
        update.update(repo_id=req.repo_id, private=req.private,
                      endpoint=None if req.endpoint == DEFAULT_ENDPOINT else req.endpoint)
    return cfg.model_copy(update={"publish": cfg.publish.model_copy(update=update)})


def merge_metadata(remote_text: str, ours_text: str) -> str:
    """The Hub's card with smolforge's metadata merged in by `metadata_update(..., overwrite=True)`'s rules.

    metadata_update() pushes a commit of its own; smolforge needs the merged card inside its one
    commit, so the same rules are applied here: each key smolforge sets replaces the Hub's value,
    a result for the same task/dataset/metric has its value replaced, other results and keys stay.
    """
    from huggingface_hub import ModelCard

    remote, ours = ModelCard(remote_text), ModelCard(ours_text)
    for key, value in ours.data.to_dict().items():
        if key == "model-index":
            continue
        remote.data[key] = value
    new_results = ours.data.eval_results or []
    if remote.data.eval_results is None:
        remote.data.eval_results = new_results
        remote.data.model_name = ours.data.model_name
    else:
        for new in new_results:
            same = [old for old in remote.data.eval_results if new.is_equal_except_value(old)]
            for old in same:
                old.metric_value = new.metric_value
            if not same:
                remote.data.eval_results.append(new)
    return str(remote)


def validate_card(text: str, endpoint: str, where: str, command: str) -> None:
    """`ModelCard.validate()` on the Hub we push to (it posts to the endpoint read at import time)."""
    import json

    from huggingface_hub import ModelCard, constants

    try:
        card = ModelCard(text)
    except ValueError as e:
        raise SmolforgeError(f"{where}: the card's metadata cannot be parsed ({e}). Fix it, or rewrite the card "
                             f"with `smolforge card RUN_DIR --force`; then: {command}") from None
    saved = constants.ENDPOINT
    constants.ENDPOINT = endpoint
    try:
        card.validate(repo_type="model")
    except ValueError as e:
        reason = str(e)
        try:
            reason = "; ".join(x.get("message", "") for x in json.loads(reason).get("errors", [])) or reason
        except (ValueError, AttributeError):
            pass
        raise SmolforgeError(f"The Hub at {endpoint} rejected the model card {where}: {redact(reason)}. Nothing "
                             f"was pushed. Fix the card (edit it, or `smolforge card RUN_DIR ...`), then: "
                             f"{command}") from None
    finally:
        constants.ENDPOINT = saved


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
        cmd = publish_command(self.run, self.req, force=False, merge_metadata=False)
        raise SmolforgeError(
            f"The README.md of {repo_id} on the Hub {origin}, so nothing was pushed: smolforge does not overwrite it "
            f"silently. To keep the Hub's text and merge only this run's metadata into it: {cmd} --merge-metadata. "
            f"To replace it with this run's card: {cmd} --force.")

    def push(self, repo_id: str, folder: Path, card_text: str, info, message: str,
             description: str) -> dict[str, Any]:
        validate_card(card_text, self.req.endpoint, f"for {repo_id}", publish_command(self.run, self.req))
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

def publish(run: RunFolder, cfg: SmolforgeConfig, req: PublishRequest, console=None,
            username: str | None = None) -> dict[str, Any]:
    """Push the run; record and return results.json's `publish` section. Raises SmolforgeError on failure."""
    from smolforge.credentials import find_token

    check_repo_id(req.repo_id)
    say = _sayer(console)
    command = publish_command(run, req)
    token, source = find_token(req.token_file)
    if not token:
        raise SmolforgeError("No Hugging Face token found to publish with: set HF_TOKEN, run `hf auth login`, or "
                             f"pass --token-file FILE (a file holding only the token). Then: {command}")
    from huggingface_hub import HfApi

    from smolforge.credentials import whoami

    api = HfApi(endpoint=req.endpoint, token=token)
    retrier = Retrier(req.endpoint, command, source, req.retries, say=say)
    # The token is checked first (a 401 here names the fix before anything else happens); the user name it
    # belongs to is the card's default author.
    me = retrier("Checking the token", lambda: whoami(token, req.endpoint))
    username = username or me.get("name")
    cfg = _with_publish(cfg, req)
    card_text, card_is_new = prepare_card(run, cfg, req, username, say)
    results = run.read_results()
    previous = results.get("publish") or {}
    same_repo = previous.get("repo_id") == req.repo_id and previous.get("endpoint") == req.endpoint
    pusher = RepoPusher(api, retrier, run, req, say)
    section: dict[str, Any] = {"endpoint": req.endpoint, "quantized_as": req.quantized_as}
    experiment = cfg.experiment_name or run.root.name
    with tempfile.TemporaryDirectory(prefix="smolforge-publish-") as tmp:
        # Every repo's README.md is checked before anything is pushed, so a refusal leaves all repos untouched.
        separate = []
        if req.quantized_as == "repos":
            for name, entry in variants(run, results).items():
                vrepo = f"{req.repo_id}-{name}"
                last = ((previous.get("quantized_repos") or {}).get(name) or {}).get("readme_sha256") \
                    if same_repo else None
                vcard, vinfo = pusher.resolve_card(vrepo, variant_card(run, cfg, name, entry, req.repo_id, vrepo,
                                                                       username), last, tmp)
                folder = Path(tmp) / f"variant-{name}"
                for f in _files_under(run.root / entry["path"]):
                    _link_or_copy(f, folder / f.relative_to(run.root / entry["path"]))
                separate.append((name, vrepo, folder, vcard, vinfo))
        card_text, info = pusher.resolve_card(req.repo_id, card_text, previous.get("readme_sha256")
                                              if same_repo else None, tmp)
        if separate:
            section["quantized_repos"] = {
                name: pusher.push(vrepo, folder, vcard, vinfo, f"smolforge: {name} variant of {req.repo_id}",
                                  f"{name} weights quantized with torchao, tokenizer, card. Pushed by smolforge.")
                for name, vrepo, folder, vcard, vinfo in separate}
        folder = Path(tmp) / "repo"
        files = stage(run, cfg, card_text, folder, req.quantized_as)
        loss = results.get("eval_loss")
        message = f"smolforge: {experiment}" + (f" (eval loss {loss:.4f})" if loss is not None else "")
        description = "Model, card, results.json, config.yaml" + \
            (", quantized variants" if req.quantized_as == "subfolders" and variants(run, results) else "") + \
            ". Pushed by smolforge."
        section.update(pusher.push(req.repo_id, folder, card_text, info, message, description))
        section["files"] = files
    # Only a successful push changes the run folder: the card as pushed, its hash, the publish record, the config.
    if card_is_new:
        atomic_write_text(run.card_path, card_text)
    updates: dict[str, Any] = {"publish": section}
    if card_is_new:
        updates["card"] = {"sha256": sha256(card_text), "path": "model/README.md"}
    run.update_results(**updates)
    if dump_dict(cfg) != run.read_config_data():
        run.write_config(dump_dict(cfg))  # later `smolforge card` runs show the repo
    say(f"Published: {section['url']} ({'private' if section['private'] else 'public'}, commit "
        f"{section['commit'][:10]})")
    return section


def export(run: RunFolder, cfg: SmolforgeConfig, dest: Path, repo_id: str | None, quantized_as: str,
           username: str | None = None, console=None) -> list[Path]:
    """Write exactly what `publish` would upload into `dest` (and `dest-<variant>` for separate repos), offline."""
    say = _sayer(console)
    targets = [dest] + ([dest.with_name(f"{dest.name}-{n}") for n in variants(run, run.read_results())]
                        if quantized_as == "repos" else [])
    for t in targets:
        if t.exists() and any(t.iterdir()):
            raise SmolforgeError(f"--export: {t} exists and is not empty. Choose a new folder (nothing was written).")
    req = PublishRequest(repo_id=repo_id or "", quantized_as=quantized_as)
    cfg = _with_publish(cfg, req)
    card_text, _ = prepare_card(run, cfg, req, username, say)
    parent = dest.parent
    parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".smolforge-export-", dir=parent) as tmp:
        staged = Path(tmp) / "repo"
        stage(run, cfg, card_text, staged, quantized_as)
        built = [(staged, dest)]
        if quantized_as == "repos":
            for name, entry in variants(run, run.read_results()).items():
                folder = Path(tmp) / name
                for f in _files_under(run.root / entry["path"]):
                    _link_or_copy(f, folder / f.relative_to(run.root / entry["path"]))
                vrepo = f"{repo_id}-{name}" if repo_id else f"{run.root.name}-{name}"
                (folder / "README.md").write_text(variant_card(run, cfg, name, entry, repo_id or run.root.name,
                                                               vrepo, username), encoding="utf-8")
                built.append((folder, dest.with_name(f"{dest.name}-{name}")))
        for src, dst in built:  # everything was staged: only now does anything appear at the destination
            if dst.exists():
                dst.rmdir()
            os.replace(src, dst)
    for _, dst in built:
        say(f"Exported {dst} ({len(_files_under(dst))} files)")
    return [dst for _, dst in built]


def _sayer(console):
    def say(text: str) -> None:
        log.info(redact(text))
        if console is not None:
            console.print(redact(text), markup=False, highlight=False, soft_wrap=True)
    return say


__all__ = ["PublishRequest", "publish", "export", "publish_command", "HubUnreachable", "PublishError"]
