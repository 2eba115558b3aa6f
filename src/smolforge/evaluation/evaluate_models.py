"""Entry point: evaluate a base model and its fine-tune (and optionally quantized variants) the same way.

`evaluate_models` resolves the tasks once, prints the planned cost, loads each model in turn (one
in memory at a time), runs every task in every reasoning mode through lm-eval, compares the
fine-tune with its base item by item, adds the reasoning check, the contamination report and a
few sample answers, writes the `evaluation/` folder atomically and returns its summary.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from rich.console import Console

from smolforge.config import EvaluationSection
from smolforge.config.outputs import BUILTIN_SUITE
from smolforge.errors import SmolforgeError, first_line
from smolforge.evaluation import report
from smolforge.evaluation.cache import ResultCache, tokenizer_fingerprint
from smolforge.evaluation.contamination import report as contamination_report
from smolforge.evaluation.generation import has_chat_template, supports_thinking
from smolforge.evaluation.model_pass import Context, ModelOutcome, ModelPass
from smolforge.evaluation.models import BASE, TUNED, ModelRef, normalise
from smolforge.evaluation.output import SUMMARY, summary_text, write_folder
from smolforge.evaluation.plan import active_modes, make_plan
from smolforge.evaluation.progress import EvalProgress
from smolforge.evaluation.quiet import quiet
from smolforge.evaluation.samples import pick, split_row
from smolforge.evaluation.suite import GEN_TASK, SUITE_DIR
from smolforge.evaluation.tasks import TaskResolver, benchmark_items
from smolforge.modelio import release, weight_bytes

log = logging.getLogger("smolforge.evaluation")


def _load_tokenizer(tokenizer: Any) -> Any:
    if not isinstance(tokenizer, (str, Path)):
        return tokenizer
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(str(tokenizer))
    except OSError as e:
        raise SmolforgeError(f"evaluation: cannot load a tokenizer from {str(tokenizer)!r}: "
                             f"{first_line(e)}. Pass the fine-tune's folder (it holds the tokenizer and "
                             "chat template both models are prompted with).") from None


def retention_prompts(eval_rows: Sequence[dict], n: int) -> list[str]:
    """The first user turn of the first n eval rows, topped up from the bundled generative task's prompts."""
    prompts = []
    for row in eval_rows:
        pair = split_row(row)
        first = next((m.get("content") for m in pair[0] if m.get("role") == "user"), None) if pair else None
        if isinstance(first, str) and first.strip() and first not in prompts:
            prompts.append(first)
        if len(prompts) >= n:
            return prompts
    with open(SUITE_DIR / f"{GEN_TASK}.jsonl", encoding="utf-8") as f:
        for line in f:
            if len(prompts) >= n:
                break
            prompts.append(json.loads(line)["prompt"])
    return prompts


def evaluate_models(
    models: Mapping[str, ModelRef | str | Path],
    tokenizer: Any,
    settings: EvaluationSection,
    out_dir: Path,
    *,
    train_texts: Iterable[str] | None = None,
    eval_rows: Sequence[dict] = (),
    console: Console | None = None,
    cache: ResultCache | None = None,
    resolver: TaskResolver | None = None,
    task_files: Mapping[str, str] | None = None,
    notes: Sequence[str] = (),
) -> dict:
    """Evaluate `models["base"]` and `models["tuned"]` (plus any other entries, the quantized variants, when
    `settings.variants`) with one tokenizer and identical settings; write `out_dir` and return its summary.

    `tokenizer` is a loaded tokenizer or a folder/id to load it from (the fine-tune's, so both models see
    the same chat template). `train_texts` feeds the contamination report (None skips it; `row_text` turns
    dataset rows into texts); `eval_rows` (rows of the eval split: `messages`, or `prompt` + `completion`) feed
    the sample answers and the reasoning-check prompts. Raises `SmolforgeError` for bad input before any model
    loads; a task that fails inside the harness is reported in its row instead. `task_files` (relative path ->
    text) are task files smolforge wrote for this evaluation, kept in `out_dir` beside the results; `notes` are
    the caller's own notes for the summary.
    """
    started = time.perf_counter()
    console = console or Console(highlight=False)
    refs = normalise(models)
    notes = list(notes)
    if not settings.variants and len(refs) > 2:
        notes.append(f"quantized variants not evaluated ({', '.join(list(refs)[2:])}): evaluation.variants is off")
        refs = {k: refs[k] for k in (BASE, TUNED)}
    tok = _load_tokenizer(tokenizer)
    thinking_ok = supports_thinking(tok)
    modes = active_modes(settings, thinking_ok, notes)
    with quiet():
        tasks = (resolver or TaskResolver()).resolve(settings.tasks, settings.limit)
    notes += [t.note for t in tasks if t.note]
    if settings.num_fewshot:
        notes += [f"{t.name}: no few-shot split, so lm-eval draws the {settings.num_fewshot} examples from the "
                  "scored split itself" for t in tasks if t.fewshot_split is None]
    if not has_chat_template(tok):
        notes.append("the tokenizer has no chat template: prompts are plain text")
    if "think" in modes and settings.max_gen_tokens is None and any(t.kind != "held-out" for t in tasks):
        builtin = " (32 tokens for the builtin task)" if BUILTIN_SUITE in settings.tasks else ""
        notes.append(f"think mode keeps each task's own generation cap{builtin}, which reasoning usually exceeds; "
                     "set evaluation.max_gen_tokens")

    picked = pick(list(eval_rows), settings.samples)
    prompts = retention_prompts(eval_rows, settings.retention_prompts) if thinking_ok else []
    sample_mode = modes[0]
    generations = 2 * (len(picked) + 2 * len(prompts))
    plan = make_plan(list(refs), modes, tasks, generations)
    console.print(plan.headline(tasks), highlight=False, markup=False, soft_wrap=True)
    for note in notes:
        console.print(f"  note: {note}", highlight=False, markup=False, soft_wrap=True)

    outcomes: dict[str, ModelOutcome] = {}
    with EvalProgress(console, plan.scored_items) as progress:
        ctx = Context(tokenizer=tok, tokenizer_fp=tokenizer_fingerprint(tok), thinking=thinking_ok,
                      settings=settings, progress=progress, cache=cache or ResultCache(), retention_prompts=prompts,
                      picked_samples=picked, sample_mode=sample_mode)
        for name, ref in refs.items():
            progress.step(f"{name} · loading")
            t0 = time.perf_counter()
            with quiet():  # transformers' weight-loading bars would break the progress display
                model = ref.load()
            model_pass = ModelPass(name, ref, model, ctx)
            model_pass.run_steps([s for s in plan.steps if s.model == name])
            model_pass.generations()
            outcomes[name] = model_pass.finish()
            outcomes[name].info["seconds"] = round(time.perf_counter() - t0, 3)
            size = weight_bytes(model)
            del model, model_pass
            release(size)

    rows, variant_rows, files = report.comparisons(tasks, outcomes, modes, settings)
    retention, retention_file = report.retention_section(outcomes, prompts, thinking_ok, settings.retention_prompts)
    if retention_file:
        files["retention.jsonl"] = retention_file
    contamination = None
    if train_texts is not None:
        contamination = contamination_report(train_texts, benchmark_items(tasks))
    summary = {
        "harness": report.harness_info(),
        "settings": settings.model_dump(mode="json"),
        "models": {name: o.info for name, o in outcomes.items()},
        "chat_template": {"used": has_chat_template(tok), "thinking": thinking_ok},
        "plan": plan.describe(tasks),
        "tasks": [t.describe() for t in tasks],
        "results": rows,
        "variants": variant_rows,
        "skipped": plan.skipped,
        "retention": retention,
        "contamination": contamination,
        "samples": report.samples_section(outcomes, picked, sample_mode),
        "notes": notes,
        "files": {**report.file_index(files), "task_files": sorted(task_files or {})},
        "seconds": round(time.perf_counter() - started, 3),
    }
    files.update(task_files or {})
    files[SUMMARY] = summary_text(summary)
    write_folder(Path(out_dir), files)
    for line in report.console_lines(summary) + [f"Evaluation written to {out_dir}"]:
        console.print(line, highlight=False, markup=False, soft_wrap=True)
    return summary
