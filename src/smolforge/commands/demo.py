"""`smolforge demo RUN_DIR`: a Gradio chat app for a run's model; served locally and/or published as a Space."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from smolforge.commands.finished import open_finished
from smolforge.credentials import find_token
from smolforge.demo import (
    default_output,
    publish_space,
    published_model_id,
    require_model,
    serve,
    settings_for,
    write_app,
)
from smolforge.errors import SmolforgeError
from smolforge.identifiers import repo_id, require
from smolforge.netports import choose_port
from smolforge.userinput import read_text_or_file


@dataclass
class DemoRequest:
    """`smolforge demo` as typed (None = not given)."""

    run_dir: Path
    output: Path | None = None
    model_id: str | None = None
    title: str | None = None
    description: str | None = None
    system_prompt: str | None = None
    thinking: bool | None = None
    examples: list[str] | None = None
    temperature: float | None = None
    top_p: float | None = None
    max_new_tokens: int | None = None
    seed: int | None = None
    serve: bool = False
    port: int | None = None
    space: str | None = None
    private: bool = True
    token_file: str | None = None


def _text_flag(value: str | None, flag: str) -> str | None:
    if value is None:
        return None
    try:
        return read_text_or_file(value)
    except ValueError as e:
        raise SmolforgeError(f"{flag}: {e}. Use @FILE for a UTF-8 text file, or pass the text itself.") from None


def demo_command(req: DemoRequest, console) -> None:
    """Write the app for a finished run; then serve it locally and/or publish it as a Space."""
    done = open_finished(req.run_dir, "demo")
    run, cfg = done.run, done.cfg
    model_dir = require_model(run)
    space = require(repo_id, req.space, "--space") if req.space else None
    model = require(repo_id, req.model_id, "--model-id") if req.model_id else published_model_id(run, cfg)
    token = None
    if space:
        if not model:
            raise SmolforgeError(f"--space needs the Hub repo the Space loads the model from, and {run.root} has "
                                 f"none: publish the model first (`smolforge publish {run.root} --repo-id "
                                 "user/name`) or pass --model-id user/name.")
        token, _ = find_token(req.token_file)
        if not token:
            raise SmolforgeError("--space needs a Hugging Face token with write access: set HF_TOKEN, run "
                                 "`hf auth login`, or pass --token-file FILE.")
    port = None
    if req.serve:
        port = choose_port(req.port)
    settings = settings_for(
        run, cfg, model_id=model, title=req.title, description=_text_flag(req.description, "--description"),
        system_prompt=_text_flag(req.system_prompt, "--system-prompt"), thinking=req.thinking,
        examples=req.examples, temperature=req.temperature, top_p=req.top_p, max_new_tokens=req.max_new_tokens,
        seed=req.seed)
    folder = write_app(settings, req.output or default_output(run.root))
    console.print(f"Demo app written: {folder}", markup=False)
    if space:
        info = publish_space(folder, space, private=req.private, token=token, endpoint=cfg.publish.endpoint)
        run.update_results(demo=info)
        console.print(f"Space published ({'private' if req.private else 'public'}): {info['url']}", markup=False)
        if not (run.read_results().get("publish") or {}).get("repo_id") and not req.model_id:
            console.print(f"Note: the run has not been published yet; the Space loads {model} once it is pushed "
                          f"(`smolforge publish {run.root}`).", markup=False)
        console.print(f"The Space loads {model}; if that repo is private, add an HF_TOKEN secret (read access) "
                      "in the Space's settings.", markup=False)
    if req.serve:
        console.print(f"Serving on http://127.0.0.1:{port} (Ctrl-C stops it) with the local model {model_dir}",
                      markup=False)
        serve(folder, model_dir, port)
