"""The `smolforge` command line.

Start-up must stay cheap: this module imports only typer and the standard library at the top;
every command imports what it needs inside its body, so `smolforge --help` never loads torch,
transformers or trl. `main()` is the one place that turns errors into messages and exit codes:
SmolforgeError -> its paragraph on stderr and exit 2 (1 for a failed push), no traceback.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated, Literal

import typer

app = typer.Typer(
    name="smolforge",
    help="Fine-tune a small language model from a config to a published, documented model: "
         "train (SFT/DPO, full or LoRA) -> track -> evaluate -> quantize -> model card -> publish.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)

SetOpt = Annotated[list[str], typer.Option("--set", help="Override any config value: section.key=value "
                                                         "(repeatable), e.g. --set training.learning_rate=1e-4.")]
YesOpt = Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation (required outside a "
                                                          "terminal).")]


def _console():
    from rich.console import Console

    return Console(highlight=False)


def _err(message: str) -> None:
    from rich.console import Console

    Console(stderr=True, highlight=False, soft_wrap=True).print(f"[bold red]error:[/] {message}", markup=True,
                                                                emoji=False)


def interactive() -> bool:
    return sys.stdin.isatty() and sys.stdout.isatty()


def _flag_sets(**flags) -> list[str]:
    """Old-tool flags (`--author-name` ...) are shorthands for --set; strings are quoted as YAML."""
    import json

    mapping = {"author_name": "card.author_name", "model_description": "card.model_description",
               "license": "card.license", "experiment_name": "experiment_name", "dataset_repo":
               "tracking.dataset_repo", "repo_id": "publish.repo_id", "output_dir": "output_dir",
               "nproc": "training.nproc"}
    out = []
    for name, value in flags.items():
        if value is None:
            continue
        if name == "private":
            out.append(f"publish.private={'true' if value else 'false'}")
        elif name == "trackio_url":
            space = value.rstrip("/").split("/spaces/")[-1] if "/spaces/" in value else value
            out.append(f"tracking.space_id={json.dumps(space)}")
        elif name == "tags":
            if value:
                out.append(f"card.tags={json.dumps(list(value))}")
        else:
            out.append(f"{mapping[name]}={json.dumps(value if not isinstance(value, Path) else str(value))}")
    return out


@app.command()
def run(
    config: Annotated[Path | None, typer.Argument(help="smolforge.yaml, or a run folder with --resume.")] = None,
    preset: Annotated[str | None, typer.Option(help="Start from a preset (see `smolforge presets`).")] = None,
    set_: SetOpt = None,
    yes: YesOpt = False,
    output_dir: Annotated[Path | None, typer.Option(help="Run folder (default runs/<experiment_name>).")] = None,
    experiment_name: Annotated[str | None, typer.Option(help="Default <model>-<method>-<timestamp>.")] = None,
    resume: Annotated[bool, typer.Option(help="Continue the run of CONFIG (or the run folder) from its last "
                                              "checkpoint.")] = False,
    nproc: Annotated[int | None, typer.Option(help="Training processes (torchrun/accelerate).")] = None,
    author_name: Annotated[str | None, typer.Option(help="Author for the model card.")] = None,
    model_description: Annotated[str | None, typer.Option(help="Description for the model card.")] = None,
    license: Annotated[str | None, typer.Option(help="Hub license id for the card.")] = None,
    trackio_url: Annotated[str | None, typer.Option(help="A trackio Space (URL or user/name) to log to.")] = None,
    dataset_repo: Annotated[str | None, typer.Option(help="Hub dataset that persists a trackio Space.")] = None,
    repo_id: Annotated[str | None, typer.Option(help="Publish to this Hub repo at the end.")] = None,
    private: Annotated[bool | None, typer.Option("--private/--public", help="Visibility of a published "
                                                                             "repo (default private).")] = None,
    token_file: Annotated[Path | None, typer.Option(help="File holding an HF token (else HF_TOKEN or the "
                                                         "login cache).")] = None,
) -> None:
    """Run the whole pipeline: train -> evaluate (-> quantize) -> card (-> publish)."""
    from smolforge.configfile import load_config
    from smolforge.pipeline import RunOptions

    console = _console()
    argv = sys.argv[1:]
    if config is None and preset is None and not resume:
        config = _offer_wizard(console)  # in a terminal: set one up now; else the error naming the options
        if config is None:
            return
        yes, argv = True, ["run", str(config), *argv[1:], "--yes"]  # confirmed in the wizard's summary
    is_run_dir = config is not None and config.is_dir()
    if is_run_dir and not resume:
        from smolforge.errors import SmolforgeError

        raise SmolforgeError(f"{config} is a folder. To continue that run use `smolforge run {config} --resume`; "
                             "to start a new one give a YAML config file or --preset.")
    sets = [*(set_ or []), *_flag_sets(author_name=author_name, model_description=model_description,
                                       license=license, experiment_name=experiment_name, output_dir=output_dir,
                                       nproc=nproc, trackio_url=trackio_url, dataset_repo=dataset_repo,
                                       repo_id=repo_id, private=private)]
    if is_run_dir:
        from smolforge.runfolder import RunFolder

        cfg = RunFolder(config).require().read_config()
        cfg = cfg.model_copy(update={"output_dir": str(config)})
    else:
        cfg = load_config(config, preset, sets)
    ask = None if yes or not interactive() else _ask_license
    _execute(console, cfg, RunOptions(yes=yes, resume=resume, argv=argv, ask_license=ask,
                                      token_file=str(token_file) if token_file else None))


def _ask_license() -> str:
    """Ask for the card's license (validated against the Hub's list) when the base model's is unknown."""
    import questionary

    from smolforge.card.licenses import hub_licenses

    known = [x for x in hub_licenses() if x != "other"]  # a custom license needs --set card.license_name/link
    answer = questionary.autocomplete(
        "The base model's license is not known offline. License for the model card (Hub id):",
        choices=known, validate=lambda v: v in known or "Type a Hub license id, e.g. apache-2.0 or mit",
    ).ask()
    if answer is None:
        raise KeyboardInterrupt
    return answer


def _execute(console, cfg, opts) -> None:
    """Show the run summary, confirm (unless --yes), train, and print the results."""
    from smolforge.pipeline import execute

    yes = opts.yes

    def confirm(rows) -> bool:
        from rich.table import Table

        table = Table(title="smolforge run", show_header=False)
        for key, value in rows:
            table.add_row(key, value)
        console.print(table)
        if yes:
            return True
        if not interactive():
            from smolforge.errors import SmolforgeError

            raise SmolforgeError("smolforge run asks for confirmation, but this is not a terminal. "
                                 "Pass --yes to start without asking.")
        return typer.confirm("Start training?", default=True)

    run_folder = execute(cfg, opts, console, confirm)
    _print_run_summary(console, run_folder)


def _offer_wizard(console) -> Path | None:
    """`smolforge run` with no config: in a terminal, offer `smolforge init`; the path it wrote, or None."""
    if not interactive():
        raise _no_config_error()
    from smolforge.wizard import prompts

    try:
        start = prompts.confirm("No config given. Set one up now with the wizard (smolforge init)?", default=True)
    except KeyboardInterrupt:
        start = False
    if not start:
        raise _no_config_error()
    outcome = _init_wizard(console, Path("smolforge.yaml"))
    if not outcome.start_run:
        return None
    if outcome.token:
        os.environ["HF_TOKEN"] = outcome.token  # for this process's run only: env, never argv
    return outcome.path


def _init_wizard(console, output: Path, flags=None, yes: bool = False, force: bool = False):
    from smolforge.wizard.draft import InitFlags
    from smolforge.wizard.main import init as run_init

    return run_init(flags or InitFlags(), output, yes=yes, force=force, terminal=interactive(), console=console)


def _no_config_error():
    from smolforge.errors import SmolforgeError

    return SmolforgeError("smolforge run needs a config: give a YAML file (create one with `smolforge init`) or a "
                          "preset, e.g. `smolforge run --preset tiny --yes`. List presets with `smolforge presets`.")


def _print_run_summary(console, run_folder) -> None:
    results = run_folder.read_results()
    lines = []
    if results.get("train_loss") is not None:
        lines.append(f"train loss {results.get('final_train_loss', results['train_loss']):.4f}")
    if results.get("eval_loss") is not None:
        lines.append(f"eval loss {results['eval_loss']:.4f}")
    if results.get("perplexity") is not None:
        lines.append(f"perplexity {results['perplexity']:.2f}")
    if results.get("global_steps"):
        lines.append(f"{results['global_steps']} steps in {results.get('train_runtime_s', 0):.1f} s")
    if results.get("tokens_per_second"):
        lines.append(f"{results['tokens_per_second']:,.0f} supervised tokens/s")
    console.print("Done: " + ", ".join(lines))
    console.print(f"Run folder: {run_folder.root}")


@app.command()
def presets() -> None:
    """List the presets with their key values (read from the same config that trains)."""
    from rich.table import Table

    from smolforge import presets as preset_mod
    from smolforge.configfile import load_config

    table = Table(title="smolforge presets")
    for col in ("preset", "model", "method", "data", "batch x accum", "lr", "max length", "precision"):
        table.add_column(col)
    for name in preset_mod.names():
        c = load_config(preset=name)
        t = c.training
        data = c.data.name + (f" [{c.data.config}]" if c.data.config else "") + \
            (f" ({c.data.max_samples:,} samples)" if c.data.max_samples else "")
        method = f"{t.method.upper()} {t.finetune}" + (f" r={t.lora.r}" if t.finetune == "lora" else "")
        precision = "auto (bf16 GPU / fp32 CPU)" if t.precision == "auto" else t.precision
        table.add_row(name, c.model.name_or_path, method, data, f"{t.batch_size} x {t.gradient_accumulation_steps}",
                      f"{t.learning_rate:g}", str(t.max_length), precision)
    console = _console()
    console.print(table)
    for name in preset_mod.names():
        console.print(f"  {name}: {preset_mod.description(name)}")


@app.command()
def doctor(
    endpoint: Annotated[str | None, typer.Option(help="Hub endpoint to check (default HF_ENDPOINT or "
                                                      "huggingface.co).")] = None,
) -> None:
    """Versions, hardware, whether an HF token is present, and whether the Hub is reachable."""
    import urllib.request

    from rich.table import Table

    from smolforge import hardware
    from smolforge.credentials import find_token

    console = _console()
    table = Table(title="smolforge doctor", show_header=False)
    for name, version in hardware.versions().items():
        table.add_row(name, version)
    info = hardware.detect(with_gpu=True)
    table.add_row("hardware", info["summary"])
    token, source = find_token()
    table.add_row("HF token", f"found ({source})" if token else "not found (set HF_TOKEN or `hf auth login`)")
    url = (endpoint or os.environ.get("HF_ENDPOINT") or "https://huggingface.co").rstrip("/")
    try:
        with urllib.request.urlopen(urllib.request.Request(url + "/api/whoami-v2", method="GET"), timeout=4):
            reachable = "yes"
    except urllib.error.HTTPError:
        reachable = "yes"  # it answered (401 without a token is fine)
    except OSError as e:
        reachable = f"no ({getattr(e, 'reason', e)})"
    table.add_row("Hub", f"{url}: reachable {reachable}")
    console.print(table)


@app.command()
def init(
    output: Annotated[Path, typer.Option("--output", "-o", help="The YAML file to write.")] = Path("smolforge.yaml"),
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Ask nothing: write the preset's defaults plus the flags "
                                                          "given (required outside a terminal).")] = False,
    force: Annotated[bool, typer.Option("--force", help="Replace OUTPUT if it exists.")] = False,
    preset: Annotated[str | None, typer.Option(help="Preset to start from (see `smolforge presets`).")] = None,
    base_model: Annotated[str | None, typer.Option(help="Hub model id, a local folder, or `tiny`.")] = None,
    method: Annotated[Literal["sft", "dpo"] | None, typer.Option(help="Training method.")] = None,
    finetune: Annotated[Literal["full", "lora"] | None, typer.Option(help="Full fine-tune or LoRA.")] = None,
    dataset: Annotated[str | None, typer.Option(help="Hub dataset id, local file/folder, or `builtin`.")] = None,
    dataset_config: Annotated[str | None, typer.Option(help="Hub dataset config (subset).")] = None,
    max_samples: Annotated[int | None, typer.Option(help="Train on at most this many samples.")] = None,
    epochs: Annotated[float | None, typer.Option(help="Passes over the data.")] = None,
    max_steps: Annotated[int | None, typer.Option(help="Optimizer steps (instead of epochs).")] = None,
    batch_size: Annotated[int | None, typer.Option(help="Sequences per device per step.")] = None,
    gradient_accumulation_steps: Annotated[int | None, typer.Option(help="Steps accumulated per update.")] = None,
    learning_rate: Annotated[float | None, typer.Option(help="Peak learning rate.")] = None,
    max_length: Annotated[int | None, typer.Option(help="Max tokens per sequence.")] = None,
    experiment_name: Annotated[str | None, typer.Option(help="Default <model>-<method>-<timestamp>.")] = None,
    repo_id: Annotated[str | None, typer.Option(help="Hub repo to publish to (user/name).")] = None,
    private: Annotated[bool | None, typer.Option("--private/--public", help="Visibility of the published repo "
                                                                             "(default private).")] = None,
    tracking: Annotated[Literal["trackio", "space", "none"] | None, typer.Option(
        help="Monitoring: local trackio (default), a private trackio Space, or none.")] = None,
    trackio_space: Annotated[str | None, typer.Option(help="The trackio Space id (user/name).")] = None,
    author_name: Annotated[str | None, typer.Option(help="Author for the card (default: your HF username).")] = None,
    model_description: Annotated[str | None, typer.Option(help="Card description (default: a sentence from "
                                                                "model, method and dataset), or @FILE.")] = None,
    license: Annotated[str | None, typer.Option(help="Hub license id (default: the base model's).")] = None,
    license_name: Annotated[str | None, typer.Option(help="Name of a custom license (with --license other).")] = None,
    license_link: Annotated[str | None, typer.Option(help="URL or LICENSE file of a custom license.")] = None,
    tag: Annotated[list[str] | None, typer.Option("--tag", help="A card tag (repeatable).")] = None,
    usage_example: Annotated[list[str] | None, typer.Option("--usage-example", help="Usage text or @FILE "
                                                                                   "(repeatable).")] = None,
    limitations: Annotated[str | None, typer.Option(help="Limitations text or @FILE.")] = None,
    quantize: Annotated[list[str] | None, typer.Option(help="Quantized variant to produce: int8 or int4 "
                                                             "(repeatable).")] = None,
    demo_space: Annotated[str | None, typer.Option(help="Publish a demo app to this Space (user/name).")] = None,
    set_: SetOpt = None,
) -> None:
    """Set up a run: asks step by step, shows a summary, and writes one YAML file (`smolforge run FILE`)."""
    from smolforge.wizard.draft import InitFlags

    flags = InitFlags(
        preset=preset, base_model=base_model, method=method, finetune=finetune, dataset=dataset,
        dataset_config=dataset_config, max_samples=max_samples, epochs=epochs, max_steps=max_steps,
        batch_size=batch_size, gradient_accumulation_steps=gradient_accumulation_steps, learning_rate=learning_rate,
        max_length=max_length, experiment_name=experiment_name, repo_id=repo_id, private=private, tracking=tracking,
        trackio_space=trackio_space, author_name=author_name,
        model_description=_text_or_file(model_description, "--model-description"), license=license,
        license_name=license_name, license_link=license_link, tags=list(tag) if tag else None,
        usage_examples=list(usage_example) if usage_example else None, limitations=limitations,
        quantize=list(quantize) if quantize else None, demo_space=demo_space, sets=list(set_ or []))
    console = _console()
    outcome = _init_wizard(console, output, flags, yes=yes, force=force)
    if outcome.start_run:
        from smolforge.configfile import load_config
        from smolforge.pipeline import RunOptions

        if outcome.token:
            os.environ["HF_TOKEN"] = outcome.token  # for this process's run only: env, never argv
        _execute(console, load_config(outcome.path), RunOptions(yes=True, argv=["run", str(outcome.path), "--yes"]))


def _text_or_file(value: str | None, flag: str) -> str | None:
    """`@path` reads the text from a file; `@@text` is the literal `@text`."""
    if value is None or not value.startswith("@"):
        return value
    if value.startswith("@@"):
        return value[1:]
    from smolforge.errors import SmolforgeError

    path = Path(value[1:]).expanduser()
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise SmolforgeError(f"{flag}: cannot read {path} ({getattr(e, 'strerror', None) or e}). Use @FILE for "
                             "a UTF-8 text file, or pass the text itself.") from None


@app.command()
def card(
    run_dir: Annotated[Path, typer.Argument(help="The run folder (runs/<experiment_name>).")],
    author_name: Annotated[str | None, typer.Option(help="Author (default: your HF username when known).")] = None,
    model_description: Annotated[str | None, typer.Option(help="One or two sentences about the model.")] = None,
    model_name: Annotated[str | None, typer.Option(help="Display name (default: repo or experiment name).")] = None,
    license: Annotated[str | None, typer.Option(help="Hub license id (default: the base model's).")] = None,
    license_name: Annotated[str | None, typer.Option(help="Name of a custom license (with --license other).")] = None,
    license_link: Annotated[str | None, typer.Option(help="URL or file of a custom license.")] = None,
    tag: Annotated[list[str] | None, typer.Option("--tag", help="A tag (repeatable).")] = None,
    usage_example: Annotated[list[str] | None, typer.Option("--usage-example", help="Usage text or @file "
                                                                                   "(repeatable).")] = None,
    limitations: Annotated[str | None, typer.Option(help="Limitations text or @file.")] = None,
    citation: Annotated[str | None, typer.Option(help="Citation text (e.g. BibTeX) or @file.")] = None,
    repo_id: Annotated[str | None, typer.Option(help="Hub repo id shown in the card.")] = None,
    template: Annotated[Path | None, typer.Option(help="A Jinja2 or old-style ({{#if}}) template.")] = None,
    output: Annotated[Path | None, typer.Option(help="Write here instead of RUN_DIR/model/README.md.")] = None,
    force: Annotated[bool, typer.Option(help="Overwrite a card that was edited by hand.")] = False,
) -> None:
    """Write (or rewrite) the model card of an existing run, offline."""
    from smolforge.card.context import CardInputs
    from smolforge.card.writer import write_card
    from smolforge.configfile import validate
    from smolforge.credentials import cached_username
    from smolforge.runfolder import RunFolder

    run = RunFolder(run_dir).require()
    data = run.read_config_data()
    flags = {"author_name": author_name, "model_description": model_description, "model_name": model_name,
             "license": license, "license_name": license_name, "license_link": license_link,
             "tags": list(tag) if tag else None,
             "usage_examples": [_text_or_file(u, "--usage-example") for u in usage_example] if usage_example
             else None,
             "limitations": _text_or_file(limitations, "--limitations"),
             "citation": _text_or_file(citation, "--citation"),
             "template": str(template) if template else None}
    given = {k: v for k, v in flags.items() if v is not None}
    card_section = {**(data.get("card") or {}), **given}
    if repo_id:
        data.setdefault("publish", {})["repo_id"] = repo_id
    cfg = validate({**data, "card": card_section}, "the card options")
    inputs = CardInputs.from_section(cfg.card, cfg.publish.repo_id)
    path = write_card(run, cfg, inputs, username=cached_username(), output=output, force=force)
    if output is None and (given or repo_id):  # remember what the user typed for later card/publish runs
        from smolforge.config import dump_dict

        run.write_config(dump_dict(cfg))
    _console().print(f"Model card written: {path}")


@app.command()
def dashboard(
    run_dir: Annotated[Path, typer.Argument(help="The run folder (runs/<experiment_name>).")],
    port: Annotated[int | None, typer.Option(help="Port on 127.0.0.1 (default: trackio's, 7860).")] = None,
    browser: Annotated[bool, typer.Option("--browser/--no-browser", help="Open a browser tab.")] = True,
) -> None:
    """Open the trackio dashboard of a run (local metrics, or its Space)."""
    from smolforge.runfolder import RunFolder
    from smolforge.tracking import show_dashboard

    show_dashboard(RunFolder(run_dir).require(), port, browser, _console())


@app.command()
def demo(
    run_dir: Annotated[Path, typer.Argument(help="The run folder (runs/<experiment_name>).")],
    output: Annotated[Path | None, typer.Option(help="Folder for the app (default: <run folder>-demo beside "
                                                     "the run).")] = None,
    model_id: Annotated[str | None, typer.Option(help="Hub repo the app loads (default: the repo the run was "
                                                      "published to).")] = None,
    title: Annotated[str | None, typer.Option(help="Page title (default: the card's model name).")] = None,
    description: Annotated[str | None, typer.Option(help="Text under the title, or @file.")] = None,
    system_prompt: Annotated[str | None, typer.Option(help="Default system prompt, or @file (default: "
                                                           "data.system_prompt).")] = None,
    thinking: Annotated[bool | None, typer.Option("--thinking/--no-thinking", help="Default of the think "
                                                  "switch, for templates with enable_thinking (SmolLM3).")] = None,
    example: Annotated[list[str] | None, typer.Option("--example", help="An example prompt (repeatable).")] = None,
    temperature: Annotated[float | None, typer.Option(help="Default temperature, 0 = greedy (0.6).")] = None,
    top_p: Annotated[float | None, typer.Option(help="Default top-p (0.95).")] = None,
    max_new_tokens: Annotated[int | None, typer.Option(help="Default reply length limit (512).")] = None,
    seed: Annotated[int | None, typer.Option(help="Default sampling seed, -1 = random.")] = None,
    serve: Annotated[bool, typer.Option("--serve", help="Run the app on 127.0.0.1 with the run's local model "
                                                        "(Ctrl-C stops it).")] = False,
    port: Annotated[int, typer.Option(help="Port for --serve.")] = 7860,
    space: Annotated[str | None, typer.Option(help="Publish the app as this Hub Space (user/name).")] = None,
    private: Annotated[bool, typer.Option("--private/--public", help="Visibility of the Space.")] = True,
    token_file: Annotated[Path | None, typer.Option(help="File holding an HF token for --space (else HF_TOKEN "
                                                         "or the login cache).")] = None,
) -> None:
    """Generate a Gradio chat app for a run's model; --serve runs it locally, --space publishes it."""
    from smolforge import demo as demo_mod
    from smolforge.runfolder import RunFolder

    run = RunFolder(run_dir).require()
    cfg = run.read_config()
    model_dir = demo_mod.require_model(run)
    demo_mod.check_repo_id(space, "--space")
    model = demo_mod.check_repo_id(model_id, "--model-id") or demo_mod.published_model_id(run, cfg)
    token = None
    if space:
        from smolforge.credentials import find_token
        from smolforge.errors import SmolforgeError

        if not model:
            raise SmolforgeError(f"--space needs the Hub repo the Space loads the model from, and {run_dir} has "
                                 f"none: publish the model first (`smolforge publish {run_dir} --repo-id "
                                 "user/name`) or pass --model-id user/name.")
        token, _ = find_token(token_file)
        if not token:
            raise SmolforgeError("--space needs a Hugging Face token with write access: set HF_TOKEN, run "
                                 "`hf auth login`, or pass --token-file FILE.")
    if serve:
        demo_mod.check_port(port)
    settings = demo_mod.settings_for(
        run, cfg, model_id=model, title=title, description=_text_or_file(description, "--description"),
        system_prompt=_text_or_file(system_prompt, "--system-prompt"), thinking=thinking,
        examples=list(example) if example else None, temperature=temperature, top_p=top_p,
        max_new_tokens=max_new_tokens, seed=seed)
    folder = demo_mod.write_app(settings, output or demo_mod.default_output(run.root))
    console = _console()
    console.print(f"Demo app written: {folder}")
    if space:
        info = demo_mod.publish_space(folder, space, private=private, token=token, endpoint=cfg.publish.endpoint)
        run.update_results(demo=info)
        console.print(f"Space published ({'private' if private else 'public'}): {info['url']}")
        if not (run.read_results().get("publish") or {}).get("repo_id") and not model_id:
            console.print(f"Note: the run has not been published yet; the Space loads {model} once it is pushed "
                          f"(`smolforge publish {run_dir}`).")
        console.print(f"The Space loads {model}; if that repo is private, add an HF_TOKEN secret (read access) "
                      "in the Space's settings.")
    if serve:
        console.print(f"Serving on http://127.0.0.1:{port} (Ctrl-C stops it) with the local model {model_dir}")
        demo_mod.serve(folder, model_dir, port)


@app.command()
def quantize(
    run_dir: Annotated[Path, typer.Argument(help="The run folder (runs/<experiment_name>).")],
    method: Annotated[list[str] | None, typer.Option("--method", help="int8 (CPU or GPU) or int4 (CUDA only); "
                                                     "repeatable. Default: the config's `quantize` list, else "
                                                     "int8.")] = None,
) -> None:
    """Make quantized variants (torchao) of a finished run, measure them, and update the card."""
    from smolforge.pipeline import set_quiet_env
    from smolforge.runfolder import RunFolder

    run = RunFolder(run_dir).require()
    cfg = run.read_config()
    methods = list(method or cfg.quantize or ["int8"])
    from smolforge.quantize import plan

    for m in methods:
        plan(m, "cpu")  # unknown names fail here, before anything is loaded
    set_quiet_env(cfg)
    from smolforge import logs
    from smolforge.credentials import cached_username
    from smolforge.pipeline import refresh_card
    from smolforge.quantize import quantize_run

    console = _console()
    handler = logs.attach_file(run.logs_dir, "quantize.log")
    try:
        quantize_run(run, cfg, methods, console)
        refresh_card(run, cfg, console, cached_username())
    finally:
        logs.detach(handler)


@app.command()
def publish(
    run_dir: Annotated[Path, typer.Argument(help="The run folder (runs/<experiment_name>).")],
    repo_id: Annotated[str | None, typer.Option(help="Hub repo user/name (default: publish.repo_id).")] = None,
    private: Annotated[bool | None, typer.Option("--private/--public", help="Visibility of a new repo (default: "
                                                                           "publish.private, which is private).")]
    = None,
    endpoint: Annotated[str | None, typer.Option(help="Hub URL (default: publish.endpoint, HF_ENDPOINT, "
                                                      "https://huggingface.co).")] = None,
    token_file: Annotated[Path | None, typer.Option(help="File holding an HF token (else HF_TOKEN or the "
                                                         "login cache).")] = None,
    quantized_as: Annotated[str | None, typer.Option(help="subfolders (int8/ in the repo) or repos "
                                                          "(<repo>-int8). Default: publish.quantized_as.")] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace a README.md that was edited on the Hub.")] = False,
    merge_metadata: Annotated[bool, typer.Option("--merge-metadata", help="Keep a README.md edited on the Hub; "
                                                 "merge this run's metadata into it.")] = False,
    retries: Annotated[int, typer.Option(min=0, help="Retries (with backoff) of a failed Hub call.")] = 4,
    export: Annotated[Path | None, typer.Option(help="Write the folder that would be pushed here instead "
                                                     "(offline; no token needed).")] = None,
    token: Annotated[str | None, typer.Option(hidden=True)] = None,
) -> None:
    """Push a run to the Hugging Face Hub in one commit (or --export the same folder offline)."""
    from smolforge.errors import SmolforgeError

    if token is not None:
        raise SmolforgeError("--token: tokens are not accepted on the command line (every process on the machine "
                             "can read it). Set HF_TOKEN, run `hf auth login`, or pass --token-file FILE.")
    if force and merge_metadata:
        raise SmolforgeError("--force and --merge-metadata exclude each other: --force replaces the card on the "
                             "Hub, --merge-metadata keeps it and merges metadata. Choose one.")
    if quantized_as is not None and quantized_as not in ("subfolders", "repos"):
        raise SmolforgeError(f"--quantized-as: {quantized_as!r} is not allowed. Use subfolders or repos.")
    from smolforge.pipeline import set_quiet_env
    from smolforge.runfolder import RunFolder

    run = RunFolder(run_dir).require()
    cfg = run.read_config()
    set_quiet_env()
    from smolforge.credentials import cached_username

    console = _console()
    layout = quantized_as or cfg.publish.quantized_as
    if export is not None:
        from smolforge.publish import check_repo_id
        from smolforge.publish import export as export_folder

        rid = repo_id or cfg.publish.repo_id
        if rid:
            check_repo_id(rid)
        export_folder(run, cfg, export, rid, layout, username=cached_username(), console=console)
        return
    from smolforge import logs
    from smolforge.hubclient import resolve_endpoint
    from smolforge.publish import PublishRequest, check_repo_id
    from smolforge.publish import publish as push

    req = PublishRequest(repo_id=check_repo_id(repo_id or cfg.publish.repo_id),
                         private=cfg.publish.private if private is None else private, private_given=private is not None,
                         endpoint=resolve_endpoint(endpoint, cfg.publish.endpoint), quantized_as=layout, force=force,
                         merge_metadata=merge_metadata, retries=retries,
                         token_file=str(token_file) if token_file else None)
    handler = logs.attach_file(run.logs_dir, "publish.log")
    try:
        push(run, cfg, req, console, username=cached_username())
    finally:
        logs.detach(handler)


def main() -> None:
    """Console-script entry point: run the app and map errors to messages and exit codes."""
    import click
    from typer.main import get_command

    command = get_command(app)
    try:
        command.main(args=sys.argv[1:], prog_name="smolforge", standalone_mode=False)
    except click.exceptions.Exit as e:
        sys.exit(e.exit_code)
    except click.exceptions.Abort:
        _err("aborted.")
        sys.exit(130)
    except click.ClickException as e:
        e.show()
        sys.exit(e.exit_code)
    except KeyboardInterrupt:
        _err("interrupted.")
        sys.exit(130)
    except Exception as e:
        from smolforge.credentials import redact
        from smolforge.errors import SmolforgeError

        if isinstance(e, SmolforgeError):
            _err(redact(str(e)))
            sys.exit(e.exit_code)
        import traceback  # a bug: keep the traceback, but never with a secret in it

        sys.stderr.write(redact(traceback.format_exc()))
        sys.exit(1)
    sys.exit(0)


if __name__ == "__main__":
    main()
