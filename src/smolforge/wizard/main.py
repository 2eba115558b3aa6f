"""`smolforge init` itself: the interactive wizard, or `--yes` defaults, and the rules around both.

Outside a terminal nothing is asked: without --yes the command fails with a message naming the
flags; with --yes it writes the preset's defaults plus the flags. Either way the only output is
the YAML file, validated by the schema `smolforge run` uses.
"""

from __future__ import annotations

from pathlib import Path

from smolforge.errors import SmolforgeError
from smolforge.wizard import checks
from smolforge.wizard.draft import DEFAULT_MODEL, Draft, InitFlags, preset_for_model
from smolforge.wizard.flow import Outcome

FLAG_SOURCE = "The smolforge init options"
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


def _check_flags(flags: InitFlags) -> None:
    for value, flag, parse in ((flags.dataset, "--dataset", checks.parse_dataset),
                               (flags.base_model, "--base-model", checks.parse_model)):
        if value is not None:
            try:
                parse(value)
            except ValueError as e:
                raise SmolforgeError(f"{flag}: {e}.") from None
    preset = flags.preset or preset_for_model(flags.base_model or DEFAULT_MODEL)
    Draft.build(preset, flags).config(FLAG_SOURCE)  # every bad flag value, all at once, before any question
    if flags.license:
        from smolforge.card.licenses import validate_license

        validate_license(flags.license, flags.license_name, flags.license_link, field="--license")


def auto_draft(flags: InitFlags) -> Draft:
    """`--yes`: the preset's values, the flags, and the same derived defaults the wizard offers."""
    from smolforge.card.licenses import validate_license
    from smolforge.credentials import cached_username, find_token
    from smolforge.wizard.hub import HubAccess

    draft = Draft.build(flags.preset or preset_for_model(flags.base_model or DEFAULT_MODEL), flags)
    token, source = find_token()
    draft.hub = HubAccess(token=token, source=source, username=cached_username(token) if token else None)
    draft.set("experiment_name", draft.default_experiment_name())
    lid = draft.default_license()
    if not lid:
        raise SmolforgeError(f"--license: the license of the base model {draft.get('model.name_or_path')!r} is not "
                             "known offline. Pass --license with a Hub license id (e.g. --license apache-2.0), or "
                             "--license other with --license-name and --license-link.")
    validate_license(lid, draft.get("card.license_name"), draft.get("card.license_link"), field="--license")
    draft.set("card.license", lid)
    draft.set("card.model_description", draft.default_description())
    draft.set("card.author_name", draft.default_author())
    return draft


def init(flags: InitFlags, output: Path, *, yes: bool, force: bool, terminal: bool, console) -> Outcome:
    """Write `output` from the wizard's answers (or the --yes defaults); nothing else is written."""
    from smolforge.wizard.summary import table
    from smolforge.wizard.yamlout import write_config

    if not yes and not terminal:
        raise not_a_terminal_error()
    if output.is_dir():
        raise SmolforgeError(f"--output: {output} is a folder. Give a file name, e.g. "
                             f"--output {output}/smolforge.yaml.")
    _check_flags(flags)
    exists = output.exists() and not force
    if yes:
        if exists:
            raise SmolforgeError(f"--output: {output} already exists. Pass --force to replace it, or choose another "
                                 "file with --output PATH.")
        draft = auto_draft(flags)
        cfg = draft.config(FLAG_SOURCE)
        console.print(table(cfg, draft.hub, None, str(output)))
        write_config(output, cfg, draft.preset, draft.preset_data)
        console.print(f"Config written: {output}. Train it with: smolforge run {output}", markup=False)
        return Outcome(output, False)

    from smolforge.wizard import prompts
    from smolforge.wizard.flow import run_wizard

    console.print("[bold]smolforge init[/]: a few questions, a summary, then one YAML file. Nothing is written "
                  "before you confirm; Ctrl-C stops at any point.")
    try:
        if exists and not prompts.confirm(f"{output} already exists. Replace it at the end?", default=False):
            raise SmolforgeError(f"Nothing was written: {output} was kept. Choose another file with --output PATH.")
        return run_wizard(console, flags, output)
    except KeyboardInterrupt:
        raise Cancelled(f"Cancelled: nothing was written ({output} was not created or changed).") from None
