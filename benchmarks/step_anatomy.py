"""Where one training step of `smolforge run` goes on this machine, and what that leaves against plain TRL.

Each arm runs in its own process, with the tiny preset, data and batch of benchmarks/throughput.py:

- smolforge: the real `smolforge run` CLI. Steps --skip .. --skip+--steps are timed (no profiler), the
  next --steps are profiled with torch.profiler and split into matrix multiplies (aten::mm/addmm/bmm, with
  the FLOP rate they reached), attention (torch's CPU flash-attention kernels, forward and backward) and
  everything else: element-wise operations, the dispatch of several thousand small ops per step, the
  trainer's own work (data loading, optimizer, clipping).
- free element-wise blocks: the same run with every RMSNorm computed as one multiply, SwiGLU as one add and
  RoPE skipped. Its numbers are wrong but its shapes, matmuls and attention are the real ones, so its step
  time bounds what any fusion of those blocks (a compiler, hand-written kernels) could reach.
- plain TRL: benchmarks/trl_baseline.py (stock `SFTTrainer(packing=False)`), timed the same way.

It also measures this machine's fp32 matmul rate (1024 x 1024 x 1024, default threads) to show how close
the step's matmuls already run to it. Prints a line per arm, then the step time a 3.0x ratio to plain TRL
needs and two ceilings: the ratio with free element-wise blocks, and the ratio if nothing but the matmuls
and attention cost time.

    python benchmarks/step_anatomy.py [--rounds 2] [--skip 30] [--steps 60] [--rows 2000] [--batch-size 8]
"""

from __future__ import annotations

import argparse
import json
import os
import runpy
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("TORCHAO_FORCE_SKIP_LOADING_SO_FILES", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

HERE = Path(__file__).resolve().parent
MARK = "ANATOMY "  # prefix of the child's result line on stdout
ARMS = ("smolforge", "free element-wise blocks", "trl")
MATMUL_OPS = ("aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm")
ATTENTION_PREFIX = "aten::_scaled_dot_product_flash_attention"


def matmul_rate(n: int = 1024, repeats: int = 20) -> float:
    """GFLOP/s of an fp32 n x n x n matmul with torch's default threads: this machine's matmul rate."""
    import torch

    a, b = torch.randn(n, n), torch.randn(n, n)
    for _ in range(3):
        a @ b
    t0 = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * n ** 3 * repeats / (time.perf_counter() - t0) / 1e9


def split_profile(prof, steps: int) -> dict[str, float]:
    """ms per step in matmuls, attention and the rest (self CPU time of the calling thread), and the matmul rate."""
    mm = attn = total = flops = 0.0
    for e in prof.key_averages():
        total += e.self_cpu_time_total
        if e.key in MATMUL_OPS:
            mm += e.self_cpu_time_total
            flops += e.flops or 0
        elif e.key.startswith(ATTENTION_PREFIX):
            attn += e.self_cpu_time_total
    return {"matmul_ms": mm / 1e3 / steps, "attention_ms": attn / 1e3 / steps,
            "profiled_ops_ms": total / 1e3 / steps, "matmul_gflops": flops / (mm / 1e6) / 1e9 if mm else 0.0}


def install_probe(skip: int, steps: int) -> dict:
    """Time steps skip..skip+steps of the next trainer.train(), then profile as many more; fills the returned dict."""
    import torch
    import transformers
    from transformers import TrainerCallback

    result: dict = {}

    class Probe(TrainerCallback):
        def on_step_begin(self, args, state, control, **kwargs):
            if state.global_step == skip:
                self.t0 = time.perf_counter()
            elif state.global_step == skip + steps:
                result["step_ms"] = (time.perf_counter() - self.t0) * 1e3 / steps
                self.prof = torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU],
                                                   record_shapes=True, with_flops=True)
                self.prof.__enter__()

        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step == skip + 2 * steps:
                self.prof.__exit__(None, None, None)
                result.update(split_profile(self.prof, steps))

    train = transformers.Trainer.train

    def train_with_probe(self, *args, **kwargs):
        self.add_callback(Probe())
        return train(self, *args, **kwargs)

    transformers.Trainer.train = train_with_probe
    return result


def free_elementwise_blocks() -> None:
    """Make SmolLM3's RMSNorm one multiply, SwiGLU one add and RoPE nothing (same shapes, wrong numbers)."""
    import transformers.models.smollm3.modeling_smollm3 as smollm3

    smollm3.SmolLM3RMSNorm.forward = lambda self, x: x * self.weight
    smollm3.SmolLM3MLP.forward = lambda self, x: self.down_proj(self.gate_proj(x) + self.up_proj(x))
    smollm3.apply_rotary_pos_emb = lambda q, k, cos, sin, unsqueeze_dim=1: (q, k)


def child(arm: str, work: Path, model: str, data: str, total_steps: int, batch: int, skip: int, steps: int,
          name: str) -> None:
    """One arm in this process (`name`: its own run folder); prints MARK + JSON of its measurements."""
    result = install_probe(skip, steps)
    if arm == "trl":
        from smolforge.config.loading import load_config

        t = load_config(preset="tiny").training
        sys.argv = [str(HERE / "trl_baseline.py"), "--model", model, "--data", data, "--out", str(work / name),
                    "--batch-size", str(batch), "--max-steps", str(total_steps), "--max-length", str(t.max_length),
                    "--lr", str(t.learning_rate), "--scheduler", t.lr_scheduler, "--warmup", str(t.warmup_ratio),
                    "--seed", str(t.seed)]
        os.environ.pop("SMOLFORGE_MALLOC_TUNE", None)
        runpy.run_path(sys.argv[0], run_name="__main__")
    else:
        if arm == "free element-wise blocks":
            free_elementwise_blocks()
        from smolforge.cli import main

        sys.argv = ["smolforge", "run", "--preset", "tiny", "--yes", "--experiment-name", name]
        for s in [f"data.name={data}", "data.eval_ratio=0", "training.epochs=1", f"training.max_steps={total_steps}",
                  f"training.batch_size={batch}", "training.save_steps=1000000", "tracking.backend=none",
                  "evaluation.tasks=[]", "quantize.methods=[]"]:
            sys.argv += ["--set", s]
        os.chdir(work)
        try:
            main()
        except SystemExit as e:
            if e.code:
                raise
    print(MARK + json.dumps(result), flush=True)


def run_arm(arm: str, name: str, work: Path, model: Path, data: Path, args) -> dict:
    cmd = [sys.executable, __file__, "--child", arm, "--name", name, "--work", str(work), "--model", str(model),
           "--data", str(data), "--skip", str(args.skip), "--steps", str(args.steps),
           "--batch-size", str(args.batch_size)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith(MARK)]
    if proc.returncode != 0 or not lines:
        sys.exit(f"arm {arm!r} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return json.loads(lines[-1][len(MARK):])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=2000, help="chats in the data")
    parser.add_argument("--rounds", type=int, default=2, help="rounds of all arms (medians are printed)")
    parser.add_argument("--skip", type=int, default=30, help="steps before timing starts (warm-up)")
    parser.add_argument("--steps", type=int, default=60, help="steps timed, then as many profiled")
    parser.add_argument("--batch-size", type=int, default=8, help="sequences per step, every arm")
    parser.add_argument("--child", choices=ARMS, help=argparse.SUPPRESS)
    parser.add_argument("--name", help=argparse.SUPPRESS)
    parser.add_argument("--work", help=argparse.SUPPRESS)
    parser.add_argument("--model", help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    args = parser.parse_args()
    total_steps = args.skip + 2 * args.steps
    if args.child:
        child(args.child, Path(args.work), args.model, args.data, total_steps, args.batch_size, args.skip, args.steps,
              args.name)
        return

    from smolforge.builtin_data import write_jsonl
    from smolforge.config.loading import load_config
    from smolforge.tiny import ensure_tiny
    from throughput import load, long_tail_chats, machine

    model = ensure_tiny(load_config(preset="tiny").model.tiny)
    print(f"machine: {machine()}; torch threads default; {load()}", flush=True)
    runs: dict[str, list[dict]] = {arm: [] for arm in ARMS}
    rates = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        data = work / "chats.jsonl"
        write_jsonl(long_tail_chats(args.rows, seed=7), data)
        for r in range(args.rounds):
            rates.append(matmul_rate())
            for arm in ARMS:
                m = run_arm(arm, f"{arm.replace(' ', '-')}-{r}", work, model, data, args)
                runs[arm].append(m)
                print(f"  round {r} {arm:26s} {m['step_ms']:6.1f} ms/step  matmul {m['matmul_ms']:5.1f} ms "
                      f"({m['matmul_gflops']:.0f} GFLOP/s)  attention {m['attention_ms']:5.1f} ms  {load()}",
                      flush=True)

    def med(arm: str, key: str) -> float:
        return statistics.median(m[key] for m in runs[arm])

    rate = statistics.median(rates)
    sf, free, trl = med("smolforge", "step_ms"), med("free element-wise blocks", "step_ms"), med("trl", "step_ms")
    mm, attn = med("smolforge", "matmul_ms"), med("smolforge", "attention_ms")
    rest = sf - mm - attn
    print(f"this machine's fp32 matmul (1024^3): {rate:.0f} GFLOP/s; the step's matmuls: "
          f"{med('smolforge', 'matmul_gflops'):.0f} GFLOP/s")
    print(f"smolforge step {sf:.1f} ms = matmul {mm:.1f} ({mm / sf:.0%}) + attention {attn:.1f} ({attn / sf:.0%}) + "
          f"everything else {rest:.1f} ({rest / sf:.0%}); plain TRL step {trl:.1f} ms")
    print(f"ratio now {trl / sf:.2f}x; 3.0x needs a step of {trl / 3:.1f} ms ({sf - trl / 3:+.1f} ms from now); "
          f"free RMSNorm/SwiGLU/RoPE: step {free:.1f} ms, {trl / free:.2f}x; only matmul + attention: "
          f"{trl / (mm + attn):.2f}x")
    print(f"ratio={trl / sf:.2f} needed_step_ms={trl / 3:.1f} step_ms={sf:.1f} free_elementwise_ratio={trl / free:.2f} "
          f"ceiling_ratio={trl / (mm + attn):.2f} matmul_share={mm / sf:.2f} rounds={args.rounds} {load()}")


if __name__ == "__main__":
    main()
