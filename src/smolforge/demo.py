"""`smolforge demo`: a Gradio chat app for a finished run, served locally or published as a Space.

The app is a folder a person can read, run and push as is: app.py (a fixed file shipped in
smolforge/resources), demo_config.json (everything specific to this model), requirements.txt
(the versions this app was tested with) and README.md (the Space's front matter, built through
huggingface_hub's SpaceCardData so it is valid by construction). It lives beside the run folder,
never inside it, because the run folder's file set is the contract between stages.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass, field
from importlib import resources
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from smolforge import processenv
from smolforge.card import defaults
from smolforge.config import SmolforgeConfig
from smolforge.credentials import redact
from smolforge.errors import PublishError, SmolforgeError, first_line
from smolforge.hubclient import endpoint_from_env
from smolforge.runfolder import RunFolder, atomic_write_text, umask_mode

APP_FILES = ("app.py", "demo_config.json", "requirements.txt", "README.md")
GENERATOR = "smolforge demo"
DEFAULT_EXAMPLES = [
    "Hello! What can you help me with?",
    "Explain what a language model is in two sentences.",
    "Give me three tips for writing clear emails.",
]
# Packages the app imports, pinned to the versions it runs with here.
PINNED = ("gradio", "transformers", "torch", "huggingface_hub")


@dataclass
class DemoSettings:
    """What goes into demo_config.json: the model, the page's text and the sampling defaults."""

    title: str
    model_id: str | None
    description: str
    system_prompt: str = ""
    thinking: bool = False
    examples: list[str] = field(default_factory=lambda: list(DEFAULT_EXAMPLES))
    temperature: float = 0.6
    top_p: float = 0.95
    max_new_tokens: int = 512
    seed: int = -1
    license: str | None = None
    base_model: str | None = None
    template_thinking: bool = False  # the chat template has SmolLM3's enable_thinking switch
    hub_url: str = "https://huggingface.co"  # where the model lives, for the Space's README link

    def config_json(self) -> dict[str, Any]:
        data = asdict(self)
        gen = {k: data.pop(k) for k in ("temperature", "top_p", "max_new_tokens", "seed")}
        data.pop("template_thinking")  # the app reads this from the tokenizer it loads
        data.pop("hub_url")
        return {"generator": f"{GENERATOR} (smolforge {_version('smolforge') or 'dev'})", **data, "generation": gen}


def _version(package: str) -> str | None:
    try:
        return version(package).split("+")[0]  # torch's "+cpu" is a local build tag, not on PyPI
    except PackageNotFoundError:
        return None


def default_output(run_dir: Path) -> Path:
    """`runs/<name>` -> `runs/<name>-demo`: next to the run, outside its contract file set."""
    root = run_dir.resolve()
    return root.with_name(root.name + "-demo")


def require_model(run: RunFolder) -> Path:
    if not (run.model_dir / "config.json").is_file():
        raise SmolforgeError(f"{run.model_dir} holds no trained model (no config.json). Finish the run first "
                             f"with `smolforge run {run.root} --resume`, or pass the folder of a finished run.")
    return run.model_dir


def published_model_id(run: RunFolder, cfg: SmolforgeConfig) -> str | None:
    """The repo the model was pushed to (results.json), else the one the config asks for."""
    published = (run.read_results().get("publish") or {}).get("repo_id")
    return published or cfg.publish.repo_id


def template_has_thinking(model_dir: Path) -> bool:
    """Whether the saved chat template reads `enable_thinking` (SmolLM3's /think and /no_think modes)."""
    texts = [p.read_text("utf-8") for p in (model_dir / "chat_template.jinja", model_dir / "tokenizer_config.json")
             if p.is_file()]
    return any("enable_thinking" in t for t in texts)


def settings_for(run: RunFolder, cfg: SmolforgeConfig, *, model_id: str | None, title: str | None = None,
                 description: str | None = None, system_prompt: str | None = None, thinking: bool | None = None,
                 examples: list[str] | None = None, temperature: float | None = None, top_p: float | None = None,
                 max_new_tokens: int | None = None, seed: int | None = None) -> DemoSettings:
    """Everything the app needs, from the run (config, card, results) and the user's flags; validated."""
    problems = []
    if temperature is not None and not 0 <= temperature <= 1.5:
        problems.append(f"--temperature must be between 0 (greedy) and 1.5 (got {temperature})")
    if top_p is not None and not 0 < top_p <= 1:
        problems.append(f"--top-p must be in (0, 1] (got {top_p})")
    if max_new_tokens is not None and not 1 <= max_new_tokens <= 32768:
        problems.append(f"--max-new-tokens must be between 1 and 32768 (got {max_new_tokens})")
    if examples is not None and not all(e.strip() for e in examples):
        problems.append("--example must not be empty")
    if problems:
        raise SmolforgeError("smolforge demo: " + "; ".join(problems) + ". Fix the flag and run it again.")

    title = title or defaults.model_name(cfg, model_id, cfg.experiment_name or run.root.name)
    description = description or defaults.description(cfg)
    return DemoSettings(
        title=title, model_id=model_id, description=description.strip(),
        system_prompt=(system_prompt if system_prompt is not None else cfg.data.system_prompt or "").strip(),
        thinking=thinking if thinking is not None else cfg.data.reasoning == "think",
        examples=[e.strip() for e in examples] if examples else list(DEFAULT_EXAMPLES),
        temperature=0.6 if temperature is None else temperature, top_p=0.95 if top_p is None else top_p,
        max_new_tokens=512 if max_new_tokens is None else max_new_tokens, seed=-1 if seed is None else seed,
        license=defaults.known_license(cfg), base_model=defaults.base_hub_id(cfg),
        template_thinking=template_has_thinking(run.model_dir), hub_url=endpoint_from_env(cfg.publish.endpoint),
    )


def requirements_txt() -> str:
    lines = ["# The versions this demo was generated and tested with (pip install -r requirements.txt)."]
    for package in PINNED:
        v = _version(package)
        lines.append(f"{package}=={v}" if v else package)
    return "\n".join(lines) + "\n"


def space_readme(settings: DemoSettings) -> str:
    """README.md for the Space: SpaceCardData front matter + a short body on what it is and how to run it."""
    from huggingface_hub import SpaceCard, SpaceCardData

    data = SpaceCardData(title=settings.title[:60], sdk="gradio", sdk_version=_version("gradio"), app_file="app.py",
                         license=settings.license, models=[settings.model_id] if settings.model_id else None,
                         tags=["smolforge", "chat"], short_description=f"Chat demo of {settings.title}"[:60],
                         pinned=False)
    model = f"[{settings.model_id}]({settings.hub_url}/{settings.model_id})" if settings.model_id \
        else "a local model folder (set `SMOLFORGE_DEMO_MODEL`)"
    body = "\n".join([
        f"# {settings.title}", "", settings.description, "",
        f"A Gradio chat demo of {model}, generated by `smolforge demo`. Every turn goes through the model's chat "
        "template with the whole conversation and the system prompt; the Settings panel has the sampling "
        "controls" + (" and the thinking switch." if settings.template_thinking else "."), "",
        "Run it locally:", "", "```bash", "pip install -r requirements.txt", "python app.py", "```", "",
        "`demo_config.json` holds the model id, the page text, the examples and the sampling defaults.", "",
    ])
    return SpaceCard(f"---\n{data.to_yaml()}\n---\n\n{body}").content


def _is_our_demo(folder: Path) -> bool:
    try:
        return json.loads((folder / "demo_config.json").read_text("utf-8")).get("generator", "").startswith(GENERATOR)
    except (OSError, ValueError, AttributeError):
        return False


def check_output(output: Path) -> None:
    """Refuse to overwrite a folder that is not a demo smolforge wrote (or a run folder)."""
    if output.exists() and not output.is_dir():
        raise SmolforgeError(f"--output {output} is a file. Pass a folder for the demo app (it is created).")
    if output.is_dir() and any(output.iterdir()) and not _is_our_demo(output):
        raise SmolforgeError(f"--output {output} already holds other files. Pass an empty or new folder with "
                             "--output, or the folder of an earlier `smolforge demo`, which is regenerated.")


def write_app(settings: DemoSettings, output: Path) -> Path:
    """Write the app folder atomically: built in a sibling temp folder, then swapped into place."""
    check_output(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{output.name}.", dir=output.parent))
    try:
        app = resources.files("smolforge").joinpath("resources/demo_app.py").read_text("utf-8")
        atomic_write_text(tmp / "app.py", app)
        atomic_write_text(tmp / "demo_config.json", json.dumps(settings.config_json(), indent=2,
                                                               ensure_ascii=False) + "\n")
        atomic_write_text(tmp / "requirements.txt", requirements_txt())
        atomic_write_text(tmp / "README.md", space_readme(settings))
        old = None
        if output.exists():
            old = output.with_name(f".{output.name}.old-{os.getpid()}")
            output.rename(old)
        tmp.chmod(umask_mode(0o777))  # mkdtemp makes an owner-only folder; the app is meant to be shared
        tmp.rename(output)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return output


def serve(output: Path, model_dir: Path, port: int, host: str = "127.0.0.1") -> None:
    """Run the generated app.py in this process on host:port with the run's local model (blocks)."""
    import importlib.util

    processenv.quiet_libraries()  # before gradio is imported: no telemetry, no version check, no library noise
    os.environ["SMOLFORGE_DEMO_MODEL"] = str(model_dir.resolve())
    spec = importlib.util.spec_from_file_location("smolforge_demo_app", output / "app.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    # quiet: gradio's own banner suggests share=True, which this local-only app never uses; smolforge says the URL
    module.launch(str(model_dir.resolve()), server_name=host, server_port=port, inbrowser=False, quiet=True)


def publish_space(output: Path, space_id: str, *, private: bool, token: str, endpoint: str | None = None) -> dict:
    """Create the Space (gradio SDK, private unless asked) and upload the app folder in one commit."""
    from huggingface_hub import HfApi

    api = HfApi(endpoint=endpoint, token=token)
    try:
        repo = api.create_repo(space_id, repo_type="space", space_sdk="gradio", private=private, exist_ok=True)
        commit = api.upload_folder(folder_path=str(output), repo_id=space_id, repo_type="space",
                                   allow_patterns=list(APP_FILES), commit_message="Chat demo from smolforge")
    except (OSError, ValueError) as e:  # HfHubHTTPError and httpx2 errors are OSErrors; the folder is intact

        reason = redact(first_line(e))
        raise PublishError(f"Could not publish the demo to the Space {space_id}: {reason}. "
                           f"The app folder {output} is complete; check the token's write access and retry "
                           f"`smolforge demo ... --space {space_id}`.") from None
    url = str(getattr(repo, "url", "") or f"{(endpoint or 'https://huggingface.co').rstrip('/')}/spaces/{space_id}")
    return {"space_id": space_id, "url": url, "private": private,
            "commit": getattr(commit, "oid", None)}
