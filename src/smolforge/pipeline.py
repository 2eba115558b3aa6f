"""`smolforge run`: configure -> train -> evaluate -> quantize -> card -> publish, in one run folder.

The order is chosen so that everything a user can get wrong fails before the model is loaded:
config (validated on load), card license, run-folder clash, dataset format. Training then runs
in this process, or under torchrun when `training.nproc > 1`.
"""

from __future__ import annotations

import logging
import os
import re
import shlex
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from smolforge.card.context import CardInputs, resolve_license, slugify
from smolforge.config import SmolforgeConfig, dump_dict
from smolforge.errors import SmolforgeError
from smolforge.runfolder import RunFolder

OFFLINE_ENV = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}


@dataclass
class RunOptions:
    yes: bool = False
    resume: bool = False
    argv: list[str] = field(default_factory=list)
    token_file: str | None = None
    ask_license: Callable[[], str] | None = None  # interactive runs only


def set_quiet_env(cfg: SmolforgeConfig | None = None) -> None:
    """Environment for a run, set before torch/transformers/huggingface_hub are imported."""
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    os.environ.setdefault("TORCHAO_FORCE_SKIP_LOADING_SO_FILES", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    # torchao (imported by trl, peft and the quantize stage) registers enums with torch's pytree, which logs a
    # deprecation warning per enum on the console: noise for a user, nothing to act on.
    logging.getLogger("torch.utils._pytree").setLevel(logging.ERROR)
    if cfg is not None and not _needs_hub(cfg):  # nothing to fetch: never let a library try the network
        for key, value in OFFLINE_ENV.items():
            os.environ.setdefault(key, value)


def _needs_hub(cfg: SmolforgeConfig) -> bool:
    from smolforge.data import is_local_source

    model_local = cfg.model.is_tiny or Path(cfg.model.name_or_path).expanduser().exists()
    return not model_local or not is_local_source(cfg.data.name) or bool(cfg.publish.repo_id) \
        or bool(cfg.tracking.space_id)


def default_experiment_name(cfg: SmolforgeConfig, now: datetime | None = None) -> str:
    now = now or datetime.now()
    model = "tiny" if cfg.model.is_tiny else slugify(Path(cfg.model.name_or_path.rstrip("/")).name)
    method = cfg.training.method + ("-lora" if cfg.training.finetune == "lora" else "")
    return f"{model}-{method}-{now:%Y%m%d-%H%M%S}"


def run_folder_for(cfg: SmolforgeConfig) -> RunFolder:
    if cfg.output_dir:
        return RunFolder(Path(cfg.output_dir).expanduser())
    return RunFolder(Path("runs") / str(cfg.experiment_name))


def _comparable(data: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in data.items() if k not in ("experiment_name", "output_dir")}


def find_resumable(cfg: SmolforgeConfig) -> RunFolder | None:
    """The run to resume for a config: its explicit folder, else the newest run of the same config."""
    if cfg.output_dir or cfg.experiment_name:
        run = run_folder_for(cfg)
        return run if run.config_path.exists() else None
    root = Path("runs")
    if not root.is_dir():
        return None
    wanted = _comparable(dump_dict(cfg))
    candidates = []
    for d in root.iterdir():
        run = RunFolder(d)
        if not run.config_path.exists() or not run.checkpoints_dir.is_dir():
            continue
        try:
            same = _comparable(run.read_config_data()) == wanted
        except Exception:  # an unreadable folder is simply not a candidate
            same = False
        if same:
            candidates.append((d.stat().st_mtime, run))
    return max(candidates, key=lambda c: c[0])[1] if candidates else None


def last_checkpoint(run: RunFolder) -> str | None:
    if not run.checkpoints_dir.is_dir():
        return None
    steps = []
    for d in run.checkpoints_dir.iterdir():
        m = re.fullmatch(r"checkpoint-(\d+)", d.name)
        if m and d.is_dir() and (d / "trainer_state.json").exists():
            steps.append((int(m.group(1)), d))
    return str(max(steps)[1]) if steps else None


def check_card_inputs(cfg: SmolforgeConfig, ask_license=None) -> SmolforgeConfig:
    """Fail before training when the card could not be written; ask for an unknown license when we can."""
    from smolforge.card.context import LicenseUnknownError

    try:
        resolve_license(cfg, CardInputs.from_section(cfg.card))
    except LicenseUnknownError:
        if ask_license is None:
            raise
        cfg = cfg.model_copy(update={"card": cfg.card.model_copy(update={"license": ask_license()})})
        resolve_license(cfg, CardInputs.from_section(cfg.card))
    return cfg


def launch_workers(run: RunFolder, nproc: int, distributed: str, resume_from: str | None) -> None:
    """Re-run training under torchrun (DDP) or accelerate (FSDP); the token travels by env only."""
    from importlib import resources

    worker = ["-m", "smolforge.worker", str(run.root)] + (["--resume-from", resume_from] if resume_from else [])
    if distributed == "fsdp":
        fsdp_cfg = resources.files("smolforge").joinpath("resources/accelerate_fsdp.yaml")
        cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(fsdp_cfg),
               "--num_processes", str(nproc), *worker]
    else:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
               *worker]
    env = dict(os.environ)  # the token, if any, travels here: never in argv
    if "OMP_NUM_THREADS" not in env:  # N processes share the cores instead of each taking all of them
        env["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // nproc))
    proc = subprocess.run(cmd, env=env)
    if proc.returncode in (130, 143, -2, -15):
        raise SmolforgeError(f"Training was interrupted. Resume with: smolforge run {shlex.quote(str(run.root))} "
                             "--resume")
    if proc.returncode != 0:
        raise SmolforgeError(f"Training workers failed (exit code {proc.returncode}); see "
                             f"{run.logs_dir / 'run.log'} and the output above.")


def summary_rows(cfg: SmolforgeConfig, run: RunFolder, data_stats: dict[str, Any] | None) -> list[tuple[str, str]]:
    t = cfg.training
    rows = [
        ("Experiment", str(cfg.experiment_name)),
        ("Run folder", str(run.root)),
        ("Preset", cfg.preset or "custom"),
        ("Base model", cfg.model.name_or_path),
        ("Method", f"{t.method.upper()} / {t.finetune}"),
        ("Data", f"{cfg.data.name}" + (f" ({data_stats['format']}, {data_stats['train_size']} train / "
                                        f"{data_stats['eval_size']} eval)" if data_stats else "")),
        ("Batch", f"{t.batch_size} x {t.gradient_accumulation_steps} accumulation"),
        ("Learning rate", f"{t.learning_rate:g}"),
        ("Length", f"{t.epochs:g} epochs" if t.max_steps <= 0 else f"{t.max_steps} steps"),
        ("Max length", f"{t.max_length} tokens"),
        ("Precision", t.precision),
        ("Tracking", cfg.tracking.backend + (f" (Space {cfg.tracking.space_id})" if cfg.tracking.space_id else "")),
        ("Author", cfg.card.author_name or "(HF username when known)"),
        ("License", cfg.card.license or "(base model's)"),
    ]
    if cfg.quantize:
        rows.append(("Quantize", ", ".join(cfg.quantize)))
    if cfg.publish.repo_id:
        rows.append(("Publish to", f"{cfg.publish.repo_id} ({'private' if cfg.publish.private else 'public'})"))
    return rows


class RunInterrupted(SmolforgeError):
    """Training stopped on Ctrl-C / SIGTERM after saving a checkpoint."""

    def __init__(self, message: str, signum: int):
        super().__init__(message)
        self.exit_code = 128 + signum


def _record_command(argv: list[str]) -> str | None:
    if not argv:
        return None
    from smolforge.credentials import redact

    return redact("smolforge " + " ".join(shlex.quote(a) for a in argv))


def prepare_run(cfg: SmolforgeConfig, opts: RunOptions) -> tuple[SmolforgeConfig, RunFolder, str | None]:
    """Resolve the run folder (new, or the one to resume) and the checkpoint to resume from."""
    if opts.resume:
        run = find_resumable(cfg)
        if run is None:
            raise SmolforgeError("--resume: no earlier run of this config was found. Pass the run folder itself "
                                 "(smolforge run runs/<experiment> --resume), or start a new run without --resume.")
        cfg = run.read_config()
        ckpt = last_checkpoint(run)
        if ckpt is None:
            raise SmolforgeError(f"--resume: {run.root} has no checkpoint to resume from (checkpoints/ is empty). "
                                 "Start the run again without --resume.")
        check_publish_inputs(cfg, opts.token_file)
        return cfg, run, ckpt
    if cfg.experiment_name is None:
        cfg = cfg.model_copy(update={"experiment_name": default_experiment_name(cfg)})
    run = run_folder_for(cfg)
    if run.results_path.exists() or run.model_dir.exists() or run.checkpoints_dir.exists():
        raise SmolforgeError(f"The run folder {run.root} already holds a run. Choose another name with "
                             "--experiment-name (or --output-dir), continue it with --resume, or remove it.")
    cfg = check_card_inputs(cfg, opts.ask_license)
    check_publish_inputs(cfg, opts.token_file)
    return cfg, run, None


def execute(cfg: SmolforgeConfig, opts: RunOptions, console, confirm) -> RunFolder:
    """The whole pipeline. `confirm(rows)` shows the summary and returns False to stop."""
    from smolforge import logs
    from smolforge.credentials import cached_username
    from smolforge.data import precheck, prepare

    set_quiet_env(cfg)
    cfg, run, resume_from = prepare_run(cfg, opts)
    set_quiet_env(cfg)
    data = prepare(cfg.data, cfg.training.method)
    precheck(cfg, data)  # token lengths vs training.max_length, with only the tokenizer: fails before any folder
    if not confirm(summary_rows(cfg, run, data.stats)):
        raise SmolforgeError("Stopped before training; nothing was written.")

    if resume_from is None:
        run.root.mkdir(parents=True, exist_ok=True)
        run.write_config(dump_dict(cfg))
    handler = logs.attach_file(run.logs_dir)
    try:
        logs.log.info("run folder %s%s", run.root, f" (resuming from {resume_from})" if resume_from else "")
        if cfg.training.nproc > 1 and "LOCAL_RANK" not in os.environ:
            console.print(f"Launching {cfg.training.nproc} training processes ({cfg.training.distributed})...")
            launch_workers(run, cfg.training.nproc, cfg.training.distributed, resume_from)
            results = run.read_results()
        else:
            from smolforge.train import Interrupted, train

            try:
                results = train(cfg, run, data, console=console, resume_from=resume_from)
            except Interrupted as e:
                where = f" in {e.checkpoint}" if e.checkpoint else ""
                raise RunInterrupted(
                    f"Training stopped at step {e.step}; checkpoint saved{where}. Resume with: "
                    f"smolforge run {shlex.quote(str(run.root))} --resume", e.signum) from None
        command = _record_command(opts.argv)
        if command:
            results["command"] = command
        run.write_results(results)
        finish_stages(cfg, run, console, username=cached_username(), token_file=opts.token_file)
    finally:
        logs.detach(handler)
    return run


def finish_stages(cfg: SmolforgeConfig, run: RunFolder, console, username: str | None,
                  token_file: str | None = None) -> None:
    """After training: quantize (so the card can show the variants), the card, then publish when configured."""
    from smolforge.card.writer import write_card

    if cfg.quantize:
        from smolforge.quantize import quantize_run

        quantize_run(run, cfg, list(cfg.quantize), console)
    card = write_card(run, cfg, CardInputs.from_section(cfg.card, cfg.publish.repo_id), username=username,
                      force=True)
    console.print(f"Model card: {card}")
    if cfg.publish.repo_id:
        publish_after_run(cfg, run, console, username, token_file)
    if cfg.publish.demo_space:
        demo_after_run(cfg, run, console, token_file)


def demo_after_run(cfg: SmolforgeConfig, run: RunFolder, console, token_file: str | None) -> None:
    """`publish.demo_space`: a chat Space for the published model. Like the model's push, a Hub problem
    here does not undo a finished run: it says what happened and the exact command to retry."""
    from smolforge import demo
    from smolforge.credentials import find_token

    retry = f"smolforge demo {shlex.quote(str(run.root))} --space {cfg.publish.demo_space}"
    model_id = (run.read_results().get("publish") or {}).get("repo_id")
    if not model_id:
        console.print(f"Demo Space not created: the model was not published, and the Space loads it from the Hub. "
                      f"Publish it, then run: {retry}", markup=False, highlight=False, soft_wrap=True)
        return
    folder = demo.write_app(demo.settings_for(run, cfg, model_id=model_id), demo.default_output(run.root))
    console.print(f"Demo app written: {folder}")
    token, _ = find_token(token_file)
    try:
        info = demo.publish_space(folder, cfg.publish.demo_space, private=cfg.publish.private, token=str(token),
                                  endpoint=cfg.publish.endpoint)
    except SmolforgeError as e:
        console.print(f"Demo Space not published ({e}). Retry with: {retry}", markup=False, highlight=False,
                      soft_wrap=True)
        return
    run.update_results(demo=info)
    console.print(f"Demo Space: {info.get('url', cfg.publish.demo_space)}")


def refresh_card(run: RunFolder, cfg: SmolforgeConfig, console, username: str | None) -> None:
    """Rewrite the card after a stage added facts to results.json, unless it was edited by hand."""
    from smolforge.card.writer import hand_edited, write_card

    if hand_edited(run, run.card_path):
        console.print(f"{run.card_path} was edited by hand, so it was not rewritten; include the new results with "
                      f"`smolforge card {shlex.quote(str(run.root))} --force` (this replaces your edits).")
        return
    card = write_card(run, cfg, CardInputs.from_section(cfg.card, cfg.publish.repo_id), username=username,
                      force=True)
    console.print(f"Model card updated: {card}")


def check_publish_inputs(cfg: SmolforgeConfig, token_file: str | None) -> None:
    """With publish.repo_id set, a missing token or a bad endpoint fails before training, not after it."""
    if cfg.publish.demo_space and not cfg.publish.repo_id:
        raise SmolforgeError("publish.demo_space needs publish.repo_id: the Space loads the model from the Hub, so "
                             "set --repo-id user/name too (or drop publish.demo_space and run `smolforge demo` "
                             "later).")
    if not cfg.publish.repo_id:
        return
    from smolforge.credentials import find_token
    from smolforge.hubclient import resolve_endpoint

    resolve_endpoint(None, cfg.publish.endpoint)
    token, _ = find_token(token_file)
    if not token:
        raise SmolforgeError(f"publish.repo_id is {cfg.publish.repo_id!r}, but no Hugging Face token was found to "
                             "publish with. Set HF_TOKEN, run `hf auth login`, or pass --token-file FILE; or drop "
                             "publish.repo_id and publish later with `smolforge publish RUN_DIR --repo-id ...`.")


def publish_after_run(cfg: SmolforgeConfig, run: RunFolder, console, username: str | None,
                      token_file: str | None) -> None:
    """Publish at the end of `smolforge run`. An unreachable Hub does not fail the run: it says how to publish later."""
    from smolforge.hubclient import HubUnreachable, resolve_endpoint
    from smolforge.publish import PublishRequest, publish

    req = PublishRequest(repo_id=str(cfg.publish.repo_id), private=cfg.publish.private,
                         endpoint=resolve_endpoint(None, cfg.publish.endpoint),
                         quantized_as=cfg.publish.quantized_as, token_file=token_file)
    try:
        publish(run, cfg, req, console, username=username)
    except HubUnreachable as e:
        console.print(f"Not published: {e}", markup=False, highlight=False, soft_wrap=True)
    except SmolforgeError as e:
        e.args = (f"Training finished and {run.root} is complete, but publishing failed. {e}",)
        raise
