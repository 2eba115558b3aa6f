"""Assemble the evaluation's summary (results.json's `evaluation` section) and its files."""

from __future__ import annotations

from importlib.metadata import version
from typing import Any

from smolforge.config import EvaluationSection
from smolforge.evaluation import samples as sample_gen
from smolforge.evaluation import thinking
from smolforge.evaluation.compare import compare, item_rows
from smolforge.evaluation.model_pass import ModelOutcome
from smolforge.evaluation.models import BASE, TUNED
from smolforge.evaluation.output import SUMMARY, jsonl, safe_name
from smolforge.evaluation.tasks import EvalTask


def harness_info() -> dict:
    return {"name": "lm-evaluation-harness", "package": "lm_eval", "version": version("lm_eval")}


def comparisons(tasks: list[EvalTask], outcomes: dict[str, ModelOutcome], modes: list[str],
                settings: EvaluationSection) -> tuple[list[dict], list[dict], dict[str, str]]:
    """Rows base->tuned and tuned->variant, plus the per-item JSONL files (relative path -> text)."""
    rows, variant_rows, files = [], [], {}
    pairs = [(BASE, TUNED)] + [(TUNED, v) for v in outcomes if v not in (BASE, TUNED)]
    for ref, cand in pairs:
        for mode in modes:
            for et in tasks:
                key = (et.name, mode)
                if key not in outcomes[ref].runs or key not in outcomes[cand].runs:
                    continue
                r, c = outcomes[ref].runs[key], outcomes[cand].runs[key]
                row = compare(et, r, c, ref, cand, settings.bootstrap_resamples, settings.seed)
                (rows if ref == BASE else variant_rows).append(row)
                if row["status"] == "ok":
                    suffix = "" if ref == BASE else f".{safe_name(cand)}"
                    path = f"items/{safe_name(et.name)}.{mode}{suffix}.jsonl"
                    files[path] = jsonl(item_rows(r, c, ref, cand))
                    row["items_file"] = path
    return rows, variant_rows, files


def retention_section(outcomes: dict[str, ModelOutcome], prompts: list[str], thinking_ok: bool,
                      n_wanted: int) -> tuple[dict, str | None]:
    base, tuned = outcomes[BASE].retention, outcomes[TUNED].retention
    if not thinking_ok:
        return {"skipped": "the chat template has no reasoning switch (enable_thinking)"}, None
    if not n_wanted or base is None or tuned is None:
        return {"skipped": "evaluation.retention_prompts is 0"}, None
    return thinking.report(prompts, base, tuned), jsonl(thinking.raw_rows(prompts, base, tuned))


def samples_section(outcomes: dict[str, ModelOutcome], picked: list, mode: str) -> list[dict]:
    if not picked or outcomes[BASE].samples is None or outcomes[TUNED].samples is None:
        return []
    return sample_gen.table(picked, mode, {BASE: outcomes[BASE].samples, TUNED: outcomes[TUNED].samples})


def _fmt(v: Any, digits: int = 3) -> str:
    return "n/a" if v is None else f"{v:.{digits}f}" if isinstance(v, float) else str(v)


def console_lines(summary: dict) -> list[str]:
    """A short human summary: one line per comparison, and the flags that need attention."""
    lines = []
    for row in summary["results"] + summary["variants"]:
        ref, cand = row["reference"], row["candidate"]
        head = f"{row['task']} ({row['mode']}, {row['shots']}-shot, n={row['n']}) {row['metric']}"
        if row["status"] != "ok":
            lines.append(f"  {head}: not compared ({row['error']})")
            continue
        if row.get("changed") == 0:
            ci = ", no item changed"
        elif row["ci_low"] is not None:
            ci = f", 95% CI [{row['ci_low']:+.3f}, {row['ci_high']:+.3f}], p={row['p_value']:.3g}"
        else:
            ci = ""
        if row.get("chance") is not None:
            head += f" (chance {row['chance']:.2f})"
        delta = f"{row['delta']:+.3f}" if row["delta"] is not None else "n/a"
        lines.append(f"  {head}: {ref} {_fmt(row[ref])} -> {cand} {_fmt(row[cand])} (delta {delta}{ci})")
        if row.get("format_problem"):
            lines.append(f"    note: {row['format_problem']}")
    ret = summary.get("retention") or {}
    if ret.get("lost_think"):
        lines.append("  warning: the fine-tune lost /think: fewer well-formed <think>...</think> answers than its base")
    if ret.get("leaks_reasoning"):
        lines.append("  warning: the fine-tune reasons in /no_think mode where its base did not")
    unclosed = ((ret.get("modes") or {}).get("think") or {}).get("unclosed_share") or {}
    if any(unclosed.values()):
        lines.append("  note: some /think answers hit the token cap before </think>; raise evaluation.max_gen_tokens")
    for task, row in ((summary.get("contamination") or {}).get("tasks") or {}).items():
        if row["overlapping"]:
            lines.append(f"  contamination: {row['overlapping']}/{row['items']} items of {task} share a 13-gram "
                         "with the training data")
    return lines


def file_index(files: dict[str, str]) -> dict:
    return {"summary": SUMMARY, "items": sorted(f for f in files if f.startswith("items/")),
            "retention": "retention.jsonl" if "retention.jsonl" in files else None}
