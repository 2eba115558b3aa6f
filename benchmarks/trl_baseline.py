"""The baseline arm of benchmarks/throughput.py: plain TRL SFT on a CPU, as a user would write it.

A stock `SFTTrainer(packing=False)` (padded batches, stock SDPA attention, no allocator tuning) on a
local chat JSONL with assistant-only loss. The only settings changed from TRL's defaults are the ones
a CPU user must change and the hyperparameters the smolforge arm uses: fp32 and no activation
checkpointing (TRL defaults to bf16 and checkpointing, both several times slower on a CPU, so this
favours the baseline), learning rate, schedule, warm-up, batch size, max length, seed, no saving.

The only addition is a wrapper around the data collator that counts processed, real and supervised
tokens of each batch (a few integer sums), so the benchmark can check both arms did the same work.

    python benchmarks/trl_baseline.py --model DIR --data chats.jsonl --out DIR [--max-steps N] ...

Prints one JSON line: train_runtime (the trainer's own, seconds), train_loss, steps and the counts.
"""

from __future__ import annotations

import argparse
import json
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--model", required=True, help="model folder (weights + tokenizer with a chat template)")
    p.add_argument("--data", required=True, help="JSONL of {'messages': [...]} rows")
    p.add_argument("--out", required=True)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--epochs", type=float, default=1.0)
    p.add_argument("--max-steps", type=int, default=-1)
    p.add_argument("--max-length", type=int, default=512)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--scheduler", default="cosine")
    p.add_argument("--warmup", type=float, default=0.05, help="warm-up as a ratio of the steps")
    p.add_argument("--seed", type=int, default=42)
    args = p.parse_args()

    import torch
    from datasets import load_dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    tokenizer = AutoTokenizer.from_pretrained(args.model)
    model = AutoModelForCausalLM.from_pretrained(args.model, dtype=torch.float32)
    dataset = load_dataset("json", data_files=args.data, split="train")
    config = SFTConfig(
        output_dir=args.out, per_device_train_batch_size=args.batch_size, num_train_epochs=args.epochs,
        max_steps=args.max_steps, learning_rate=args.lr, lr_scheduler_type=args.scheduler, warmup_steps=args.warmup,
        seed=args.seed, data_seed=args.seed, bf16=False, gradient_checkpointing=False, use_cpu=True,
        assistant_only_loss=True, packing=False, max_length=args.max_length, save_strategy="no", report_to=[],
        disable_tqdm=True,
    )
    trainer = SFTTrainer(model=model, args=config, train_dataset=dataset, processing_class=tokenizer)

    per_batch: list[tuple[int, int, int]] = []  # (processed, real, supervised) of each batch collated, in order
    collate = trainer.data_collator

    def counting_collator(features):
        batch = collate(features)
        per_batch.append((batch["input_ids"].numel(), int(batch["attention_mask"].sum()),
                          int((batch["labels"][..., 1:] != -100).sum())))
        return batch

    trainer.data_collator = counting_collator
    out = trainer.train()
    # accelerate's data loader collates one batch ahead: count only the batches the steps trained on
    trained = per_batch[:out.global_step * config.gradient_accumulation_steps]
    counts = {k: sum(b[i] for b in trained) for i, k in enumerate(("processed", "real", "supervised"))}
    print(json.dumps({"train_runtime": out.metrics["train_runtime"], "train_loss": out.training_loss,
                      "steps": out.global_step, "tokens": counts}))


if __name__ == "__main__":
    main()
