"""What gets uploaded, laid out in one folder per repo, for `publish` and for `--export` alike.

The main repo: model/ (weights, tokenizer, chat template, loss plot), README.md (the card), results.json,
manifest.json and config.yaml (all redacted, and with this machine's absolute paths reduced to file names;
config.yaml is the run's config with the card and publish choices made after training), the per-item
evaluation results, and each quantized variant as a subfolder (`int8/`), or as its own repo `<repo>-int8`
when `publish.quantized_as: repos`. GGUF files go to their own repo (`publish.gguf_repo_id`, default
`<repo>-GGUF`), only those that passed their checks and the fidelity gate unless `--force`. checkpoints/ and
logs/ are never uploaded. Nothing in the run folder changes here.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from smolforge.builtin_data import BUILTIN_FILES
from smolforge.card.gguf import gguf_entries, gguf_repo_id, published_gguf
from smolforge.card.lineage import lineage
from smolforge.card.render import render_card
from smolforge.card.repocards import gguf_card, variant_card
from smolforge.card.writer import hand_edited
from smolforge.config import SmolforgeConfig, dump_dict
from smolforge.credentials import redact
from smolforge.data import is_local_source
from smolforge.errors import SmolforgeError
from smolforge.hubclient import DEFAULT_ENDPOINT
from smolforge.localpaths import has_local_path, public_text
from smolforge.publish.request import PublishRequest, sayer
from smolforge.runfolder import RunFolder

PUBLISHED_CONFIG_HEADER = ("# smolforge config of this model: the training settings exactly as trained, the card and "
                           "publish\n# settings as published (secrets redacted). Train it again with: smolforge run "
                           "config.yaml\n")


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


def files_under(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file()
                  and not any(part.startswith(".") for part in p.relative_to(folder).parts))


TEXT_SUFFIXES = (".json", ".jsonl", ".yaml", ".yml", ".md", ".txt", ".jinja")  # may name local paths


def _copy_tree(src: Path, dest: Path, skip: tuple[str, ...] = ()) -> None:
    """Stage a folder: weights linked, text files with this machine's absolute paths reduced to their names
    (an adapter's local base, the evaluation's model sources)."""
    for f in files_under(src):
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


def with_publish(cfg: SmolforgeConfig, req: PublishRequest) -> SmolforgeConfig:
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


def loadable_base(run: RunFolder, cfg: SmolforgeConfig) -> str | None:
    """The Hub id an adapter's base is published under (None for a full model); an adapter whose base nobody could
    download is refused here, with the two ways to publish it, before anything is staged or pushed."""
    t = cfg.training
    if not t.adapters or t.lora.merge:
        return None
    base = lineage(cfg)
    if base.hub_id:
        return base.hub_id
    publish_base = (f"publish its base first (`smolforge publish {shlex.quote(base.run)} --repo-id USER/NAME`; the "
                    "adapter then names that repo), or " if base.run else "")
    raise SmolforgeError(
        f"{run.model_dir} holds a {'QLoRA' if t.four_bit_base else 'LoRA'} adapter, and its base ({base.name}) is "
        "not on the Hub, so nobody who downloads the adapter could load it: adapter_config.json could only name a "
        f"path on this machine. Nothing was published. To publish it, {publish_base}train it again with "
        "`--set training.lora.merge=true`, which publishes full weights with the adapter merged in.")


def stage(run: RunFolder, cfg: SmolforgeConfig, req: PublishRequest, root: Path, username: str | None,
          say) -> list[StagedRepo]:
    """Lay out every repo of this publish under `root` (one folder each); the main repo comes last.

    `cfg` already carries this publish's settings; nothing in the run folder changes here."""
    if not run.finished():
        raise SmolforgeError(f"{run.model_dir} has no trained model to publish. Finish the run first "
                             f"(smolforge run {run.root} --resume).")
    results = run.read_results()
    main_id = req.repo_id or run.root.name
    base_id = loadable_base(run, cfg)
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
    if base_id and (folder / "adapter_config.json").is_file():  # the base as a reader's loader finds it
        adapter = json.loads((folder / "adapter_config.json").read_text(encoding="utf-8"))
        adapter["base_model_name_or_path"] = base_id
        (folder / "adapter_config.json").write_text(json.dumps(adapter, indent=2) + "\n", encoding="utf-8")
    (folder / "README.md").write_text(card_text, encoding="utf-8")
    header = PUBLISHED_CONFIG_HEADER
    if cfg.data.name not in BUILTIN_FILES and is_local_source(cfg.data.name):
        header += ("# data.name was a local path, shown here by its last part only (the data is not published): "
                   "run this\n# where that file or folder is, or pass --set data.name=PATH.\n")
    config_text = RunFolder.config_text(dump_dict(cfg), header)
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


def export(run: RunFolder, cfg: SmolforgeConfig, dest: Path, repo_id: str | None, quantized_as: str,
           username: str | None = None, console=None, force: bool = False) -> list[Path]:
    """Write exactly what `publish` would upload into `dest` (and `dest-<variant>` for separate repos, `dest-GGUF`
    for the GGUF files), offline."""
    say = sayer(console)
    req = PublishRequest(repo_id=repo_id or "", quantized_as=quantized_as, force=force)
    cfg = with_publish(cfg, req)
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
        say(f"Exported {target} ({len(files_under(target))} files)")
    return targets
