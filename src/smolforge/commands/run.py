"""`smolforge run` at the terminal: which config, the questions a person may be asked (the wizard when
no config is given, an unknown license, the confirmation), and the lines printed at the end.

The pipeline itself (`pipeline.execute`) asks nothing; it receives the answers as callbacks.
"""

from __future__ import annotations

import os
import shlex
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from smolforge import presets
from smolforge.config.loading import deep_merge, load_config, nest, parse_sets, validate
from smolforge.config.training import LAUNCH_SETTINGS
from smolforge.console import interactive, print_rows
from smolforge.errors import SmolforgeError
from smolforge.identifiers import hub_licenses
from smolforge.paths import smolforge_executable
from smolforge.pipeline import RunOptions, check_published, execute
from smolforge.runfolder import OVERRIDABLE, RunFolder
from smolforge.wizard import prompts
from smolforge.wizard.main import init_config


@dataclass
class RunRequest:
    config: Path | None
    preset: str | None = None
    sets: list[str] = field(default_factory=list)
    flags: dict[str, Any] = field(default_factory=dict)  # setting path -> validated value
    yes: bool = False
    resume: bool = False
    token_file: str | None = None
    argv: list[str] = field(default_factory=list)


def _no_config_error() -> SmolforgeError:
    return SmolforgeError("smolforge run needs a config: give a YAML file (create one with `smolforge init`) or a "
                          "preset, e.g. `smolforge run --preset tiny --yes`. List presets with `smolforge presets`.")


def _offer_wizard(console) -> Path | None:
    """`smolforge run` with no config: in a terminal, offer `smolforge init`; the path it wrote, or None."""
    if not interactive():
        raise _no_config_error()
    try:
        start = prompts.confirm("No config given. Set one up now with the wizard (smolforge init)?", default=True)
    except KeyboardInterrupt:
        start = False
    if not start:
        raise _no_config_error()
    outcome = init_config(Path("smolforge.yaml"), preset=None, flags={}, sets=[], yes=False, force=False,
                          console=console)
    if not outcome.start_run:
        return None
    token_for_this_run(outcome.token)
    return outcome.path


def ask_license() -> str:
    """Ask for the card's license (validated against the Hub's list) when the base model's is unknown."""
    import questionary

    known = [x for x in hub_licenses() if x != "other"]  # a custom license needs --license-name/--license-link
    answer = questionary.autocomplete(
        "The base model's license is not known offline. License for the model card (Hub id):",
        choices=known, validate=lambda v: v in known or "Type a Hub license id, e.g. apache-2.0 or mit",
    ).ask()
    if answer is None:
        raise KeyboardInterrupt
    return answer


def _confirmer(console, yes: bool):
    def confirm(rows: list[tuple[str, str]]) -> bool:
        print_rows(console, rows, "smolforge run")
        if yes:
            return True
        if not interactive():
            raise SmolforgeError("smolforge run asks for confirmation, but this is not a terminal. "
                                 "Pass --yes to start without asking.")
        return prompts.confirm("Start training?", default=True)

    return confirm


def print_summary(console, run_folder) -> None:
    results = run_folder.read_results()
    lines = []
    if results.get("final_train_loss", results.get("train_loss")) is not None:
        lines.append(f"train loss {results.get('final_train_loss', results['train_loss']):.4f}")
    if results.get("eval_loss") is not None:
        lines.append(f"eval loss {results['eval_loss']:.4f}")
    if results.get("perplexity") is not None:
        lines.append(f"perplexity {results['perplexity']:.2f}")
    if results.get("global_steps"):
        lines.append(f"{results['global_steps']} steps in {results.get('train_runtime_s', 0):.1f} s")
    if results.get("tokens_per_second"):
        lines.append(f"{results['tokens_per_second']:,.0f} supervised tokens/s")
    held = ((results.get("grpo") or {}).get("held_out")) or {}
    if held.get("after"):
        before = (held.get("before") or {}).get("total", {}).get("mean")
        after = held["after"]["total"]["mean"]
        lines.append(f"held-out reward {before:.3f} -> {after:.3f}" if before is not None
                     else f"held-out reward {after:.3f}")
    console.print("Done: " + ", ".join(lines), markup=False)
    console.print(f"Run folder: {run_folder.root}", markup=False)


# Given with --resume, these say how this node joins the run (LAUNCH_SETTINGS), or restate its topology (checked
# against the run's when it resumes), rather than change what it trains.
RESUME_LAUNCH_KEYS = (*LAUNCH_SETTINGS, "training.nnodes", "training.nproc")


def _resume_config(req: RunRequest):
    """`smolforge run RUN_DIR --resume`: the run's own config, joined as this node's flags say. Only card:/publish:
    choices may change on resume (they are recorded as the run's overrides); anything else would continue a
    different run."""
    run = RunFolder.existing(req.config)
    sets = parse_sets(req.sets) if req.sets else {}
    given = [*req.flags, *(item.partition("=")[0].strip() for item in req.sets)]
    refused = sorted({p for p in given if p.split(".")[0] not in OVERRIDABLE and p not in RESUME_LAUNCH_KEYS})
    if refused or req.preset:
        what = ", ".join(refused + (["--preset"] if req.preset else []))
        raise SmolforgeError(f"--resume continues {run.root} exactly as it was configured, so {what} cannot change "
                             "now (only card and publish settings can, and how this node joins: --node-rank, "
                             "--rdzv-endpoint). Drop those options, or start a new run with them (a new "
                             "--experiment-name).")
    launch = nest({k: v for k, v in req.flags.items() if k in RESUME_LAUNCH_KEYS})
    launch = deep_merge(launch, {"training": {k: v for k, v in (sets.get("training") or {}).items()
                                              if f"training.{k}" in RESUME_LAUNCH_KEYS}})
    sets = {k: v for k, v in sets.items() if k != "training"}
    wanted = deep_merge({k: v for k, v in nest(req.flags).items() if k in OVERRIDABLE}, sets)
    if wanted:
        validate(deep_merge(run.read_config_data(), wanted), "the --resume options")  # refuse before writing
    cfg = validate(deep_merge(run.read_config_data(), launch), "the --resume options")
    return run, wanted, cfg


def _train_base_first(req: RunRequest, preset: str | None, model_path: str, console) -> None:
    """A preset that starts from another preset's model (`presets.base_run`; `preset` as given or named in the
    config file): when the config still names that model folder and it is not there yet, train the base preset
    into it first, as its own `smolforge run`."""
    base = presets.base_run(preset)
    if base is None or model_path != base[1] or Path(base[1]).exists():
        return
    name, model = base
    argv = ["run", "--preset", name, "--experiment-name", name,
            *(["--yes"] if req.yes else [])]
    shown = "smolforge " + " ".join(shlex.quote(a) for a in argv)
    console.print(f"The {preset} preset starts from the model of the {name} preset, {model}, which is not here "
                  f"yet: training it first with `{shown}`.", markup=False)
    code = subprocess.run([smolforge_executable(), *argv], check=False).returncode
    if code != 0:
        raise SmolforgeError(f"Training the base model with `{shown}` failed (exit code {code}); its output is above. "
                             f"Fix that run and start this one again, or start from another model: --set "
                             "model.name_or_path=<a run folder>/model.")
    console.print(f"Base model ready: {model}. Now the {preset} run.", markup=False)


def run_command(req: RunRequest, console) -> None:
    if req.config is None and req.preset is None and not req.resume:
        path = _offer_wizard(console)  # in a terminal: set one up now; else the error naming the options
        if path is None:
            return
        req.config, req.yes = path, True  # confirmed in the wizard's summary
        req.argv = ["run", str(path), "--yes"]
    if req.config is not None and req.config.is_dir() and not req.resume:
        raise SmolforgeError(f"{req.config} is a folder. To continue that run use `smolforge run {req.config} "
                             "--resume`; to start a new one give a YAML config file or --preset.")
    overrides: dict[str, Any] = {}
    if req.config is not None and req.config.is_dir():
        run, overrides, cfg = _resume_config(req)
        cfg = cfg.model_copy(update={"output_dir": str(req.config)})
    else:
        cfg = load_config(req.config, req.preset, req.sets, req.flags)
        _train_base_first(req, cfg.preset, cfg.model.name_or_path, console)
    ask = None if req.yes or not interactive() else ask_license
    opts = RunOptions(yes=req.yes, resume=req.resume, argv=req.argv, ask_license=ask, token_file=req.token_file,
                      overrides=overrides)
    run_folder = execute(cfg, opts, console, _confirmer(console, req.yes))
    if cfg.training.node_rank > 0:
        console.print(f"Node {cfg.training.node_rank} of {cfg.training.nnodes} is done; node 0 writes the results, "
                      f"the card and publishes: see {run_folder.root}.", markup=False)
        return
    print_summary(console, run_folder)
    check_published(run_folder)


def token_for_this_run(token: str | None) -> None:
    """A token typed in the wizard for a run started at once: this process's environment only, never argv."""
    if token:
        os.environ["HF_TOKEN"] = token
