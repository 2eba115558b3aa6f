"""The evaluation stage of a run: its base model and its fine-tune on the run's tasks, inside the run folder.

Reads only the run folder (config, model/, quantized variants) and the run's data; writes
`evaluation/` (per-item results, summary) and results.json's `evaluation` section, then the card.
`smolforge run` calls it when `evaluation.tasks` is set; `smolforge evaluate RUN_DIR` runs it alone,
later or on a bigger machine.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from smolforge.config import SmolforgeConfig
from smolforge.config.outputs import HELD_OUT_TASK
from smolforge.data import apply_length_filters, completion_room, prepare
from smolforge.errors import SmolforgeError
from smolforge.evaluation import ModelRef, evaluate_models, heldout
from smolforge.evaluation.contamination import row_text
from smolforge.evaluation.quiet import quiet
from smolforge.evaluation.tasks import TaskResolver
from smolforge.modelio import load_model, load_saved, load_tokenizer, merged_model_folder, model_source
from smolforge.runfolder import RunFolder, scratch_dir
from smolforge.runtime import for_inference


def _models(run: RunFolder, cfg: SmolforgeConfig, rt, workdir: Path) -> dict[str, Any]:
    """The models compared, each loaded the way every stage loads models (modelio), one at a time."""
    source = model_source(cfg)
    tuned = merged_model_folder(run, cfg, workdir, rt)  # a LoRA run's adapter merged into its base
    models: dict[str, Any] = {
        "base": ModelRef(source, cfg.model.revision, loader=lambda: load_model(cfg, source, rt)),
        "tuned": ModelRef(str(tuned), loader=lambda: load_saved(tuned, rt)),
    }
    for name, entry in (run.read_results().get("quantized") or {}).items():
        folder = run.root / entry["path"] if isinstance(entry, dict) and entry.get("path") else None
        if isinstance(entry, dict) and entry.get("format") == "gguf":
            continue  # llama.cpp files: the GGUF stage measures them against this model instead
        if folder is not None and folder.is_dir():
            models[name] = ModelRef(str(folder), loader=lambda f=folder: load_saved(f, rt))
    return models


def check_tasks(cfg: SmolforgeConfig, eval_rows: Iterable[dict] | None = None):
    """Resolve the tasks before anything is loaded or written: an unknown name or a malformed task file fails
    here, and so does `held-out` without a held-out prompt to ask when the run's `eval_rows` are given. Returns the
    resolver, which keeps lm-eval's task index for the evaluation itself."""
    settings = cfg.evaluation
    if not settings.tasks:
        raise SmolforgeError("evaluation.tasks: no tasks to run. Name them with --tasks (e.g. --tasks builtin, a "
                             "registry name such as arc_easy, or a path to an lm-eval task YAML), or set "
                             "evaluation.tasks in the config.")
    if HELD_OUT_TASK in settings.tasks and eval_rows is not None:
        heldout.build([dict(r) for r in eval_rows], cfg.training.grpo.max_completion_length)  # rows read only here
    resolver = TaskResolver()
    with quiet():  # `held-out` is written from the run's data when the evaluation starts (see evaluate_run)
        resolver.resolve([t for t in settings.tasks if t != HELD_OUT_TASK], settings.limit)
    return resolver


def evaluate_run(run: RunFolder, cfg: SmolforgeConfig, console, resolver=None) -> dict[str, Any]:
    """Compare base and fine-tune on `cfg.evaluation`; record the summary in results.json and return it."""
    settings = cfg.evaluation
    resolver = resolver or check_tasks(cfg)
    rt = for_inference()
    data = prepare(cfg.data, cfg.training.method)
    tokenizer = load_tokenizer(cfg, str(run.model_dir), needs_markers=data.kind != "text")
    apply_length_filters(data, tokenizer, cfg.data, cfg.training.max_length, completion_room(cfg))
    eval_rows = [dict(r) for r in data.eval] if data.eval is not None else []
    task_files, notes = {}, []
    with scratch_dir(run.root, ".evaluation-work-") as work:
        if HELD_OUT_TASK in settings.tasks:
            held_out = heldout.build(eval_rows, cfg.training.grpo.max_completion_length)
            resolver.held_out = held_out.write(work / heldout.FOLDER)
            task_files = {f"{heldout.FOLDER}/{name}": text for name, text in held_out.files.items()}
            notes = held_out.notes()
        summary = evaluate_models(_models(run, cfg, rt, work), tokenizer, settings, run.evaluation_dir,
                                  train_texts=(row_text(dict(r)) for r in data.train), eval_rows=eval_rows,
                                  console=console, resolver=resolver, task_files=task_files, notes=notes)
    run.update_results(evaluation=summary)
    return summary
