"""Evaluation cost on the tiny model: items/s for log-likelihood and for generative tasks.

Runs smolforge's real evaluation path (the bundled suite through lm-eval's HFLM and
simple_evaluate, as `evaluate_models` does) on one model and times each task separately, after
one warm-up pass. Generation cost depends on how many tokens the model writes: a random-init model
never stops early, so by default every item generates the full cap (the worst case). Pass a trained
model folder with --model to see typical cost.

    .venv/bin/python benchmarks/eval_cost.py [--model DIR] [--batch-size 8] [--max-gen 32] [--rounds 2]

Prints the machine, then one line per task: items, seconds and items/s (best round).
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("TORCHAO_FORCE_SKIP_LOADING_SO_FILES", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def machine() -> str:
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    except OSError:
        pass
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return (f"machine: {cpu}; {os.cpu_count()} logical CPUs, torch threads {torch.get_num_threads()}; {gpu}; "
            f"{platform.system()} {platform.release()}; python {platform.python_version()}, torch {torch.__version__}")


def tiny_model_dir() -> str:
    from smolforge.config import TinySpec
    from smolforge.tiny import ensure_tiny

    return str(ensure_tiny(TinySpec()))  # the `tiny` preset's size


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", help="model folder (default: the tiny preset's random-init model)")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--max-gen", type=int, default=32, help="generated-token cap for the generative task")
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    os.environ.setdefault("SMOLFORGE_CACHE", tempfile.mkdtemp(prefix="smolforge-bench-"))

    t0 = time.perf_counter()
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from smolforge.config import EvaluationSection
    from smolforge.evaluation.generation import supports_thinking
    from smolforge.evaluation.harness import make_lm, run_task
    from smolforge.evaluation.quiet import quiet
    from smolforge.evaluation.tasks import TaskResolver

    source = args.model or tiny_model_dir()
    tok = AutoTokenizer.from_pretrained(source)
    with quiet():
        model = AutoModelForCausalLM.from_pretrained(source).eval()
    settings = EvaluationSection(batch_size=args.batch_size, max_gen_tokens=args.max_gen)
    with quiet():
        tasks = TaskResolver().resolve(settings.tasks, settings.limit)
    thinking = supports_thinking(tok)
    lm = make_lm(model, tok, "no_think", thinking, settings.batch_size)
    setup = time.perf_counter() - t0
    params = sum(p.numel() for p in model.parameters())

    print(machine())
    print(f"model: {source} ({params / 1e6:.2f}M parameters, {model.dtype}); batch size {args.batch_size}; "
          f"setup (imports, model, tasks) {setup:.1f} s")
    for et in tasks:
        run_task(lm, tok, et, "no_think", settings)  # warm-up: first-call allocations and kernel choices
        best = min(run_task(lm, tok, et, "no_think", settings).seconds for _ in range(args.rounds))
        kind = "log-likelihood, 4 choices" if et.loglikelihood else f"generation, up to {args.max_gen} tokens"
        print(f"{et.name} ({kind}): {et.n_items} items in {best:.2f} s = {et.n_items / best:.1f} items/s")


if __name__ == "__main__":
    main()
