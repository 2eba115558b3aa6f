"""The `smolforge` command line: parse the arguments, call the module that owns the work.

Start-up must stay cheap: this module imports only typer, pydantic (for the config flags) and the
standard library at the top; every command imports what it needs inside its body, so
`smolforge --help` never loads torch, transformers or trl. `main()` is the one place that turns
errors into messages and exit codes: a usage error -> click's usage text, exit 2; SmolforgeError
-> its paragraph on stderr and its exit code (2, or 1 for a failed push); no traceback.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from smolforge.cliflags import with_config_flags

app = typer.Typer(
    name="smolforge",
    help="Fine-tune a small language model from a config to a published, documented model: "
         "train (SFT/DPO, full or LoRA) -> track -> evaluate -> quantize -> model card -> publish.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)

SetOpt = Annotated[list[str] | None, typer.Option(
    "--set", help="Override any config value: section.key=value (repeatable), e.g. --set training.learning_rate=1e-4.")]
YesOpt = Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation (required outside a "
                                                          "terminal).")]
RunDir = Annotated[Path, typer.Argument(metavar="RUN_DIR", help="The run folder (runs/<experiment_name>).")]
TokenFile = Annotated[Path | None, typer.Option(help="File holding an HF token (else HF_TOKEN or the login "
                                                     "cache). Tokens are never accepted on the command line.")]
Flags = dict[str, Any]


def _console():
    from smolforge.console import make_console

    return make_console()


@app.command()
@with_config_flags("run")
def run(
    config: Annotated[Path | None, typer.Argument(metavar="[CONFIG]", help="smolforge.yaml, or a run folder with "
                                                                            "--resume.")] = None,
    preset: Annotated[str | None, typer.Option(help="Start from a preset (see `smolforge presets`).")] = None,
    set_: SetOpt = None,
    yes: YesOpt = False,
    resume: Annotated[bool, typer.Option(help="Continue the run of CONFIG (or the run folder) from its last "
                                              "checkpoint.")] = False,
    token_file: TokenFile = None,
    flags: Flags | None = None,
) -> None:
    """Run the whole pipeline: train -> evaluate (-> quantize) -> card (-> publish)."""
    from smolforge.commands.run import RunRequest, run_command

    run_command(RunRequest(config=config, preset=preset, sets=list(set_ or []), flags=flags or {}, yes=yes,
                           resume=resume, token_file=str(token_file) if token_file else None,
                           argv=sys.argv[1:]), _console())


@app.command()
def slurm(
    config: Annotated[Path | None, typer.Argument(metavar="[CONFIG]", help="smolforge.yaml (on the shared "
                                                                            "filesystem), or use --preset.")] = None,
    nodes: Annotated[int, typer.Option(help="Nodes to train on (#SBATCH --nodes; sets training.nnodes).")] = ...,
    gpus_per_node: Annotated[int, typer.Option(help="GPUs per node, one training process each (#SBATCH "
                                                    "--gpus-per-node; sets training.nproc).")] = ...,
    preset: Annotated[str | None, typer.Option(help="Start from a preset (see `smolforge presets`).")] = None,
    set_: SetOpt = None,
    partition: Annotated[str | None, typer.Option(help="#SBATCH --partition (default: the cluster's).")] = None,
    time: Annotated[str | None, typer.Option(help="#SBATCH --time, e.g. 2-00:00:00 (default: the partition's "
                                                  "limit).")] = None,
    account: Annotated[str | None, typer.Option(help="#SBATCH --account (default: yours).")] = None,
    cpus_per_node: Annotated[int | None, typer.Option(help="#SBATCH --cpus-per-task for the one task per node "
                                                           "(default: the cluster's, often 1).")] = None,
    port: Annotated[int | None, typer.Option(help="Rendezvous port on the first node (default: torch's c10d "
                                                  "port, 29400).")] = None,
    gpu: Annotated[str | None, typer.Option(help="The GPU type (h100, a100-80gb, l4, ...: `smolforge plan --gpu`'s "
                                                 "names), to check that it holds the run.")] = None,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="The script to write (default: "
                                                                       "<experiment>.sbatch here).")] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace OUTPUT if it exists.")] = False,
) -> None:
    """Write an sbatch script that runs CONFIG on several nodes of a SLURM cluster (srun + torchrun), and print
    how to submit it. Options not given are left to the cluster's defaults."""
    from smolforge.commands.slurm import slurm_command
    from smolforge.launchers.slurm import SlurmRequest

    slurm_command(SlurmRequest(config=config, nodes=nodes, gpus_per_node=gpus_per_node, preset=preset,
                              sets=list(set_ or []), partition=partition, time=time, account=account,
                              cpus_per_node=cpus_per_node, port=port, gpu=gpu, output=output, force=force),
                  _console())


@app.command()
def skypilot(
    config: Annotated[Path | None, typer.Argument(metavar="[CONFIG]", help="smolforge.yaml, or use --preset.")] = None,
    gpus: Annotated[str, typer.Option(help="GPUs of one node, NAME:COUNT as SkyPilot names them, e.g. H100:8 "
                                           "(sets training.nproc).")] = ...,
    nodes: Annotated[int, typer.Option(help="Nodes to train on (num_nodes; sets training.nnodes).")] = 1,
    cloud: Annotated[str | None, typer.Option(help="Where to run: aws, gcp, azure, kubernetes, lambda, ... "
                                                   "with /region (default: the cheapest SkyPilot finds).")] = None,
    use_spot: Annotated[bool, typer.Option("--use-spot", help="Spot instances as a managed job: restarted after a "
                                                              "preemption, resumed from the bucket.")] = False,
    output_bucket: Annotated[str | None, typer.Option(help="Bucket for the run folder (s3://, gs://, r2://, ...): "
                                                           "kept after the cluster; required for --nodes > 1 and "
                                                           "--use-spot.")] = None,
    disk_size: Annotated[int, typer.Option(help="Disk per node, GB.")] = 256,
    preset: Annotated[str | None, typer.Option(help="Start from a preset (see `smolforge presets`).")] = None,
    set_: SetOpt = None,
    install: Annotated[str | None, typer.Option(help="pip requirement the nodes install smolforge from (default: "
                                                     "a wheel of this installation).")] = None,
    port: Annotated[int | None, typer.Option(help="Rendezvous port on node 0 (default 29400).")] = None,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="The task file to write (default: "
                                                                       "<experiment>.sky.yaml here).")] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace OUTPUT if it exists.")] = False,
) -> None:
    """Write a SkyPilot task that runs CONFIG on rented GPUs (any cloud or Kubernetes; one node or several), and
    print the `sky launch` command. Checks the config and that the GPU holds the run first."""
    from smolforge.commands.skypilot import skypilot_command
    from smolforge.launchers.skypilot import SkyRequest, parse_gpus

    accelerator, count = parse_gpus(gpus)
    skypilot_command(SkyRequest(config=config, nodes=nodes, gpus_per_node=count, preset=preset,
                                sets=list(set_ or []), port=port, accelerator=accelerator, infra=cloud,
                                use_spot=use_spot, output_bucket=output_bucket, disk_size=disk_size, install=install,
                                output=output, force=force), _console())


@app.command()
def ui(
    port: Annotated[int | None, typer.Option(help="Port (default: the first free one from 7860).")] = None,
    host: Annotated[str, typer.Option(help="Address to listen on; anything but 127.0.0.1 lets other machines start "
                                           "runs here.")] = "127.0.0.1",
    no_browser: Annotated[bool, typer.Option("--no-browser", help="Do not open a browser.")] = False,
    runs_dir: Annotated[Path | None, typer.Option(help="The runs folder to list and start runs in (default: "
                                                       "runs).")] = None,
) -> None:
    """Configure, plan, start, watch and compare runs in a local web app (every field is a setting of `smolforge
    run`, checked by the same rules). Ctrl-C stops the app; runs it started keep going."""
    from smolforge.commands.ui import ui_command

    ui_command(port, host, not no_browser, runs_dir, _console())


@app.command()
def plan(
    config: Annotated[Path | None, typer.Argument(metavar="[CONFIG]", help="smolforge.yaml to plan.")] = None,
    preset: Annotated[str | None, typer.Option(help="Plan a preset (see `smolforge presets`).")] = None,
    set_: SetOpt = None,
    gpu: Annotated[str | None, typer.Option(help="Plan for this GPU instead of this machine: h100, a100-80gb, l4, "
                                                 "... (an unknown name lists them).")] = None,
    calibrate: Annotated[bool, typer.Option("--calibrate", help="Run a few real training steps here and correct "
                                                                "the prediction; `smolforge run` of the same config "
                                                                "then shows the calibrated numbers.")] = False,
    json_: Annotated[bool, typer.Option("--json", help="Print the prediction as JSON.")] = False,
) -> None:
    """Predict peak memory, tokens per step and time of a run from its config and data, before any weights load;
    say what would fit when it does not."""
    from smolforge.commands.plan import plan_command

    plan_command(config, preset, list(set_ or []), gpu, calibrate, json_, _console())


data_app = typer.Typer(help="Check a dataset before training with it.", no_args_is_help=True,
                       rich_markup_mode=None)
app.add_typer(data_app, name="data")


@data_app.command("check")
def data_check(
    config: Annotated[Path | None, typer.Argument(metavar="[CONFIG]", help="smolforge.yaml whose data to check.")
                      ] = None,
    preset: Annotated[str | None, typer.Option(help="Check a preset's data (see `smolforge presets`).")] = None,
    set_: SetOpt = None,
    json_: Annotated[bool, typer.Option("--json", help="Print the data report as JSON.")] = False,
) -> None:
    """Prepare the data as `run` would (formats, duplicates, split, the chat-template survival check, token
    lengths) and print the data report, without training."""
    from smolforge.commands.data import data_check_command

    data_check_command(config, preset, list(set_ or []), json_, _console())


@app.command()
def reproduce(
    run_dir: RunDir,
    output_dir: Annotated[Path | None, typer.Option(help="Folder for the new run (default: RUN_DIR-reproduced "
                                                         "beside it).")] = None,
) -> None:
    """Train a finished run again from its manifest.json into a new folder and check every number on its card and
    its weights against the original (exit code 0: reproduced, 1: not). Warns about every difference in the
    environment, the data and the base model first."""
    from smolforge.commands.reproduce import reproduce_command

    reproduce_command(run_dir, output_dir, _console())


@app.command()
def presets() -> None:
    """List the presets with their key values (read from the same config that trains)."""
    from smolforge.commands.presets import presets_command

    presets_command(_console())


@app.command()
def doctor(
    endpoint: Annotated[str | None, typer.Option(help="Hub endpoint to check (default HF_ENDPOINT or "
                                                      "huggingface.co).")] = None,
) -> None:
    """Versions, hardware, whether an HF token is present, and whether the Hub is reachable."""
    from smolforge.commands.doctor import doctor_command

    doctor_command(endpoint, _console())


@app.command()
@with_config_flags("init")
def init(
    output: Annotated[Path, typer.Option("--output", "-o", help="The YAML file to write.")] = Path("smolforge.yaml"),
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Ask nothing: write the preset's defaults plus the flags "
                                                          "given (required outside a terminal).")] = False,
    force: Annotated[bool, typer.Option("--force", help="Replace OUTPUT if it exists.")] = False,
    preset: Annotated[str | None, typer.Option(help="Preset to start from (see `smolforge presets`).")] = None,
    set_: SetOpt = None,
    flags: Flags | None = None,
) -> None:
    """Set up a run: asks step by step, shows a summary, and writes one YAML file (`smolforge run FILE`)."""
    from smolforge.commands.init import init_command

    init_command(output, preset=preset, flags=flags or {}, sets=list(set_ or []), yes=yes, force=force,
                 console=_console())


@app.command()
@with_config_flags("card")
def card(
    run_dir: RunDir,
    output: Annotated[Path | None, typer.Option(help="Write here instead of RUN_DIR/model/README.md.")] = None,
    force: Annotated[bool, typer.Option(help="Overwrite a card that was edited by hand.")] = False,
    flags: Flags | None = None,
) -> None:
    """Write (or rewrite) the model card of a finished run, offline. Card flags given here are remembered
    for later `card` and `publish` runs (in the run's overrides.yaml; config.yaml stays as trained)."""
    from smolforge.commands.card import card_command

    card_command(run_dir, flags or {}, _console(), output=output, force=force)


@app.command()
def dashboard(
    run_dir: RunDir,
    port: Annotated[int | None, typer.Option(min=1, max=65535, help="Port on 127.0.0.1 (default: the first "
                                                                    "free one from 7860).")] = None,
    browser: Annotated[bool, typer.Option("--browser/--no-browser", help="Open a browser tab.")] = True,
) -> None:
    """Open the trackio dashboard of a run (local metrics, or its Space)."""
    from smolforge.commands.dashboard import dashboard_command

    dashboard_command(run_dir, port, browser, _console())


@app.command()
def demo(
    run_dir: RunDir,
    output: Annotated[Path | None, typer.Option(help="Folder for the app (default: <run folder>-demo beside "
                                                     "the run).")] = None,
    model_id: Annotated[str | None, typer.Option(help="Hub repo the app loads (default: the repo the run was "
                                                      "published to).")] = None,
    title: Annotated[str | None, typer.Option(help="Page title (default: the card's model name).")] = None,
    description: Annotated[str | None, typer.Option(help="Text under the title, or @FILE.")] = None,
    system_prompt: Annotated[str | None, typer.Option(help="Default system prompt, or @FILE (default: "
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
    port: Annotated[int | None, typer.Option(min=1, max=65535, help="Port for --serve (default: the first free "
                                                                    "one from 7860).")] = None,
    space: Annotated[str | None, typer.Option(help="Publish the app as this Hub Space (user/name).")] = None,
    private: Annotated[bool, typer.Option("--private/--public", help="Visibility of the Space.")] = True,
    token_file: TokenFile = None,
) -> None:
    """Generate a Gradio chat app for a run's model; --serve runs it locally, --space publishes it."""
    from smolforge.commands.demo import DemoRequest, demo_command

    demo_command(DemoRequest(
        run_dir=run_dir, output=output, model_id=model_id, title=title, description=description,
        system_prompt=system_prompt, thinking=thinking, examples=list(example) if example else None,
        temperature=temperature, top_p=top_p, max_new_tokens=max_new_tokens, seed=seed, serve=serve, port=port,
        space=space, private=private, token_file=str(token_file) if token_file else None), _console())


@app.command()
@with_config_flags("evaluate")
def evaluate(
    run_dir: RunDir,
    flags: Flags | None = None,
) -> None:
    """Compare the fine-tune with its base model on benchmarks (lm-eval), measured the same way, and update the
    card. Tasks: `builtin` (offline), lm-eval registry names, or paths to lm-eval task YAML files."""
    from smolforge.commands.evaluate import evaluate_command

    evaluate_command(run_dir, flags or {}, _console())


@app.command()
def quantize(
    run_dir: RunDir,
    method: Annotated[list[str] | None, typer.Option("--method", help="int8 (CPU or GPU), int4 (CUDA only), "
                                                     "gguf-f16, gguf-q8_0 or gguf-q4_k_m (llama.cpp / Ollama); "
                                                     "repeatable. Default: the config's `quantize` list, else "
                                                     "int8.")] = None,
) -> None:
    """Make quantized variants (torchao, GGUF) of a finished run, measure them, and update the card."""
    from smolforge.commands.quantize import quantize_command

    quantize_command(run_dir, list(method or []), _console())


@app.command()
def publish(
    run_dir: RunDir,
    repo_id: Annotated[str | None, typer.Option(help="Hub repo user/name (default: publish.repo_id).")] = None,
    private: Annotated[bool | None, typer.Option("--private/--public", help="Visibility of a new repo (default: "
                                                                           "publish.private, which is private).")]
    = None,
    endpoint: Annotated[str | None, typer.Option(help="Hub URL (default: publish.endpoint, HF_ENDPOINT, "
                                                      "https://huggingface.co).")] = None,
    token_file: TokenFile = None,
    quantized_as: Annotated[str | None, typer.Option(help="subfolders (int8/ in the repo) or repos "
                                                          "(<repo>-int8). Default: publish.quantized_as.")] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace a README.md that was edited on the Hub; publish "
                                                        "GGUF files that failed a check or the "
                                                        "quantize.max_quality_drop gate.")] = False,
    merge_metadata: Annotated[bool, typer.Option("--merge-metadata", help="Keep a README.md edited on the Hub; "
                                                 "merge this run's metadata into it.")] = False,
    retries: Annotated[int, typer.Option(min=0, max=20, help="Retries (with backoff) of a failed Hub call.")] = 4,
    export: Annotated[Path | None, typer.Option(help="Write the folder that would be pushed here instead "
                                                     "(offline; no token needed).")] = None,
    token: Annotated[str | None, typer.Option(hidden=True)] = None,
) -> None:
    """Push a run to the Hugging Face Hub in one commit (or --export the same folder offline)."""
    from smolforge.commands.publish import PublishFlags, publish_command

    publish_command(run_dir, PublishFlags(
        repo_id=repo_id, private=private, endpoint=endpoint, token_file=str(token_file) if token_file else None,
        quantized_as=quantized_as, force=force, merge_metadata=merge_metadata, retries=retries, export=export,
        token_given=token is not None), _console())


def main() -> None:
    """Console-script entry point: run the app and map errors to messages and exit codes."""
    from typer._click.exceptions import ClickException, NoArgsIsHelpError
    from typer.exceptions import Abort, Exit
    from typer.main import get_command

    from smolforge.console import print_error

    command = get_command(app)
    try:
        command.main(args=sys.argv[1:], prog_name="smolforge", standalone_mode=False)
    except NoArgsIsHelpError as e:  # a bare `smolforge` or `smolforge <group>`: the help, not an error
        typer.echo(e.ctx.get_help())
        sys.exit(0)
    except ClickException as e:  # usage errors: click's own "Usage: ... Error: ..." text, exit 2
        e.show()
        sys.exit(e.exit_code)
    except Exit as e:
        sys.exit(e.exit_code)
    except (Abort, KeyboardInterrupt):
        print_error("interrupted.")
        sys.exit(130)
    except Exception as e:
        from smolforge.credentials import redact
        from smolforge.errors import SmolforgeError

        if isinstance(e, SmolforgeError):
            print_error(redact(str(e)))
            sys.exit(e.exit_code)
        import traceback  # a bug: keep the traceback, but never with a secret in it

        sys.stderr.write(redact(traceback.format_exc()))
        sys.exit(1)
    sys.exit(0)


if __name__ == "__main__":
    main()
