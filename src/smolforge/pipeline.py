"""`smolforge run`: configure -> train -> evaluate -> quantize -> card -> publish, in one run folder.

The order is chosen so that everything a user can get wrong fails before the run folder is
created: config (validated on load), card license, run-folder clash, publish token, dataset
format and lengths. What can only fail after the folder exists (the model cannot be loaded,
LoRA targets that match nothing) removes the folder it created, so the next run starts clean.
Training runs in this process, or under torchrun when it takes several processes (`training.nproc`,
`training.nnodes`); on a node other than node 0, `smolforge run` only starts that node's processes.
"""

from __future__ import annotations

import os
import shlex
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from smolforge import demo, logs, processenv
from smolforge.card import defaults
from smolforge.card.render import check_template
from smolforge.card.writer import write_card
from smolforge.config import SmolforgeConfig, dump_dict
from smolforge.config.loading import deep_merge, validate
from smolforge.credentials import cached_username, find_token, redact
from smolforge.data import drop_report, precheck, prepare, report_lines
from smolforge.data.sources import check_source
from smolforge.errors import Interrupted, SmolforgeError
from smolforge.evaluation.stage import check_tasks, evaluate_run
from smolforge.gguf.precheck import check_before_training
from smolforge.hubclient import HubUnreachable, resolve_endpoint
from smolforge.launch import run_workers
from smolforge.modelio import check_model_name
from smolforge.nodes import join_run, wait_for_results
from smolforge.plan.inputs import for_run
from smolforge.plan.report import against_measured, not_fitting_message, record
from smolforge.plan.report import summary_rows as plan_rows
from smolforge.publish.push import publish
from smolforge.publish.request import PublishRequest
from smolforge.quantize import quantize_run
from smolforge.reproduce import manifest
from smolforge.resume import (
    check_new_folder,
    create_new_folder,
    default_experiment_name,
    default_run_folder,
    resume_point,
)
from smolforge.rewards import check_rewards
from smolforge.runfolder import RunFolder
from smolforge.runtime import resolve
from smolforge.train import train

# `smolforge run` exit code when training, the card and every local output are complete but the push to the Hub
# failed: scripts can tell it from success (0) and from a failed run (2). Documented in the README.
EXIT_NOT_PUBLISHED = 3


@dataclass
class RunOptions:
    yes: bool = False
    resume: bool = False
    argv: list[str] = field(default_factory=list)
    token_file: str | None = None
    ask_license: Callable[[], str] | None = None  # interactive runs only
    overrides: dict[str, Any] = field(default_factory=dict)  # card:/publish: changes given with --resume


class NotPublished(SmolforgeError):
    """The run is complete locally; the Hub could not be reached to publish it."""

    exit_code = EXIT_NOT_PUBLISHED


def check_card_inputs(cfg: SmolforgeConfig, ask_license=None) -> SmolforgeConfig:
    """Fail before training when the card could not be written; ask for an unknown license when we can."""
    try:
        defaults.license_for(cfg)
    except defaults.LicenseUnknownError:
        if ask_license is None:
            raise
        cfg = cfg.model_copy(update={"card": cfg.card.model_copy(update={"license": ask_license()})})
        defaults.license_for(cfg)
    return cfg


def check_publish_inputs(cfg: SmolforgeConfig, token_file: str | None) -> None:
    """With publish.repo_id set, a missing token or a bad endpoint fails before training, not after it."""
    if cfg.publish.demo_space and not cfg.publish.repo_id:
        raise SmolforgeError("publish.demo_space needs publish.repo_id: the Space loads the model from the Hub, so "
                             "set --repo-id user/name too (or drop publish.demo_space and run `smolforge demo` "
                             "later).")
    if not cfg.publish.repo_id:
        return

    resolve_endpoint(None, cfg.publish.endpoint)
    token, _ = find_token(token_file)
    if not token:
        raise SmolforgeError(f"publish.repo_id is {cfg.publish.repo_id!r}, but no Hugging Face token was found to "
                             "publish with. Set HF_TOKEN, run `hf auth login`, or pass --token-file FILE; or drop "
                             "publish.repo_id and publish later with `smolforge publish RUN_DIR --repo-id ...`.")


def summary_rows(cfg: SmolforgeConfig, run: RunFolder, data_stats: dict[str, Any] | None) -> list[tuple[str, str]]:
    t = cfg.training
    data = cfg.data.name
    if data_stats:
        data += f" ({data_stats['format']}, {data_stats['train_size']} train / {data_stats['eval_size']} eval)"
    rows = [
        ("Experiment", str(cfg.experiment_name)),
        ("Run folder", str(run.root)),
        ("Preset", cfg.preset or "custom"),
        ("Base model", cfg.model.name_or_path),
        ("Method", f"{t.method.upper()} / {t.finetune}"),
        ("Data", data),
        ("Batch", f"{t.batch_size} x {t.gradient_accumulation_steps} accumulation"
                  + (f" x {t.world_size} processes = {t.global_batch} sequences per step" if t.world_size > 1 else "")),
        *([("Topology", topology_row(t))] if t.world_size > 1 else []),
        ("Learning rate", f"{t.learning_rate:g}"),
        ("Length", f"{t.epochs:g} epochs" if t.max_steps <= 0 else f"{t.max_steps} steps"),
        ("Max length", f"{t.max_length} tokens"),
        ("Precision", t.precision),
        ("Tracking", cfg.tracking.backend + (f" (Space {cfg.tracking.space_id})" if cfg.tracking.space_id else "")),
        ("Author", cfg.card.author_name or "(HF username when known)"),
        ("License", cfg.card.license or "(base model's)"),
    ]
    if cfg.quantize.methods:
        rows.append(("Quantize", ", ".join(cfg.quantize.methods)))
    if cfg.publish.repo_id:
        rows.append(("Publish to", f"{cfg.publish.repo_id} ({'private' if cfg.publish.private else 'public'})"))
    return rows


def topology_row(t) -> str:
    """Nodes x processes, how they share the work, and where they meet."""
    how = "FSDP: weights, gradients and optimizer state sharded" if t.distributed == "fsdp" else \
        "DDP: a full model copy each"
    where = f"; node {t.node_rank}, rendezvous {t.rdzv_endpoint}" if t.nnodes > 1 else ""
    return f"{topology_text(t)} ({how}){where}"


def _record_command(argv: list[str]) -> str | None:
    if not argv:
        return None

    return redact("smolforge " + " ".join(shlex.quote(a) for a in argv))


def prepare_run(cfg: SmolforgeConfig, opts: RunOptions, console) -> tuple[SmolforgeConfig, RunFolder, Path | None]:
    """Resolve the run folder (new, or the one to resume) and the checkpoint to resume from."""
    if opts.resume:
        cfg, run, ckpt = resume_point(cfg)
        if opts.overrides:
            cfg = validate(deep_merge(dump_dict(cfg), opts.overrides), "the --resume options")
        if ckpt is None:
            console.print(f"{run.root} has no complete checkpoint to continue from: training starts over from "
                          "step 0 in the same folder.", markup=False)
        check_publish_inputs(cfg, opts.token_file)
        return cfg, run, ckpt
    if cfg.experiment_name is None:
        cfg = cfg.model_copy(update={"experiment_name": default_experiment_name(cfg)})
    run = default_run_folder(cfg)
    check_new_folder(run)
    cfg = check_card_inputs(cfg, opts.ask_license)
    check_publish_inputs(cfg, opts.token_file)
    return cfg, run, None


@dataclass
class Predicted:
    """The plan shown before training, kept to be set against what the run measures."""

    rows: list[tuple[str, str]]
    record: dict[str, Any]
    formula: dict[str, Any] | None  # the uncorrected estimate, when a calibration corrected it

    def against(self, results: dict[str, Any]) -> dict[str, Any]:
        return against_measured(self.record, results, self.formula)


def _plan(cfg: SmolforgeConfig, data, console) -> Predicted | None:
    """`smolforge plan` for this run on this machine; a plan that cannot be made never stops the run."""
    try:
        est, formula = for_run(cfg, data)
    except SmolforgeError as e:
        console.print(f"No memory/time plan: {e}", markup=False)
        return None
    warning = not_fitting_message(est)
    if warning:
        console.print(warning, markup=False)
    return Predicted(rows=plan_rows(est), record=record(est), formula=record(formula) if formula else None)


def _record_manifest(cfg: SmolforgeConfig, run: RunFolder, opts: RunOptions, data) -> None:
    """manifest.json beside config.yaml: what `smolforge reproduce` needs (a resume appends what changed)."""
    command = _record_command(opts.argv)
    if opts.resume:
        manifest.record_resume(run, command)
    else:
        manifest.write(run, manifest.build(cfg, run, command, data))


def _train(cfg: SmolforgeConfig, run: RunFolder, data, console, resume_from: Path | None) -> dict[str, Any]:
    logs.log.info("run folder %s%s", run.root, f" (resuming from {resume_from.name})" if resume_from else "")
    t = cfg.training
    if t.world_size > 1 and "LOCAL_RANK" not in os.environ:
        console.print(f"Launching {topology_text(t)} ({t.distributed})...", markup=False)
        run_workers(t, run, resume_from)
        return wait_for_results(run, t)

    return train(cfg, run, data, console=console, resume_from=resume_from)


def topology_text(t) -> str:
    """"2 nodes x 8 processes" (or "2 processes"), as the summary and the launch line say it."""
    per = f"{t.nproc} process{'es' if t.nproc > 1 else ''}"
    return f"{t.nnodes} nodes x {per}" if t.nnodes > 1 else f"{per} on this node"


def execute(cfg: SmolforgeConfig, opts: RunOptions, console, confirm) -> RunFolder:
    """The whole pipeline. `confirm(rows)` shows the summary and returns False to stop."""
    check_model_name(cfg)  # a mistyped path or id fails now, not after the Hub was asked for it
    check_source(cfg.data)
    processenv.prepare(cfg, console)
    if cfg.training.node_rank > 0:  # another node's part of a multi-node run: its training processes only

        return join_run(cfg, opts, console)
    cfg, run, resume_from = prepare_run(cfg, opts, console)
    data = prepare(cfg.data, cfg.training.method)
    tokenizer = precheck(cfg, data)  # token lengths vs training.max_length, with only the tokenizer: before any folder
    check_rewards(cfg, [dict(data.train[i]) for i in range(min(2, len(data.train)))], tokenizer)  # GRPO's rewards

    resolve(cfg)  # settings this machine cannot run (fp16 or Liger without CUDA, ...) fail before any folder
    if cfg.evaluation.tasks:
        check_tasks(cfg, data.eval if data.eval is not None else [])  # a bad benchmark fails now, not after training

    check_before_training(cfg)  # gguf-* methods: llama.cpp can convert this architecture and tokenizer

    check_template(run, cfg)  # a card template that cannot render fails now, not after training
    drops = drop_report(data.stats) + report_lines(data.stats)
    for line in drops:
        console.print(line, markup=False)
    predicted = None if opts.resume else _plan(cfg, data, console)  # memory and time, before any weights load
    rows = summary_rows(cfg, run, data.stats) + (predicted.rows if predicted else [])
    if not confirm(rows):
        raise SmolforgeError("Stopped before training; nothing was written.")

    created = not run.root.exists()
    if not opts.resume:
        create_new_folder(run)
        run.write_config(dump_dict(cfg))
    _record_manifest(cfg, run, opts, data)
    if data.stats.get("report"):
        run.write_data_report(data.stats["report"])
    if opts.overrides:
        run.write_overrides(opts.overrides)
    handler = logs.attach_file(run.logs_dir)
    for line in drops:
        logs.log.warning(line) if line.startswith("warning") else logs.log.info(line)
    try:
        try:
            results = _train(cfg, run, data, console, resume_from)
        except SmolforgeError as e:
            if created and not isinstance(e, Interrupted) and not run.checkpoints_dir.exists():
                logs.detach(handler)
                shutil.rmtree(run.root, ignore_errors=True)  # nothing trained: leave no half-made run behind
            raise
        command = _record_command(opts.argv)
        if command and not opts.resume:  # a resume is a later segment: the run's command is the one that started it
            results.setdefault("command", command)
        if predicted is not None and results:
            results["plan"] = predicted.against(results)  # every run checks the estimator
        run.write_results(results)
        finish_stages(run.read_config(), run, console, username=cached_username(), token_file=opts.token_file)
    finally:
        logs.detach(handler)
    return run


def finish_stages(cfg: SmolforgeConfig, run: RunFolder, console, username: str | None,
                  token_file: str | None = None) -> None:
    """After training: quantize (so the card can show the variants), the card, then publish when configured."""
    if cfg.quantize.methods:
        quantize_run(run, cfg, list(cfg.quantize.methods), console)
    if cfg.evaluation.tasks:
        evaluate_run(run, cfg, console)
    card = write_card(run, cfg, username=username, force=True)
    console.print(f"Model card: {card}", markup=False)
    if cfg.publish.repo_id:
        publish_after_run(cfg, run, console, username, token_file)
    if cfg.publish.demo_space:
        demo_after_run(cfg, run, console, token_file)


def check_published(run: RunFolder) -> None:
    """A run configured to publish whose push did not happen ends with its own exit code (after its summary)."""
    if run.read_config().publish.repo_id and not run.read_results().get("publish"):
        raise NotPublished(f"Training finished and {run.root} is complete, but it was not published (see above). "
                           f"Publish it later with: smolforge publish {shlex.quote(str(run.root))}")


def demo_after_run(cfg: SmolforgeConfig, run: RunFolder, console, token_file: str | None) -> None:
    """`publish.demo_space`: a chat Space for the published model. Like the model's push, a Hub problem
    here does not undo a finished run: it says what happened and the exact command to retry."""
    retry = f"smolforge demo {shlex.quote(str(run.root))} --space {cfg.publish.demo_space}"
    model_id = (run.read_results().get("publish") or {}).get("repo_id")
    if not model_id:
        console.print(f"Demo Space not created: the model was not published, and the Space loads it from the Hub. "
                      f"Publish it, then run: {retry}", markup=False)
        return
    folder = demo.write_app(demo.settings_for(run, cfg, model_id=model_id), demo.default_output(run.root))
    console.print(f"Demo app written: {folder}", markup=False)
    token, _ = find_token(token_file)
    try:
        info = demo.publish_space(folder, cfg.publish.demo_space, private=cfg.publish.private, token=str(token),
                                  endpoint=cfg.publish.endpoint)
    except SmolforgeError as e:
        console.print(f"Demo Space not published ({e}). Retry with: {retry}", markup=False)
        return
    run.update_results(demo=info)
    console.print(f"Demo Space: {info.get('url', cfg.publish.demo_space)}", markup=False)


def publish_after_run(cfg: SmolforgeConfig, run: RunFolder, console, username: str | None,
                      token_file: str | None) -> None:
    """Publish at the end of `smolforge run`. An unreachable Hub does not fail the run: it says how to publish
    later (and `smolforge run` exits with EXIT_NOT_PUBLISHED)."""
    req = PublishRequest(repo_id=str(cfg.publish.repo_id), private=cfg.publish.private,
                         endpoint=resolve_endpoint(None, cfg.publish.endpoint),
                         quantized_as=cfg.publish.quantized_as, token_file=token_file)
    try:
        publish(run, cfg, req, console, username=username)
    except HubUnreachable as e:
        console.print(f"Not published: {e}", markup=False)
    except SmolforgeError as e:
        e.args = (f"Training finished and {run.root} is complete, but publishing failed. {e}",)
        raise
