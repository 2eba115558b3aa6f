"""The card's GRPO facts, from results.json's `grpo` section: which rewards trained the model, and how the
held-out prompts scored before and after training. Nothing here is estimated: a number the run did not
measure (no held-out prompts, or a resumed run whose first segment's scores are gone) is absent."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any


def reward_label(record: dict[str, Any]) -> str:
    """A reward as the card names it: a built-in by name, a user function by file, function and SHA-256."""
    if record.get("builtin"):
        return f"`{record['name']}` (built-in)"
    return f"`{Path(str(record.get('file'))).name}:{record.get('function')}` (SHA-256 `{record.get('sha256')}`)"


def _number(x: Any) -> float | None:
    return float(x) if isinstance(x, (int, float)) and not math.isnan(float(x)) else None


def _cell(stat: dict[str, Any] | None) -> str:
    if not stat or _number(stat.get("mean")) is None:
        return ""
    return f"{stat['mean']:.3f} ± {stat['std']:.3f}"


def _change(before: dict[str, Any] | None, after: dict[str, Any] | None, paired: dict[str, Any] | None) -> str:
    """The change of the mean; with the run's paired comparison, its 95% interval (prompts paired)."""
    if paired and _number(paired.get("delta")) is not None:
        return f"{paired['delta']:+.3f} ({paired['ci_low']:+.3f} to {paired['ci_high']:+.3f})"
    b, a = _number((before or {}).get("mean")), _number((after or {}).get("mean"))
    return f"{a - b:+.3f}" if a is not None and b is not None else ""


def _headline(names: list[str], before: dict[str, Any] | None, after: dict[str, Any] | None,
              paired: dict[str, Any]) -> dict[str, Any] | None:
    """The held-out change the card's first line can carry: the one reward's, or the weighted total's, paired."""
    key = names[0] if len(names) == 1 else "total"
    change = paired.get(key)
    b = (before or {}).get("rewards", {}).get(key) if key != "total" else (before or {}).get("total")
    a = (after or {}).get("rewards", {}).get(key) if key != "total" else (after or {}).get("total")
    if not change or _number((b or {}).get("mean")) is None or _number((a or {}).get("mean")) is None:
        return None
    return {"name": f"`{key}` reward" if key != "total" else "total reward", "before": b["mean"], "after": a["mean"],
            **{k: change[k] for k in ("delta", "ci_low", "ci_high", "prompts")},
            "samples": (after or {}).get("samples_per_prompt")}


def grpo_facts(results: dict[str, Any]) -> dict[str, Any] | None:
    """Everything the card's GRPO parts show; None for other methods."""
    g = results.get("grpo")
    if not g:
        return None
    held = g.get("held_out") or {}
    before, after = held.get("before"), held.get("after")
    paired = held.get("change") or {}
    names = [r["name"] for r in g.get("rewards") or []]
    rows = []
    for record, weight in zip(g.get("rewards") or [], g.get("weights") or [], strict=False):
        name = record["name"]
        b = ((before or {}).get("rewards") or {}).get(name)
        a = ((after or {}).get("rewards") or {}).get(name)
        rows.append({"name": reward_label(record), "weight": f"{weight:g}", "before": _cell(b), "after": _cell(a),
                     "change": _change(b, a, paired.get(name))})
    if len(names) > 1 and after:
        rows.append({"name": "**Total** (weighted sum)", "weight": "", "before": _cell((before or {}).get("total")),
                     "after": _cell(after.get("total")), "change": _change((before or {}).get("total"),
                                                                            after.get("total"), paired.get("total"))})
    shown = after or before or {}
    extra = []
    for label, key, fmt in (("Completion length, mean tokens", "completion_tokens", "{:.1f}"),
                            ("Cut at max_completion_length", "truncated_share", "{:.0%}"),
                            ("With a closed think block", "think_share", "{:.0%}")):
        def value(side: dict[str, Any] | None, key: str = key, fmt: str = fmt) -> str:
            v = (side or {}).get(key)
            v = v.get("mean") if isinstance(v, dict) else v
            return fmt.format(v) if _number(v) is not None else ""
        extra.append({"name": label, "before": value(before), "after": value(after)})
    curve = g.get("training_curve") or []
    flat = [c["frac_reward_zero_std"] for c in curve if _number(c.get("frac_reward_zero_std")) is not None]
    examples = []
    for b, a in zip((before or {}).get("examples") or [], (after or {}).get("examples") or [], strict=False):
        prompt = next((t.get("content") for t in reversed(b.get("prompt") or []) if t.get("role") == "user"), "")
        examples.append({"prompt": prompt, "before": b.get("completion", ""), "after": a.get("completion", "")})
    return {
        "rewards": [reward_label(r) for r in g.get("rewards") or []],
        "weights": g.get("weights"),
        "num_generations": g.get("num_generations"),
        "max_completion_length": g.get("max_completion_length"),
        "temperature": g.get("temperature"),
        "beta": g.get("beta"),
        "loss_type": g.get("loss_type"),
        "mode": g.get("mode"),
        "generation": g.get("generation"),
        "rows": rows if after else [],
        "paired": bool(paired),
        "extra": extra if after else [],
        "prompts": shown.get("prompts"),
        "samples_per_prompt": shown.get("samples_per_prompt"),
        "seed": shown.get("seed"),
        "before_measured": bool(before),
        "curve_first": curve[0] if curve else None,
        "curve_last": curve[-1] if curve else None,
        "examples": examples,
        "rollout_tokens_per_second": (after or {}).get("tokens_per_second"),
        # groups whose completions all scored the same carry no signal (zero advantage): the share over logged steps
        "no_signal_share": sum(flat) / len(flat) if flat else None,
        "headline": _headline(names, before, after, paired),
    }
