"""The interactive steps of `smolforge init`, in the order a person thinks about a run.

Each step reads its defaults from the draft (preset + flags + earlier answers) and writes its
answers back; nothing touches the disk or the token cache until the final confirm.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.markup import escape as esc

from smolforge.wizard import checks, prompts
from smolforge.wizard.draft import DEFAULT_MODEL, Draft, InitFlags, preset_dump, preset_for_model
from smolforge.wizard.hub import HubAccess

OTHER = "__other__"
COMMON_LICENSES = ["apache-2.0", "mit", "cc-by-4.0", "cc-by-sa-4.0", "cc-by-nc-4.0", "llama3.2", "gemma", "openrail"]
NO_COLUMN = "__none__"


@dataclass
class Outcome:
    path: Path
    start_run: bool
    token: str | None = None  # a typed, unstored token for a run started right away (passed by env only)


def _step(console, n: int, title: str, why: str) -> None:
    console.print()
    console.print(f"[bold cyan]Step {n}/10 · {title}[/]  [dim]{why}[/]")


# ---------------------------------------------------------------- 1. Hugging Face access

def step_hub(console) -> HubAccess:
    from smolforge.credentials import cached_username, find_token, register_secret
    from smolforge.wizard import hub as hubmod

    _step(console, 1, "Hugging Face access", "needed to publish and to read gated or private data")
    access = HubAccess()
    token, source = find_token()
    if token:
        access.token, access.source = token, source
        console.print(f"Token found in {esc(source)}.")
    else:
        console.print("No token found (HF_TOKEN or `hf auth login`). You can paste one (it is not shown), or press "
                      "Enter to continue without: an offline run trains and writes the card; nothing is pushed.")
    if hubmod.offline_by_env():
        console.print("[dim]Offline mode (HF_HUB_OFFLINE): the Hub is not contacted.[/]")
    else:
        access.online = hubmod.reachable(hubmod.endpoint())
        if not access.online:
            console.print(f"[yellow]The Hub ({esc(hubmod.endpoint())}) is not reachable: continuing offline.[/]")
    while True:
        if not access.token:
            typed = prompts.password("Hugging Face token:", checks.parse_token, instruction="(hidden; Enter to skip)")
            if not typed:
                break
            register_secret(typed)
            access.token, access.source, access.typed = typed, "the prompt", True
        if not access.online:
            access.username = cached_username(access.token)
            break
        try:
            access.username, access.can_write = hubmod.check_token(access.token)
        except hubmod.TokenRejected as e:
            console.print(f"[red]The token from {access.source} was rejected by the Hub ({esc(str(e))}).[/]")
            rejected_typed = access.typed
            access.token, access.source, access.typed = None, "none", False
            if rejected_typed:
                continue  # ask again
            break
        except OSError as e:
            console.print(f"[yellow]Could not check the token ({esc(str(e))}): continuing offline.[/]")
            access.online = False
            access.username = cached_username(access.token)
        break
    if access.token and access.username:
        write = {True: "can write (create and push repos)", False: "read-only: publishing will fail",
                 None: "write access not checked"}[access.can_write]
        console.print(f"Hugging Face user: [bold]{esc(access.username)}[/] ({write}).")
    if access.typed and access.online and access.username:
        access.store = prompts.confirm("Store this token with `huggingface_hub` login so later runs find it?", True)
    return access


# ---------------------------------------------------------------- 2. base model and preset

def _preset_line(name: str) -> tuple[str, str]:
    from smolforge import presets

    p = preset_dump(name)
    t, d = p["training"], p["data"]
    values = (f"{t['method'].upper()} {t['finetune']} · {d['name']} · batch {t['batch_size']}x"
              f"{t['gradient_accumulation_steps']} · lr {t['learning_rate']:g} · max length {t['max_length']}")
    return f"{name}: {presets.description(name)}", values


def step_model(console, flags: InitFlags) -> Draft:
    from smolforge import presets

    _step(console, 2, "Base model and preset", "the preset supplies every value you do not change")
    current = flags.base_model or (preset_dump(flags.preset)["model"]["name_or_path"] if flags.preset else
                                   DEFAULT_MODEL)
    choices = [(f"{DEFAULT_MODEL} (3B instruct/reasoning model; a GPU is needed to train it)", DEFAULT_MODEL),
               ("tiny (a ~1M-parameter SmolLM3 built locally: trains on a CPU in about a minute, offline)", "tiny")]
    if current not in (DEFAULT_MODEL, "tiny"):
        choices.append((current, current))
    choices.append(("another model (a Hub id or a local folder)...", OTHER))
    model = prompts.select("Base model:", choices, default=current)
    if model == OTHER:
        model = prompts.text("Model (Hub id or local folder):", checks.parse_model)

    fitting = [n for n in presets.names() if preset_dump(n)["model"]["name_or_path"] == model]
    ordered = fitting + [n for n in presets.names() if n not in fitting]
    default = flags.preset if flags.preset and (flags.preset in fitting or not fitting) else preset_for_model(model)
    lines = {n: _preset_line(n) for n in ordered}
    preset = prompts.select("Preset:", [(lines[n][0], n, lines[n][1]) for n in ordered], default=default)
    return Draft.build(preset, flags, model=model)


# ---------------------------------------------------------------- 3. trainer

def step_trainer(console, draft: Draft, flags: InitFlags) -> Draft:
    """Method and weights; offers the preset made for that pair when there is one for this model."""
    _step(console, 3, "Trainer", "what the model learns from, and which weights change")
    method = prompts.select("Training method:", [
        ("SFT: supervised fine-tuning on conversations or prompt/answer pairs", "sft"),
        ("DPO: preference tuning on chosen/rejected answer pairs", "dpo")], default=draft.get("training.method"))
    finetune = prompts.select("Which weights train:", [
        ("full fine-tune: all weights (best quality, most memory)", "full"),
        ("LoRA: small adapters (~1% of the weights; fits smaller GPUs, quick to share)", "lora")],
        default=draft.get("training.finetune"))
    draft.set("training.method", method)
    draft.set("training.finetune", finetune)
    if (method, finetune) != (draft.preset_data["training"]["method"], draft.preset_data["training"]["finetune"]):
        better = _preset_with(draft.get("model.name_or_path"), method, finetune)
        if better and prompts.confirm(f"The {better} preset is made for {method.upper()} {finetune} (its data and "
                                      f"learning rate). Switch to it?", default=True):
            switched = Draft.build(better, flags, model=draft.get("model.name_or_path"))
            switched.hub = draft.hub
            switched.set("training.method", method)
            switched.set("training.finetune", finetune)
            return switched
    return draft


def _preset_with(model: str, method: str, finetune: str) -> str | None:
    from smolforge import presets

    for name in presets.names():
        p = preset_dump(name)
        if p["model"]["name_or_path"] == model and (p["training"]["method"], p["training"]["finetune"]) == \
                (method, finetune):
            return name
    return None


# ---------------------------------------------------------------- 4. dataset

def _map_fields(console, draft: Draft, columns: list[str]) -> None:
    from smolforge.data import DEFAULT_FIELDS, FORMAT_HELP, REQUIRED_ROLES

    console.print(f"[dim]Formats: {esc(FORMAT_HELP)}.[/]")
    dpo = draft.get("training.method") == "dpo"
    formats = [f for f in DEFAULT_FIELDS if (f == "preference") == dpo]
    fmt = prompts.select("Which format is it?", [(f, f) for f in formats], default=formats[0])
    fields = {}
    for role, usual in DEFAULT_FIELDS[fmt].items():
        required = role in REQUIRED_ROLES[fmt]
        options = [(c, c) for c in columns] + ([] if required else [("(none)", NO_COLUMN)])
        default = usual if usual in columns else options[0][1]
        col = prompts.select(f"Column for `{role}`{'' if required else ' (optional)'}:", options, default=default)
        if col != NO_COLUMN:
            fields[role] = col
    draft.set("data.format", fmt)
    draft.set("data.fields", fields)


def _dataset_fits_method(console, draft: Draft, kind: str | None, fmt: str | None) -> bool:
    method = draft.get("training.method")
    if method == "dpo" and kind != "preference":
        console.print(f"[red]DPO needs preference pairs (`chosen` and `rejected` columns); this dataset looks like "
                      f"{fmt}. Choose a preference dataset (e.g. HuggingFaceH4/ultrafeedback_binarized).[/]")
        return False
    if method == "sft" and kind == "preference":
        console.print("[red]This dataset holds preference pairs (chosen/rejected): that is DPO data. Choose an SFT "
                      "dataset, or press Ctrl-C and start again with DPO.[/]")
        return False
    return True


def step_dataset(console, draft: Draft, online: bool) -> None:
    from smolforge.config import DataSection
    from smolforge.data import is_local_source
    from smolforge.wizard.datapeek import peek, show_row

    _step(console, 4, "Dataset", "checked now, so a wrong column fails here and not after the model loads")
    while True:
        name = prompts.text("Dataset:", checks.parse_dataset, default=draft.get("data.name"),
                            instruction="(Hub id, local .jsonl/.json/.csv/.parquet file or folder, or builtin)")
        draft.set_dataset(name)
        local = is_local_source(name)
        if not local:
            config = prompts.text("Dataset config (subset):", lambda s: s.strip() or None,
                                  default=draft.get("data.config") or "", instruction="(Enter for none)")
            draft.set("data.config", config)
        if not local and not online:
            draft.dataset_note = "format detected at run time"
            console.print("Offline: the dataset's format is detected when the run starts.")
            break
        console.print("Reading a few rows...")
        result = peek(DataSection.model_validate(draft.get("data")), online)
        if result.unread:
            console.print(f"[red]Cannot read this dataset: {esc(result.unread)}[/]")
            continue
        if result.problem:
            console.print(f"[yellow]The format could not be detected from the columns: "
                          f"{esc(', '.join(result.columns) or '(none)')}. Map them below.[/]")
            _map_fields(console, draft, result.columns)
            result = peek(DataSection.model_validate(draft.get("data")), online)
            if result.problem or result.unread:
                console.print(f"[red]{esc(result.problem or result.unread or '')}[/]")
                continue
        if not _dataset_fits_method(console, draft, result.kind, result.format):
            continue
        mapping = ", ".join(f"{role} <- {col}" for role, col in result.fields.items())
        columns = esc(", ".join(result.columns))
        console.print(f"Detected format: [bold]{result.format}[/] ({esc(mapping)}); columns: {columns}")
        for i, row in enumerate(result.rows[:2], 1):
            console.print(f"  row {i}: {show_row(row)}", markup=False)
        draft.dataset_note = f"{result.format} format"
        break
    current = draft.get("data.max_samples")
    samples = prompts.text("Max training samples:", lambda s: checks.parse_optional_int(s, "Max samples", 1, 10**9),
                           default=str(current) if current else "", instruction="(Enter for all rows)")
    draft.set("data.max_samples", samples)


# ---------------------------------------------------------------- 5. training parameters

def step_training(console, draft: Draft) -> None:
    _step(console, 5, "Training parameters", "defaults are the preset's values")
    steps = draft.get("training.max_steps")
    by = prompts.select("Train for:", [("a number of epochs (passes over the data)", "epochs"),
                                       ("a fixed number of optimizer steps", "steps")],
                        default="steps" if steps > 0 else "epochs")
    if by == "epochs":
        draft.set("training.epochs", prompts.text("Epochs:", checks.parse_epochs,
                                                  default=f"{draft.get('training.epochs'):g}"))
        draft.set("training.max_steps", -1)
    else:
        draft.set("training.max_steps", prompts.text(
            "Optimizer steps:", lambda s: checks.parse_int(s, "Steps", 1, 10_000_000),
            default=str(steps if steps > 0 else 1000)))
    draft.set("training.batch_size", prompts.text(
        "Batch size (sequences per device per step):", lambda s: checks.parse_int(s, "The batch size", 1, 4096),
        default=str(draft.get("training.batch_size"))))
    draft.set("training.gradient_accumulation_steps", prompts.text(
        "Gradient accumulation steps:", lambda s: checks.parse_int(s, "Gradient accumulation", 1, 4096),
        default=str(draft.get("training.gradient_accumulation_steps"))))
    draft.set("training.learning_rate", prompts.text(
        "Learning rate:", checks.parse_learning_rate, default=f"{draft.get('training.learning_rate'):g}"))
    top = draft.get("model.tiny.max_position_embeddings") if draft.get("model.name_or_path") == "tiny" else 131072
    draft.set("training.max_length", prompts.text(
        "Max length (tokens per sequence):", lambda s: checks.parse_int(s, "The max length", 16, top),
        default=str(draft.get("training.max_length"))))


# ---------------------------------------------------------------- 6. names and publishing

def step_naming(console, draft: Draft) -> None:
    _step(console, 6, "Experiment and repository", "the run folder is runs/<experiment>")
    draft.set("experiment_name", prompts.text("Experiment name:", checks.parse_experiment_name,
                                              default=draft.default_experiment_name()))
    repo = prompts.text("Hub repo to publish to:", checks.parse_optional_repo_id,
                        default=draft.default_repo_id() or "", instruction="(user/name; empty keeps the model local)")
    draft.set("publish.repo_id", repo)
    if repo:
        private = prompts.select("Visibility:", [("private (only you and your organisation see it)", True),
                                                 ("public", False)], default=draft.get("publish.private"))
        draft.set("publish.private", private)
        if not draft.hub.token:
            console.print("[yellow]Publishing needs a token with write access when the run ends "
                          "(HF_TOKEN or `hf auth login`).[/]")
        elif draft.hub.can_write is False:
            console.print("[yellow]This token is read-only: publishing will fail. Use a token with write access.[/]")


# ---------------------------------------------------------------- 7. monitoring

def step_tracking(console, draft: Draft) -> None:
    _step(console, 7, "Monitoring", "loss curves while it trains")
    backend, space = draft.get("tracking.backend"), draft.get("tracking.space_id")
    current = "space" if space else backend
    choices = [("trackio, local (a dashboard on this machine: `trackio show`)", "trackio"),
               ("a private trackio Space on the Hub (needs a token with write access)", "space"),
               ("none", "none")]
    if current not in ("trackio", "space", "none"):
        choices.insert(0, (current, current))
    choice = prompts.select("Monitoring:", choices, default=current)
    if choice == "space":
        user = draft.hub.username
        space = prompts.text("trackio Space id:", lambda s: checks.parse_repo_id(s, "The Space id"),
                             default=space or (f"{user}/trackio" if user else ""), instruction="(user/name)")
        draft.set("tracking.backend", "trackio")
        draft.set("tracking.space_id", space)
    else:
        draft.set("tracking.backend", choice)
        draft.set("tracking.space_id", None)


# ---------------------------------------------------------------- 8. model card

def _keep_or_ask(message: str, parse, existing: str | None, instruction: str) -> Any:
    """A one-line prompt; a multi-line value (from a file) is kept when the answer is empty."""
    if existing and "\n" in existing:
        lines = existing.count("\n") + 1
        value = prompts.text(message, parse, instruction=f"(Enter keeps the current {lines}-line text)")
        return value if value else existing
    return prompts.text(message, parse, default=existing or "", instruction=instruction)


def _license(console, draft: Draft) -> None:
    from smolforge.card.licenses import base_model_license

    default = draft.default_license()
    if not default:
        console.print("[yellow]The base model's license is not known offline: choose the one that applies.[/]")
    base = draft.get("model.license") or base_model_license(draft.get("model.name_or_path"))
    choices = [(f"{default} (the base model's)" if default == base else f"{default} (default)", default)] \
        if default else []
    choices += [(lid, lid) for lid in COMMON_LICENSES if lid != default]
    choices += [("other: a custom license (name and link)", "other"), ("type a Hub license id...", OTHER)]
    lid = prompts.select("License:", choices, default=default or "apache-2.0")
    if lid == OTHER:
        lid = prompts.text("License id:", checks.parse_license, instruction="(as on the Hub, e.g. bsd-3-clause)")
    name = link = None
    if lid == "other":
        name = prompts.text("License name:", checks.parse_license_name, default=draft.get("card.license_name") or "",
                            instruction="(e.g. my-license-1.0)")
        link = prompts.text("License link:", checks.parse_license_link, default=draft.get("card.license_link") or "",
                            instruction="(a URL, or LICENSE for a file you publish)")
    draft.set("card.license", lid)
    draft.set("card.license_name", name)
    draft.set("card.license_link", link)


def step_card(console, draft: Draft) -> None:
    _step(console, 8, "Model card", "what people read on the model page")
    author = prompts.text("Author name:", lambda s: s.strip() or None, default=draft.default_author() or "",
                          instruction="(for the card and the citation)")
    draft.set("card.author_name", author)
    draft.set("card.model_description", _keep_or_ask(
        "Model description:", lambda s: checks.parse_required_text(s, "The description"),
        draft.default_description(), "(one or two sentences; @FILE reads a file)"))
    _license(console, draft)
    draft.set("card.tags", prompts.text("Tags:", checks.parse_tags, default=", ".join(draft.get("card.tags") or []),
                                        instruction="(comma-separated, optional)"))
    usages = list(draft.get("card.usage_examples") or [])
    usage = _keep_or_ask("Usage example:", lambda s: checks.parse_text_or_file(s, "Usage example"),
                         usages[0] if usages else None, "(optional; @FILE reads a file)")
    draft.set("card.usage_examples", ([usage] if usage else []) + usages[1:])
    draft.set("card.limitations", _keep_or_ask(
        "Limitations:", lambda s: checks.parse_text_or_file(s, "Limitations"), draft.get("card.limitations"),
        "(optional; @FILE reads a file)"))


# ---------------------------------------------------------------- 9. outputs

def cuda_present() -> bool:
    """A cheap look for an NVIDIA driver (importing torch here would cost seconds)."""
    return bool(shutil.which("nvidia-smi")) or os.path.exists("/proc/driver/nvidia/version")


def step_outputs(console, draft: Draft) -> None:
    _step(console, 9, "Extras", "quantized copies and a demo app")
    no_gpu = None if cuda_present() else "int4 needs a CUDA GPU; none found here (add it to the YAML on a GPU machine)"
    options = {"none": [], "int8": ["int8"], "int4": ["int4"], "int8+int4": ["int8", "int4"]}
    current = "+".join(draft.get("quantize") or []) or "none"
    choice = prompts.select("Quantized variants:", [
        ("none", "none"), ("int8 (weight-only: about half the size; CPU and GPU)", "int8"),
        ("int4 (weight-only: about a quarter of the size; CUDA GPU)", "int4"), ("int8 and int4", "int8+int4")],
        default=current, disabled={"int4": no_gpu, "int8+int4": no_gpu} if no_gpu else None)
    draft.set("quantize", options[choice])
    repo = draft.get("publish.repo_id")
    demo = None
    if repo:
        existing = draft.get("publish.demo_space")
        if prompts.confirm("Publish a demo app (a Gradio Space) for the model?", default=bool(existing)):
            demo = prompts.text("Demo Space id:", lambda s: checks.parse_repo_id(s, "The Space id"),
                                default=existing or f"{repo}-demo", instruction="(user/name)")
    draft.set("publish.demo_space", demo)


# ---------------------------------------------------------------- 10. summary and confirm

def step_confirm(console, draft: Draft, output: Path) -> Outcome:
    from smolforge.wizard.summary import table
    from smolforge.wizard.yamlout import write_config

    cfg = draft.config()
    _step(console, 10, "Summary", "nothing has been written yet")
    console.print(table(cfg, draft.hub, draft.dataset_note, str(output)))
    verb = "Replace" if output.exists() else "Write"
    action = prompts.select("Write the config?", [(f"{verb} {output}", "write"),
                                                  (f"{verb} {output} and start training now", "run"),
                                                  ("Cancel: write nothing", "cancel")], default="write")
    if action == "cancel":
        raise KeyboardInterrupt
    write_config(output, cfg, draft.preset, draft.preset_data)
    console.print(f"Config written: [bold]{esc(str(output))}[/]. Train it with: smolforge run {esc(str(output))}")
    stored = False
    if draft.hub.store and draft.hub.token:
        from smolforge.wizard.hub import store_token

        try:
            store_token(draft.hub.token)
            stored = True
            console.print("Token stored in the huggingface_hub login cache.")
        except Exception as e:  # the config is written; storing is a convenience
            console.print(f"[yellow]The token could not be stored ({type(e).__name__}); set HF_TOKEN instead.[/]")
    typed = draft.hub.token if draft.hub.typed and not stored else None
    return Outcome(output, action == "run", typed)


def run_wizard(console, flags: InitFlags, output: Path) -> Outcome:
    access = step_hub(console)
    draft = step_model(console, flags)
    draft.hub = access
    draft = step_trainer(console, draft, flags)
    step_dataset(console, draft, access.online)
    step_training(console, draft)
    step_naming(console, draft)
    step_tracking(console, draft)
    step_card(console, draft)
    step_outputs(console, draft)
    return step_confirm(console, draft, output)
