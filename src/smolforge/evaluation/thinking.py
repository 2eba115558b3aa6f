"""Did the fine-tune keep its reasoning switch? A check on `/think` and `/no_think` answers.

For chat templates with a reasoning switch (SmolLM3's `enable_thinking`) both models answer the
same prompts in both modes, greedily. A `/think` answer is well formed when it holds exactly one
non-empty <think>...</think> block followed by a non-empty answer; a `/no_think` answer is clean
when it holds no think tags at all (the template already closed an empty block). The fine-tune is
flagged when it does clearly worse than its base: fewer well-formed (or clean) answers with a paired
exact test p < 0.05, or none at all where the base managed at least half. Reasoning cut off by the
token cap (an unclosed <think>) is not well formed; its share is reported so the cap can be raised.
"""

from __future__ import annotations

import re
from typing import Any

from smolforge.evaluation.generation import THINK_CLOSE, THINK_OPEN, generate
from smolforge.evaluation.stats import mcnemar_exact

_WELL_FORMED = re.compile(rf"^\s*{re.escape(THINK_OPEN)}(?P<reasoning>.*?){re.escape(THINK_CLOSE)}(?P<answer>.*)$",
                          re.DOTALL)
MAX_SHOWN = 400


def well_formed_think(text: str) -> bool:
    if text.count(THINK_OPEN) != 1 or text.count(THINK_CLOSE) != 1:
        return False
    m = _WELL_FORMED.match(text)
    return bool(m and m.group("reasoning").strip() and m.group("answer").strip())


def unclosed_think(text: str) -> bool:
    """Reasoning started but not closed within the token cap: the cap, not the model, may be at fault."""
    return THINK_OPEN in text and THINK_CLOSE not in text


def empty_think(text: str) -> bool:
    """A think block closed at once, with no reasoning in it: the form of a /no_think answer, not of reasoning."""
    m = _WELL_FORMED.match(text)
    return bool(m and text.count(THINK_OPEN) == 1 and not m.group("reasoning").strip())


def clean_no_think(text: str) -> bool:
    return THINK_OPEN not in text and THINK_CLOSE not in text


CHECKS = {"think": well_formed_think, "no_think": clean_no_think}


def measure(model: Any, tokenizer: Any, prompts: list[str], max_new_tokens: int, batch_size: int) -> dict:
    """Both modes' raw answers and pass/fail per prompt for one model."""
    convs = [[{"role": "user", "content": p}] for p in prompts]
    out = {}
    for mode, check in CHECKS.items():
        texts = generate(model, tokenizer, convs, mode, True, max_new_tokens, batch_size)
        out[mode] = {"passed": [check(t) for t in texts], "outputs": texts}
    return out


def _flag(base: list[bool], tuned: list[bool]) -> tuple[bool, float]:
    b_share, t_share = sum(base) / len(base), sum(tuned) / len(tuned)
    lost = sum(1 for b, t in zip(base, tuned, strict=True) if b and not t)
    gained = sum(1 for b, t in zip(base, tuned, strict=True) if t and not b)
    p = mcnemar_exact(lost, gained)
    return t_share < b_share and (p < 0.05 or (t_share == 0 and b_share >= 0.5)), p


def report(prompts: list[str], base: dict, tuned: dict) -> dict:
    """Shares per mode for both models, the paired p-values, and the two flags."""
    modes = {}
    for mode, what in (("think", "well_formed_share"), ("no_think", "no_reasoning_share")):
        b, t = base[mode]["passed"], tuned[mode]["passed"]
        flagged, p = _flag(b, t)
        modes[mode] = {"criterion": what, "base": sum(b) / len(b), "tuned": sum(t) / len(t), "p_value": p,
                       "flag": flagged}
    unclosed = {name: sum(map(unclosed_think, out["think"]["outputs"])) / len(prompts)
                for name, out in (("base", base), ("tuned", tuned))}
    modes["think"]["unclosed_share"] = unclosed  # > 0: raise evaluation.max_gen_tokens so reasoning can finish
    modes["think"]["empty_share"] = {name: sum(map(empty_think, out["think"]["outputs"])) / len(prompts)
                                     for name, out in (("base", base), ("tuned", tuned))}
    return {
        "n_prompts": len(prompts), "modes": modes,
        "lost_think": modes["think"]["flag"],  # the fine-tune no longer reasons well-formedly when asked
        "leaks_reasoning": modes["no_think"]["flag"],  # it reasons where it was told not to
    }


def raw_rows(prompts: list[str], base: dict, tuned: dict) -> list[dict]:
    """Per prompt and mode: both models' answers (trimmed) and whether each passed, for retention.jsonl."""
    rows = []
    for mode in CHECKS:
        for i, prompt in enumerate(prompts):
            rows.append({"mode": mode, "prompt": prompt,
                         "base": base[mode]["outputs"][i][:MAX_SHOWN], "base_ok": base[mode]["passed"][i],
                         "tuned": tuned[mode]["outputs"][i][:MAX_SHOWN], "tuned_ok": tuned[mode]["passed"][i]})
    return rows
