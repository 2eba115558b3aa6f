"""The interactive steps of `smolforge init`, in the order a person thinks about a run.

Each step reads its defaults from the draft (preset + flags + earlier answers) and writes its
answers back; nothing touches the disk or the token cache until the final confirm. The settings
a step asks are listed in the step's list below: adding a setting to a list is all it takes for
the wizard to ask it (prompt, default and check come from its declaration) and for the summary
to show it.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from rich.markup import escape as esc

from smolforge import presets
from smolforge.card import defaults
from smolforge.card.licenses import base_model_license
from smolforge.config import DataSection
from smolforge.config.loading import preset_dump
from smolforge.config.outputs import HELD_OUT_TASK
from smolforge.data import DEFAULT_FIELDS, FORMAT_HELP, REQUIRED_ROLES, check_method_fits, is_local_source
from smolforge.errors import DataError
from smolforge.wizard import checks, prompts
from smolforge.wizard.ask import ask
from smolforge.wizard.datapeek import peek, show_row
from smolforge.wizard.draft import (
    CARD_STEP,
    DEFAULT_MODEL,
    NAMING_STEP,
    TRAINER_STEP,
    TRAINING_STEP,
    Draft,
    Outcome,
    preset_for_model,
)
from smolforge.wizard.hub import step_hub, store_token
from smolforge.wizard.summary import table
from smolforge.wizard.yamlout import write_config

OTHER = "__other__"
COMMON_LICENSES = ["apache-2.0", "mit", "cc-by-4.0", "cc-by-sa-4.0", "cc-by-nc-4.0", "llama3.2", "gemma", "openrail"]
NO_COLUMN = "__none__"

def cuda_present() -> bool:
    """A cheap look for an NVIDIA driver (importing torch here would cost seconds)."""
    return bool(shutil.which("nvidia-smi")) or os.path.exists("/proc/driver/nvidia/version")


def default_model(online: bool) -> tuple[str, str | None]:
    """(the model to offer first, why when it is not SmolLM3-3B): without a GPU and without the Hub, SmolLM3-3B
    can neither be downloaded nor trained here, so the locally built tiny model is the one that runs."""
    if not online and not cuda_present():
        return "tiny", "no GPU and no Hub here: the tiny model is offered first (SmolLM3-3B needs both)"
    return DEFAULT_MODEL, None


# ---------------------------------------------------------------- 2. base model and preset

def _preset_line(name: str) -> tuple[str, str]:
    p = preset_dump(name)
    t, d = p["training"], p["data"]
    values = (f"{t['method'].upper()} {t['finetune']} · {d['name']} · batch {t['batch_size']}x"
              f"{t['gradient_accumulation_steps']} · lr {t['learning_rate']:g} · max length {t['max_length']}")
    return f"{name}: {presets.description(name)}", values


def step_model(console, preset: str | None, flags: dict[str, Any], sets: list[str], online: bool) -> Draft:
    prompts.step(console, 2, "Base model and preset", "the preset supplies every value you do not change")
    first, why = default_model(online)
    if why and not preset and "model.name_or_path" not in flags:
        console.print(f"[yellow]{esc(why)}.[/]")
    current = flags.get("model.name_or_path") or (preset_dump(preset)["model"]["name_or_path"] if preset else first)
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
    default = preset if preset and (preset in fitting or not fitting) else preset_for_model(model)
    lines = {n: _preset_line(n) for n in ordered}
    chosen = prompts.select("Preset:", [(lines[n][0], n, lines[n][1]) for n in ordered], default=default)
    return Draft.build(chosen, flags, sets, model=model)


# ---------------------------------------------------------------- 3. trainer

def _preset_with(model: str, method: str, finetune: str) -> str | None:
    """The preset made for this model, method and weights; the one named after the method first
    (smollm3-dpo before smollm3-apo, a DPO preset with a special loss)."""
    found = []
    for name in presets.names():
        p = preset_dump(name)
        if p["model"]["name_or_path"] == model and (p["training"]["method"], p["training"]["finetune"]) == \
                (method, finetune):
            found.append(name)
    return min(found, key=lambda name: (not name.endswith(f"-{method}"), name), default=None)


def step_trainer(console, draft: Draft, flags: dict[str, Any], sets: list[str]) -> Draft:
    """Method and weights; offers the preset made for that pair when there is one for this model."""
    prompts.step(console, 3, "Trainer", "what the model learns from, and which weights change")
    for path in TRAINER_STEP:
        ask(draft, path)
    method, finetune = draft.get("training.method"), draft.get("training.finetune")
    if (method, finetune) != (draft.preset_data["training"]["method"], draft.preset_data["training"]["finetune"]):
        better = _preset_with(draft.get("model.name_or_path"), method, finetune)
        if better and prompts.confirm(f"The {better} preset is made for {method.upper()} {finetune} (its data and "
                                      f"learning rate). Switch to it?", default=True):
            switched = Draft.build(better, flags, sets, model=draft.get("model.name_or_path"))
            switched.hub = draft.hub
            switched.set("training.method", method)
            switched.set("training.finetune", finetune)
            return switched
    return draft


# ---------------------------------------------------------------- 4. dataset

def _map_fields(console, draft: Draft, columns: list[str]) -> None:
    console.print(f"[dim]Formats: {esc(FORMAT_HELP)}.[/]")
    method = draft.get("training.method")
    own = {"dpo": "preference", "grpo": "prompt_answer"}.get(method)  # DPO and GRPO each read one format
    formats = [own] if own else [f for f in DEFAULT_FIELDS if f not in ("preference", "prompt_answer")]
    fmt = prompts.select("Which format is it?", [(f, f) for f in formats], default=formats[0])
    mapping = {}
    for role, usual in DEFAULT_FIELDS[fmt].items():
        required = role in REQUIRED_ROLES[fmt]
        options = [(c, c) for c in columns] + ([] if required else [("(none)", NO_COLUMN)])
        default = usual if usual in columns else options[0][1]
        col = prompts.select(f"Column for `{role}`{'' if required else ' (optional)'}:", options, default=default)
        if col != NO_COLUMN:
            mapping[role] = col
    draft.set("data.format", fmt)
    draft.set("data.fields", mapping)


def _fits_method(console, draft: Draft, peeked) -> bool:
    try:
        check_method_fits(draft.get("training.method"), peeked.kind, peeked.format, peeked.columns)
    except DataError as e:
        console.print(f"[red]{esc(str(e))}[/]")
        return False
    return True


def step_dataset(console, draft: Draft, online: bool) -> None:
    prompts.step(console, 4, "Dataset", "checked now, so a wrong column fails here and not after the model loads")
    method = draft.get("training.method")
    dpo_without_pairs = method == "dpo" and draft.get("data.name") == "builtin"
    if method == "grpo" and draft.get("data.name") == "builtin":  # the bundled chats have no answers to check
        draft.set("data.name", "builtin-prompts")
    while True:
        hint = "; DPO needs preference pairs, e.g. HuggingFaceH4/ultrafeedback_binarized" if dpo_without_pairs else \
            ("; GRPO needs prompts with answers, e.g. openai/gsm8k or builtin-prompts" if method == "grpo" else "")
        name = prompts.text("Dataset:", checks.parse_dataset,
                            default="" if dpo_without_pairs else draft.get("data.name"),
                            instruction=f"(Hub id, local .jsonl/.json/.csv/.parquet file or folder, or builtin{hint})")
        draft.set("data.name", name)
        local = is_local_source(name)
        if not local:
            ask(draft, "data.config")
        if not local and not online:
            draft.dataset_note = "format detected at run time"
            console.print("Offline: the dataset's format is detected when the run starts.")
            break
        console.print("Reading a few rows...")
        result = peek(DataSection.model_validate(draft.get("data")), online, method)
        if result.unread:
            console.print(f"[red]Cannot read this dataset: {esc(result.unread)}[/]")
            continue
        if result.problem:
            console.print(f"[yellow]The format could not be detected from the columns: "
                          f"{esc(', '.join(result.columns) or '(none)')}. Map them below.[/]")
            _map_fields(console, draft, result.columns)
            result = peek(DataSection.model_validate(draft.get("data")), online, method)
            if result.problem or result.unread:
                console.print(f"[red]{esc(result.problem or result.unread or '')}[/]")
                continue
        if not _fits_method(console, draft, result):
            continue
        mapping = ", ".join(f"{role} <- {col}" for role, col in result.fields.items())
        console.print(f"Detected format: [bold]{result.format}[/] ({esc(mapping)}); columns: "
                      f"{esc(', '.join(result.columns))}")
        for i, row in enumerate(result.rows[:2], 1):
            console.print(f"  row {i}: {show_row(row)}", markup=False)
        draft.dataset_note = f"{result.format} format"
        break
    ask(draft, "data.max_samples")


# ---------------------------------------------------------------- 5. training parameters

def step_training(console, draft: Draft) -> None:
    prompts.step(console, 5, "Training parameters", "defaults are the preset's values")
    steps = draft.get("training.max_steps")
    by = prompts.select("Train for:", [("a number of epochs (passes over the data)", "epochs"),
                                       ("a fixed number of optimizer steps", "steps")],
                        default="steps" if steps > 0 else "epochs")
    for path in TRAINING_STEP:
        if path == "training.epochs" and by == "epochs":
            ask(draft, path)  # its flag implies training.max_steps -1: train for epochs
        elif path == "training.max_steps" and by == "steps":
            ask(draft, path, default=steps if steps > 0 else 1000)
        elif path not in ("training.epochs", "training.max_steps"):
            ask(draft, path)


# ---------------------------------------------------------------- 6. names and publishing

def step_naming(console, draft: Draft) -> None:
    prompts.step(console, 6, "Experiment and repository", "the run folder is runs/<experiment>")
    derived = {"experiment_name": draft.default_experiment_name, "publish.repo_id": draft.default_repo_id}
    for path in NAMING_STEP:
        if path == "publish.private" and not draft.get("publish.repo_id"):
            continue
        ask(draft, path, default=derived[path]() if path in derived else None,
            instruction="user/name; empty keeps the model local" if path == "publish.repo_id" else None)
    if draft.get("publish.repo_id"):
        if not draft.hub.token:
            console.print("[yellow]Publishing needs a token with write access when the run ends "
                          "(HF_TOKEN or `hf auth login`).[/]")
        elif draft.hub.can_write is False:
            console.print("[yellow]This token is read-only: publishing will fail. Use a token with write access.[/]")


# ---------------------------------------------------------------- 7. monitoring

def step_tracking(console, draft: Draft) -> None:
    prompts.step(console, 7, "Monitoring", "loss curves while it trains")
    backend, space = draft.get("tracking.backend"), draft.get("tracking.space_id")
    current = "space" if space else backend
    choices = [("trackio, local (a dashboard on this machine: `smolforge dashboard RUN_DIR`)", "trackio"),
               ("a private trackio Space on the Hub (needs a token with write access)", "space"),
               ("none", "none")]
    if current not in ("trackio", "space", "none"):
        choices.insert(0, (current, current))
    choice = prompts.select("Monitoring:", choices, default=current)
    if choice == "space":
        user = draft.hub.username
        draft.set("tracking.backend", "trackio")
        ask(draft, "tracking.space_id", default=space or (f"{user}/trackio" if user else None),
            instruction="user/name")
    else:
        draft.set("tracking.backend", choice)
        draft.set("tracking.space_id", None)


# ---------------------------------------------------------------- 8. model card

def _license(console, draft: Draft) -> None:
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
    draft.set("card.license_name", None)
    draft.set("card.license_link", None)
    if lid == "other":
        ask(draft, "card.license_name", instruction="e.g. my-license-1.0")
        ask(draft, "card.license_link", instruction="a URL, or LICENSE for a file you publish")
    draft.set("card.license", lid)


def step_card(console, draft: Draft) -> None:
    prompts.step(console, 8, "Model card", "what people read on the model page")

    derived = {"card.author_name": draft.default_author, "card.model_description": draft.default_description,
               "card.intended_use": lambda: defaults.uses_text(draft.config(), "intended_use"),
               "card.out_of_scope": lambda: defaults.uses_text(draft.config(), "out_of_scope")}
    for path in CARD_STEP:
        if path == "card.license":
            _license(console, draft)
        else:
            ask(draft, path, default=derived[path]() if path in derived else None)


# ---------------------------------------------------------------- 9. outputs

def step_outputs(console, draft: Draft) -> None:
    prompts.step(console, 9, "Extras", "benchmarks against the base, quantized copies and a demo app")
    grpo = draft.get("training.method") == "grpo"
    held_out = f"{HELD_OUT_TASK} (the run's held-out prompts, scored by its accuracy reward), " if grpo else ""
    tasks = [t for t in draft.get("evaluation.tasks") or [] if grpo or t != HELD_OUT_TASK]  # held-out: GRPO only
    ask(draft, "evaluation.tasks", default=tasks or ([HELD_OUT_TASK] if grpo else []),
        instruction=f"{held_out}builtin (offline suite), lm-eval names such as arc_easy, or task YAML paths")
    no_gpu = None if cuda_present() else "int4 needs a CUDA GPU; none found here (add it to the YAML on a GPU machine)"
    options = {"none": [], "int8": ["int8"], "int4": ["int4"], "int8+int4": ["int8", "int4"]}
    current = "+".join(draft.get("quantize.methods") or []) or "none"
    choice = prompts.select("Quantized variants:", [
        ("none", "none"), ("int8 (weight-only: about half the size; CPU and GPU)", "int8"),
        ("int4 (weight-only: about a quarter of the size; CUDA GPU)", "int4"), ("int8 and int4", "int8+int4")],
        default=current, disabled={"int4": no_gpu, "int8+int4": no_gpu} if no_gpu else None)
    draft.set("quantize.methods", options[choice])
    repo = draft.get("publish.repo_id")
    demo = None
    if repo:
        existing = draft.get("publish.demo_space")
        if prompts.confirm("Publish a demo app (a Gradio Space) for the model?", default=bool(existing)):
            demo = ask(draft, "publish.demo_space", default=existing or f"{repo}-demo", instruction="user/name")
    draft.set("publish.demo_space", demo)


# ---------------------------------------------------------------- 10. summary and confirm

def step_confirm(console, draft: Draft, output: Path) -> Outcome:
    cfg = draft.config()
    prompts.step(console, 10, "Summary", "nothing has been written yet")
    console.print(table(cfg, draft, str(output)))
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
        try:
            store_token(draft.hub.token, online=draft.hub.online)
            stored = True
            console.print("Token stored in the huggingface_hub login cache: later runs find it.")
        except Exception as e:  # the config is written; storing is a convenience
            console.print(f"[yellow]The token could not be stored ({type(e).__name__}); set HF_TOKEN instead.[/]")
    typed = draft.hub.token if draft.hub.typed and not stored else None
    return Outcome(output, action == "run", typed)


def run_wizard(console, preset: str | None, flags: dict[str, Any], sets: list[str], output: Path) -> Outcome:
    access = step_hub(console)
    draft = step_model(console, preset, flags, sets, access.online)
    draft.hub = access
    draft = step_trainer(console, draft, flags, sets)
    step_dataset(console, draft, access.online)
    step_training(console, draft)
    step_naming(console, draft)
    step_tracking(console, draft)
    step_card(console, draft)
    step_outputs(console, draft)
    return step_confirm(console, draft, output)
