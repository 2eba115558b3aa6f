"""Rollout throughput on CPU: GRPO's held-out sampling (`smolforge.rollouts.score_rollouts`) with batched,
KV-cached generation against the same prompts one at a time (the baseline a hand-written loop would be).

Both sample the same number of completions with the same settings from the tiny SmolLM3 (built locally, no
download) and score them with the built-in `accuracy` reward; the ratio is batched tokens/s over one-at-a-time
tokens/s, the median of `--repeats` runs each.

    .venv/bin/python benchmarks/rollouts.py [--prompts 16] [--samples 4] [--tokens 32] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("SMOLFORGE_CACHE", tempfile.mkdtemp(prefix="smolforge-bench-"))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--prompts", type=int, default=16)
    parser.add_argument("--samples", type=int, default=4)
    parser.add_argument("--tokens", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    from smolforge.config.loading import load_config
    from smolforge.data import prepare
    from smolforge.hardware import detect
    from smolforge.modelio import load_model, load_tokenizer, model_source
    from smolforge.rewards import accuracy
    from smolforge.rollouts import score_rollouts
    from smolforge.runtime import resolve

    cfg = load_config(preset="tiny-grpo", sets=["model.name_or_path=tiny"])
    source = model_source(cfg)
    tokenizer = load_tokenizer(cfg, source, needs_markers=True)
    model = load_model(cfg, source, resolve(cfg))
    rows = [dict(r) for r in prepare(cfg.data, "grpo").train.select(range(args.prompts))]
    prompts, answers = [r["prompt"] for r in rows], {"answer": [r["answer"] for r in rows]}
    accuracy.__name__ = "accuracy"

    def rate(batch: int) -> float:
        out = score_rollouts(model, tokenizer, prompts, answers, [accuracy], [1.0], samples=args.samples,
                             max_new_tokens=args.tokens, temperature=1.0, think=False, seed=0, batch_prompts=batch)
        return out["tokens_per_second"]

    rate(args.prompts)  # warm-up: first calls allocate
    batched = statistics.median(rate(args.prompts) for _ in range(args.repeats))
    single = statistics.median(rate(1) for _ in range(args.repeats))
    print(f"machine: {detect().get('cpu')} ({os.cpu_count()} cores)")
    print(f"{args.prompts} prompts x {args.samples} samples, up to {args.tokens} new tokens, tiny SmolLM3 (CPU)")
    print(f"one prompt at a time: {single:,.0f} tokens/s (median of {args.repeats})")
    print(f"batched ({args.prompts} prompts per generate call): {batched:,.0f} tokens/s (median of {args.repeats})")
    print(f"ratio: {batched / single:.2f}x")


if __name__ == "__main__":
    main()
