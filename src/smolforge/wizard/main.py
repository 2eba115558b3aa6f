"""What `smolforge init` writes: the interactive wizard, or `--yes` defaults, and the rules around both.

Outside a terminal nothing is asked: without --yes the command fails with a message naming the
flags; with --yes it writes the preset's defaults plus the flags. Either way the only output is
the YAML file, validated by the schema `smolforge run` uses.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from smolforge import processenv
from smolforge.console import interactive
from smolforge.credentials import cached_username, find_token
from smolforge.errors import SmolforgeError
from smolforge.hubclient import endpoint_from_env, reachable
from smolforge.modelio import model_problem
from smolforge.wizard import prompts
from smolforge.wizard.draft import DEFAULT_MODEL, Draft, Outcome, preset_for_model
from smolforge.wizard.flow import default_model, run_wizard
from smolforge.wizard.hub import HubAccess
from smolforge.wizard.summary import table
from smolforge.wizard.yamlout import write_config

FLAG_SOURCE = "the smolforge init options"
FLAG_HINT = "Fix the flag (see `smolforge init --help`) or the --set value."


class Cancelled(SmolforgeError):
    """Ctrl-C, Ctrl-D or `Cancel` in the wizard: nothing was written."""

    exit_code = 130


def not_a_terminal_error() -> SmolforgeError:
    return SmolforgeError(
        "smolforge init asks questions, but this is not a terminal. Pass --yes to write the defaults without "
        "asking, with flags for the values you want, e.g. `smolforge init --yes --preset tiny --dataset data.jsonl "
        "--author-name 'Ada Lovelace' --model-description '...' --license apache-2.0 --output smolforge.yaml` "
        "(all flags: `smolforge init --help`).")


def _starting_preset(preset: str | None, flags: dict[str, Any], online: bool) -> str:
    model = flags.get("model.name_or_path") or (None if preset else default_model(online)[0])
    return preset or preset_for_model(model or DEFAULT_MODEL)


def auto_draft(preset: str | None, flags: dict[str, Any], sets: list[str], console) -> Draft:
    """`--yes`: the preset's values, the flags, and the same derived defaults the wizard offers."""
    online = not processenv.offline_by_env() and reachable(endpoint_from_env())
    if not preset and "model.name_or_path" not in flags and default_model(online)[1]:
        console.print(f"{default_model(online)[1]}; pass --preset or --base-model to choose another.", markup=False)
    draft = Draft.build(_starting_preset(preset, flags, online), flags, sets)
    draft.source, draft.hint = FLAG_SOURCE, FLAG_HINT
    token, source = find_token()
    draft.hub = HubAccess(token=token, source=source, username=cached_username(token) if token else None)
    draft.set("experiment_name", draft.default_experiment_name())
    lid = draft.default_license()
    if not lid:
        raise SmolforgeError(f"--license: the license of the base model {draft.get('model.name_or_path')!r} is not "
                             "known offline. Pass --license with a Hub license id (e.g. --license apache-2.0), or "
                             "--license other with --license-name and --license-link.")
    draft.set("card.license", lid)
    draft.set("card.model_description", draft.default_description())
    draft.set("card.author_name", draft.default_author())
    return draft


def init_config(output: Path, *, preset: str | None, flags: dict[str, Any], sets: list[str], yes: bool,
                force: bool, console) -> Outcome:
    """Write `output` from the wizard's answers (or the --yes defaults). The outcome says whether the user chose
    "write and start training now"; starting it is the caller's (`smolforge init`, or `run` that offered this)."""
    if not yes and not interactive():
        raise not_a_terminal_error()
    if flags.get("model.name_or_path"):
        problem = model_problem(str(flags["model.name_or_path"]))
        if problem:
            raise SmolforgeError(f"--base-model: {problem}. Give a local model folder, `tiny`, or a Hub model id "
                                 "like HuggingFaceTB/SmolLM3-3B.")
    if output.is_dir():
        raise SmolforgeError(f"--output: {output} is a folder. Give a file name, e.g. "
                             f"--output {output}/smolforge.yaml.")
    check = Draft.build(_starting_preset(preset, flags, True), flags, sets)
    check.source, check.hint = FLAG_SOURCE, FLAG_HINT
    check.config()  # every bad value now, before any question
    exists = output.exists() and not force
    if yes:
        if exists:
            raise SmolforgeError(f"--output: {output} already exists. Pass --force to replace it, or choose another "
                                 "file with --output PATH.")
        draft = auto_draft(preset, flags, sets, console)
        cfg = draft.config()
        console.print(table(cfg, draft, str(output)))
        write_config(output, cfg, draft.preset, draft.preset_data)
        console.print(f"Config written: {output}. Train it with: smolforge run {output}", markup=False)
        return Outcome(output, False)

    console.print("[bold]smolforge init[/]: a few questions, a summary, then one YAML file. Nothing is written "
                  "before you confirm; Ctrl-C stops at any point.")
    try:
        if exists and not prompts.confirm(f"{output} already exists. Replace it at the end?", default=False):
            raise SmolforgeError(f"Nothing was written: {output} was kept. Choose another file with --output PATH.")
        outcome = run_wizard(console, preset, flags, sets, output)
    except KeyboardInterrupt:
        raise Cancelled(f"Cancelled: nothing was written ({output} was not created or changed).") from None
    return outcome
