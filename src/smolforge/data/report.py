"""The data report: what training will see, written before it starts (`data_report.json`, the console, the card).

Rows read and kept, dropped by reason (duplicates, unusable rows, rows the chat template loses content of, token
lengths), rows cut by training.max_length and the tokens that costs, tokens with and without loss, turns per row,
the reasoning-mode balance, tool-calling rows and the longest rows. Built from the same pass that checks each row
with the chat template (`lengths.apply_length_filters`), so the numbers are those of the rows that train.
"""

from __future__ import annotations

import statistics
from collections import Counter
from typing import Any, NamedTuple

from smolforge.data.dedup import COPY_OF_TRAINING, DUPLICATE
from smolforge.data.survival import LostRow, excerpt, template_reasons
from smolforge.errors import DataError

AUTO_LOSS_SHARE = 0.01  # data.on_template_loss: auto drops up to this share of the training rows, stops above it
NAMED_ROWS = 3  # rows a message names


class RowFacts(NamedTuple):
    index: int  # in the file
    turns: int
    think: bool | None  # the row's reasoning mode (None: no reasoning switch, plain text)
    tools: bool  # tool definitions, tool calls or tool results
    excerpt: str


def row_facts(row: dict, position: int) -> RowFacts:
    turns = [*(row.get("messages") or []), *(row.get("prompt") or []), *(row.get("completion") or []),
             *(row.get("chosen") or [])]
    kw = row.get("chat_template_kwargs") or {}
    tools = bool(row.get("tools")) or any(t.get("tool_calls") or t.get("role") == "tool" for t in turns)
    return RowFacts(row.get("_smolforge_row", position), len(turns), kw.get("enable_thinking"), tools, excerpt(row))


def _named(rows: list[LostRow]) -> str:
    shown = "; ".join(f"row {r.index} ({r.excerpt!r}): {r.why}" for r in rows[:NAMED_ROWS])
    return shown + (f"; and {len(rows) - NAMED_ROWS:,} more" if len(rows) > NAMED_ROWS else "")


def refuse_template_loss(lost: dict[str, list[LostRow]], setting: str, train_rows: int) -> None:
    """Stop the run (DataError) when data.on_template_loss says so; otherwise the lost rows are dropped, counted."""
    rows = sorted((r for split in ("train", "eval") for r in lost.get(split, [])), key=lambda r: r.index)
    if not rows or setting == "drop":
        return
    share = len(lost.get("train", [])) / max(train_rows, 1)
    if setting == "auto" and share <= AUTO_LOSS_SHARE:
        return  # a few rows (or only evaluation rows): dropped and counted, as any unusable row is
    why = (f"more than the {AUTO_LOSS_SHARE:.0%} that data.on_template_loss: auto drops" if setting == "auto"
           else "data.on_template_loss is error")
    reasons = Counter(r.why for r in rows)
    raise DataError(
        f"data: the chat template renders {len(rows):,} row{'s' if len(rows) != 1 else ''} without part of their "
        f"content ({', '.join(f'{k}: {v:,}' for k, v in reasons.most_common())}; {share:.1%} of the training rows, "
        f"{why}), so training would learn from text that is not in the data. First rows (0-based, in the file): "
        f"{_named(rows)}. Use a chat template that renders these turns (tool calls, tool results, system prompts), "
        "fix the rows, or drop them with --set data.on_template_loss=drop.")


def _turns(facts: list[RowFacts]) -> dict[str, float | int]:
    n = [f.turns for f in facts]
    return {"min": min(n), "median": statistics.median(n), "max": max(n)} if n else {}


def build_report(stats: dict[str, Any], checked: int, kept: list, facts: list[RowFacts], lost_rows: list[LostRow],
                 max_length: int, default_mode: str | None) -> dict[str, Any]:
    """The training split's report (`kept`: the Measured of each kept row, `facts` its RowFacts)."""
    reasons = stats.get("drop_reasons") or {}
    processed = sum(min(m.full, max_length) for m in kept)
    with_loss = sum(m.loss_tokens(max_length) for m in kept)
    truncated = [m.full - max_length for m in kept if m.full > max_length]
    think = sum(1 for f in facts if f.think is True)
    no_think = sum(1 for f in facts if f.think is False)
    longest = sorted(zip(kept, facts, strict=True), key=lambda mf: -mf[0].full)[:NAMED_ROWS]
    report: dict[str, Any] = {
        "format": stats.get("format"),
        "rows_read": stats.get("rows_read"),
        "rows_used": len(kept),
        "eval_rows_used": stats.get("eval_size"),
        "dropped": dict(reasons),
        "duplicates": reasons.get(DUPLICATE, 0),
        "template_check": {"rows_checked": checked, "rows_lost": len(lost_rows), "by_reason": template_reasons(reasons),
                           "first": [{"row": r.index, "excerpt": r.excerpt, "lost": r.why}
                                     for r in sorted(lost_rows, key=lambda r: r.index)[:NAMED_ROWS]]},
        "truncated": {"rows": len(truncated), "tokens_lost": sum(truncated), "max_length": max_length},
        "tokens": {"total": processed, "with_loss": with_loss, "without_loss": processed - with_loss},
        "turns_per_row": _turns(facts),
        "reasoning": {"think": think, "no_think": no_think, "template_default": default_mode},
        "tool_calling_rows": sum(1 for f in facts if f.tools),
        "longest_rows": [{"row": f.index, "tokens": m.full, "excerpt": f.excerpt} for m, f in longest],
        "eval_copies_removed": (stats.get("eval_drop_reasons") or {}).get(COPY_OF_TRAINING, 0),
    }
    warnings = []
    if no_think and not think and default_mode == "think" and stats.get("format") != "prompt_answer":
        warnings.append(f"every one of the {no_think:,} training rows is in /no_think mode (no reasoning trace), but "
                        "the chat template reasons by default: the fine-tune is not trained to reason, so ask it for "
                        "/no_think (enable_thinking=False), or add rows with <think> traces")
    if truncated:
        warnings.append(f"{len(truncated):,} rows are longer than training.max_length ({max_length}) and lose "
                        f"{sum(truncated):,} tokens at the end; raise training.max_length to keep them")
    report["warnings"] = warnings
    return report


def _rows(n: int) -> str:
    return f"{n:,} row{'s' if n != 1 else ''}"


def report_lines(stats: dict[str, Any]) -> list[str]:
    """The data report's console lines for `run`, which prints the drop lines (`drop_report`) above them."""
    return summary_lines(stats["report"], drops=False) if stats.get("report") else []


def summary_lines(report: dict[str, Any], drops: bool = True) -> list[str]:
    """The report as a few console lines (`smolforge data check`, and `run` before it trains)."""
    t, tc = report["tokens"], report["template_check"]
    dropped = sum(report["dropped"].values())
    lines = [f"data: {report['rows_read']:,} rows read"
             + (f", {dropped:,} dropped ("
                + ", ".join(f"{k}: {v:,}" for k, v in report["dropped"].items()) + ")" if dropped and drops else "")
             + f"; {report['rows_used']:,} for training"
             + (f", {report['eval_rows_used']:,} for evaluation" if report.get("eval_rows_used") else "")]
    lines.append("template check: " + (f"{_rows(tc['rows_lost'])} lost content and were dropped"
                                       if tc["rows_lost"] else "every row's content survives the chat template"
                                       + (" and the loss covers each assistant turn" if t["with_loss"] else "")))
    if report.get("format") == "prompt_answer":  # GRPO: the rows are prompts; the completions are sampled in training
        lines.append(f"tokens: {t['total']:,} in the prompts (with the chat template; the completions are sampled "
                     "during training)")
    else:
        lines.append(f"tokens: {t['total']:,} ({t['with_loss']:,} with loss, {t['without_loss']:,} without)"
                     + (f"; {_rows(report['truncated']['rows'])} cut at {report['truncated']['max_length']} tokens, "
                        f"{report['truncated']['tokens_lost']:,} tokens lost" if report["truncated"]["rows"] else ""))
    turns, r = report["turns_per_row"], report["reasoning"]
    if turns:
        lines.append(f"turns per row: {turns['min']}-{turns['max']} (median {turns['median']:g}); reasoning: "
                     f"{_rows(r['think'])} with think traces, {r['no_think']:,} /no_think; tool calling: "
                     f"{_rows(report['tool_calling_rows'])}")
    if report["longest_rows"]:
        lines.append("longest rows: " + "; ".join(f"row {x['row']} ({x['tokens']:,} tokens)"
                                                  for x in report["longest_rows"]))
    lines += [f"warning: {w}" for w in report["warnings"]]
    return lines
