"""Supervised tokens/s of smolforge's default SFT path vs a plain TRL SFTTrainer (packing=False).

Both arms train the same tiny SmolLM3 (the `tiny` preset's size) from the same initial weights on
the same long-tailed chats (16-512 tokens), with the same seed, batch size and number of
optimizer steps, so they see the same rows in the same order. The baseline is TRL's stock
padded batching with SDPA; the default is whatever `smolforge run` does (`build_trainer`). Both
count tokens with the same hook, so overhead is equal. Each arm runs `--rounds` times,
alternating, and the fastest round of each is compared.

    .venv/bin/python benchmarks/throughput.py [--steps 40] [--rows 1200] [--rounds 2]

Prints: ratio=<default supervised tok/s / baseline> waste=<default padding fraction> (+ details).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("TORCHAO_FORCE_SKIP_LOADING_SO_FILES", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def long_tail_chats(n: int, seed: int) -> list[dict]:
    """Chats with a realistic long-tailed length spread: mostly one exchange, sometimes many."""
    from smolforge.builtin_data import generate

    rng = random.Random(seed)
    pool = iter(generate(n * 5, seed))
    rows = []
    for _ in range(n):
        k = min(9, 1 + int(rng.expovariate(1 / 0.9)))
        msgs: list[dict] = []
        for _ in range(k):
            msgs += [m for m in next(pool)["messages"] if m["role"] != "system"]
        rows.append({"messages": msgs})
    return rows


def make_config(data_path: Path, steps: int, batching: str = "auto", batch_size: int = 8):
    from smolforge.config.loading import load_config

    return load_config(preset="tiny", sets=[
        f"data.name={data_path}", "data.eval_ratio=0", f"training.max_steps={steps}", "training.logging_steps=1000",
        "training.save_steps=100000", "tracking.backend=none", f"training.batching={batching}",
        "experiment_name=bench", f"training.batch_size={batch_size}",
    ])


def default_arm(cfg, data, out: Path) -> dict:
    from smolforge.runfolder import RunFolder
    from smolforge.train import build_trainer

    built = build_trainer(cfg, RunFolder(out), data)
    t0 = time.perf_counter()
    result = built.trainer.train()
    seconds = time.perf_counter() - t0
    return {"seconds": seconds, "loss": result.training_loss, **built.trainer.sf_total_counts(),
            "runtime": built.runtime.as_dict()}


def baseline_arm(cfg, data, out: Path) -> dict:
    """Plain TRL: SFTTrainer with padded batches (packing=False), stock SDPA attention."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    from smolforge.tiny import ensure_tiny
    from smolforge.trainers import TokenAccounting

    class CountingSFTTrainer(TokenAccounting, SFTTrainer):
        """TRL's SFTTrainer plus the same token counting hook the default arm has."""

    t = cfg.training
    path = ensure_tiny(cfg.model.tiny)
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, attn_implementation="sdpa", dtype=torch.float32)
    args = SFTConfig(
        output_dir=str(out), per_device_train_batch_size=t.batch_size, max_steps=t.max_steps,
        learning_rate=t.learning_rate, lr_scheduler_type=t.lr_scheduler, warmup_steps=t.warmup_ratio,
        seed=t.seed, data_seed=t.seed, bf16=False, use_cpu=True, activation_checkpointing=False,
        report_to=[], packing=False, max_length=t.max_length, assistant_only_loss=True,
        logging_steps=1000, save_strategy="no", disable_tqdm=True, dataloader_num_workers=0,
    )
    torch.manual_seed(t.seed)
    trainer = CountingSFTTrainer(model=model, args=args, train_dataset=data.train, processing_class=tok)
    t0 = time.perf_counter()
    result = trainer.train()
    seconds = time.perf_counter() - t0
    return {"seconds": seconds, "loss": result.training_loss, **trainer.sf_total_counts()}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--rows", type=int, default=1200)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--batching", default="auto", help="smolforge arm's training.batching")
    parser.add_argument("--batch-size", type=int, default=8, help="sequences per step, both arms")
    parser.add_argument("--json", action="store_true", help="also print the raw measurements as JSON")
    args = parser.parse_args()

    from smolforge.builtin_data import write_jsonl
    from smolforge.data import prepare
    from smolforge.runtime import tune_malloc

    malloc_tuned = tune_malloc()  # process-wide, so both arms get it: the ratio stays like for like

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        data_path = tmp / "chats.jsonl"
        write_jsonl(long_tail_chats(args.rows, seed=7), data_path)
        cfg = make_config(data_path, args.steps, args.batching, args.batch_size)
        runs: dict[str, list[dict]] = {"baseline": [], "default": []}
        lengths = None
        for r in range(args.rounds):
            for arm in ("baseline", "default"):
                data = prepare(cfg.data)
                out = tmp / f"{arm}-{r}"
                if arm == "baseline":
                    from transformers import AutoTokenizer

                    from smolforge.data import apply_length_filters
                    from smolforge.tiny import ensure_tiny

                    apply_length_filters(data, AutoTokenizer.from_pretrained(ensure_tiny(cfg.model.tiny)), cfg.data,
                                         cfg.training.max_length)
                    lengths = data.stats["train_token_lengths"]
                    runs[arm].append(baseline_arm(cfg, data, out))
                else:
                    runs[arm].append(default_arm(cfg, data, out))
                m = runs[arm][-1]
                print(f"  round {r} {arm:8s} {m['seconds']:6.2f} s  supervised={m['supervised']} "
                      f"real={m['real']} processed={m['processed']} loss={m['loss']:.4f}", file=sys.stderr)

    best = {arm: min(ms, key=lambda m: m["seconds"]) for arm, ms in runs.items()}
    tps = {arm: m["supervised"] / m["seconds"] for arm, m in best.items()}
    waste = {arm: 1 - m["real"] / m["processed"] for arm, m in best.items()}
    ratio = tps["default"] / tps["baseline"]
    same_tokens = best["default"]["supervised"] == best["baseline"]["supervised"]
    print(f"ratio={ratio:.2f} waste={waste['default']:.1%} baseline_waste={waste['baseline']:.1%} "
          f"default_tok_s={tps['default']:.0f} baseline_tok_s={tps['baseline']:.0f} "
          f"loss_default={best['default']['loss']:.4f} loss_baseline={best['baseline']['loss']:.4f} "
          f"same_supervised_tokens={same_tokens} steps={args.steps} batch={args.batch_size} "
          f"lengths=p50:{lengths['p50']}/p90:{lengths['p90']}/max:{lengths['max']} "
          f"default={best['default']['runtime']['batching']}+{best['default']['runtime']['attn_implementation']} "
          f"malloc_tuned={malloc_tuned} "
          f"rounds_spread={statistics.pstdev([m['seconds'] for m in runs['default']]):.2f}s")
    if args.json:
        print(json.dumps(runs, default=str))


if __name__ == "__main__":
    main()
