"""One comparison row per task and mode: reference (the base) vs candidate (the fine-tune).

Items are paired by id, and the pairing is checked: both runs must have scored exactly the same
items, in the same order, from the same prompts, or the comparison is refused (that would be a
bug, not a finding). The row carries both scores, the difference, its paired bootstrap CI, an
exact paired test, and which items flipped between right and wrong.
"""

from __future__ import annotations

from smolforge.evaluation.harness import TaskRun
from smolforge.evaluation.stats import compare_paired
from smolforge.evaluation.tasks import EvalTask

MAX_LISTED = 50


def _no_answer_share(run: TaskRun) -> float:
    return sum(1 for i in run.items if i.no_answer) / len(run.items) if run.items else 0.0


def flips(ref: TaskRun, cand: TaskRun) -> dict[str, list[str]]:
    """Item ids the candidate got right where the reference was wrong (`to_correct`), and the reverse."""
    out: dict[str, list[str]] = {"to_correct": [], "to_wrong": []}
    for r, c in zip(ref.items, cand.items, strict=True):
        if r.score is None or c.score is None or r.score == c.score:
            continue
        out["to_correct" if c.score > r.score else "to_wrong"].append(r.id)
    return out


def check_paired(ref: TaskRun, cand: TaskRun) -> bool:
    """Raise unless both runs scored the same items in the same order; return whether prompts matched too."""
    ref_ids, cand_ids = [i.id for i in ref.items], [i.id for i in cand.items]
    if ref_ids != cand_ids:
        raise RuntimeError(f"{ref.task} ({ref.mode}): the two models were scored on different items "
                           f"({len(ref_ids)} vs {len(cand_ids)}); refusing to compare them")
    return all(r.prompt_hash == c.prompt_hash for r, c in zip(ref.items, cand.items, strict=True))


def compare(et: EvalTask, ref: TaskRun, cand: TaskRun, ref_name: str, cand_name: str, resamples: int,
            seed: int) -> dict:
    """The comparison row for one task in one mode (a failed run gives a row with its error)."""
    config = getattr(et.task, "config", None)
    row: dict = {"task": et.name, "mode": ref.mode, "metric": et.metric, "shots": cand.shots, "n": et.n_items,
                 "chance": getattr(et, "chance", None), "output_type": getattr(et, "output_type", None),
                 "dataset_path": getattr(config, "dataset_path", None),
                 "dataset_name": getattr(config, "dataset_name", None),
                 "reference": ref_name, "candidate": cand_name, ref_name: ref.score, cand_name: cand.score,
                 "delta": None, "ci_low": None, "ci_high": None, "p_value": None, "test": None,
                 "flipped": None, "flipped_items": None, "same_prompts": None, "status": "ok"}
    higher = et.task.higher_is_better().get(et.metric)
    row["higher_is_better"] = higher if isinstance(higher, bool) else None
    errors = {name: run.error for name, run in ((ref_name, ref), (cand_name, cand)) if run.error}
    if errors:
        row.update(status="error", error=errors)
        return row
    row["same_prompts"] = check_paired(ref, cand)
    row["other_metrics"] = {ref_name: ref.metrics, cand_name: cand.metrics}
    row["no_answer_share"] = {ref_name: _no_answer_share(ref), cand_name: _no_answer_share(cand)}
    unanswerable = [name for name, share in row["no_answer_share"].items() if share == 1.0]
    if unanswerable and et.filter != "none":  # the task wants an answer format these models never produced
        row["format_problem"] = (f"{' and '.join(unanswerable)} never produced an answer in the format "
                                 f"{et.name} extracts; its score there is 0 by format, not by knowledge")
        row["unanswered"] = {"models": unanswerable, "why": "format"}
    elif unanswerable:  # nothing to extract: the models wrote nothing at all
        row["format_problem"] = f"{' and '.join(unanswerable)} generated only empty answers on {et.name}"
        row["unanswered"] = {"models": unanswerable, "why": "empty"}
    ref_scores, cand_scores = [i.score for i in ref.items], [i.score for i in cand.items]
    if not ref.items or any(s is None for s in ref_scores + cand_scores):
        if ref.score is not None and cand.score is not None:
            row["delta"] = cand.score - ref.score
        row["note"] = f"{et.metric} has no per-item score in lm-eval: no paired interval or test"
        return row
    cmp = compare_paired(ref_scores, cand_scores, resamples, seed)
    flipped = flips(ref, cand)
    row.update(delta=cmp.delta, ci_low=cmp.ci_low, ci_high=cmp.ci_high, p_value=cmp.p_value, test=cmp.test,
               interval=cmp.interval, changed=cmp.candidate_only + cmp.reference_only,
               flipped={k: len(v) for k, v in flipped.items()},
               flipped_items={k: v[:MAX_LISTED] for k, v in flipped.items()},
               families=families(ref, cand, ref_name, cand_name))
    return row


def _family(item_id: str) -> str | None:
    head, sep, _ = item_id.partition("-")
    return head if sep and head.isalpha() else None


def families(ref: TaskRun, cand: TaskRun, ref_name: str, cand_name: str) -> list[dict] | None:
    """Scores by item family, where the items' ids name one (`count-river`, `spell-window`: family `count`, `spell`):
    a task's mean can hide that a model gets one kind of item by luck and another never. None when the ids name no
    families (fewer than two, or about one item each)."""
    names = [_family(i.id) for i in ref.items]
    if any(n is None for n in names) or len(set(names)) < 2 or len(set(names)) > len(names) / 2:
        return None
    out = []
    for name in dict.fromkeys(names):
        pairs = [(r.score, c.score) for r, c, f in zip(ref.items, cand.items, names, strict=True) if f == name]
        out.append({"family": name, "n": len(pairs), ref_name: sum(p[0] for p in pairs) / len(pairs),
                    cand_name: sum(p[1] for p in pairs) / len(pairs)})
    return out


def item_rows(ref: TaskRun, cand: TaskRun, ref_name: str, cand_name: str) -> list[dict]:
    """Per-item lines for items/<task>.<mode>.jsonl: both answers side by side and the flip, if any."""
    rows = []
    for r, c in zip(ref.items, cand.items, strict=True):
        flip = None
        if r.score is not None and c.score is not None and r.score != c.score:
            flip = "to_correct" if c.score > r.score else "to_wrong"
        rows.append({"id": r.id, "target": r.target,
                     ref_name: {"answer": r.answer, "score": r.score, "correct": r.correct,
                                "prompt_hash": r.prompt_hash},
                     cand_name: {"answer": c.answer, "score": c.score, "correct": c.correct,
                                 "prompt_hash": c.prompt_hash},
                     "flip": flip})
    return rows
