"""Supervised tokens/s of `smolforge run` vs plain TRL, each in its own process, as a user compares them.

Arm smolforge: the real `smolforge run` CLI (the `tiny` preset's SmolLM3, evaluation, tracking,
quantization, checkpoints and publishing off). Arm TRL: `benchmarks/trl_baseline.py`, a stock
`SFTTrainer(packing=False)` script (padded batches, stock SDPA, no allocator tuning; fp32 and no
activation checkpointing, as smolforge on a CPU). Both load the same tiny model folder (same initial
weights and tokenizer), train on the same local JSONL of long-tailed chats (written here, duplicates
removed so smolforge's de-duplication drops nothing), with the same seed, batch size, learning-rate
schedule, max length, assistant-only loss and number of steps (one epoch unless --steps).

What is timed: the trainer's own `train_runtime` (from `trainer.train()` start to end: the training
loop, not imports, model loading or tokenisation); for smolforge, results.json's `train_runtime_s`.
Tokens/s = supervised tokens (positions whose next-token label is not -100) / that time. The arms
alternate over --rounds (the order flips each round); the ratio is the median of the per-round
ratios, printed with min and max. The check: same supervised tokens, final train loss within 1 %.

    python benchmarks/throughput.py [--rows 2000] [--rounds 3] [--steps N] [--breakdown] [--quick]

--breakdown adds smolforge arms that each turn one lever off: padding removal
(training.batching=padded, which also uses stock SDPA), the LM head at supervised positions only
(SMOLFORGE_SUPERVISED_LM_HEAD=0), the LM head in one piece instead of TRL's tiles (SMOLFORGE_WHOLE_LM_HEAD=0)
and allocator tuning (SMOLFORGE_MALLOC_TUNE=0).
Prints the machine and load average, one line per arm, then `ratio=… waste=…`.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("TORCHAO_FORCE_SKIP_LOADING_SO_FILES", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

HERE = Path(__file__).resolve().parent
SMOLFORGE = str(Path(sys.executable).with_name("smolforge"))
# Each breakdown arm: (name, extra `--set`s, extra environment) for the smolforge CLI.
LEVERS_OFF = {
    "no padding removal": (["training.batching=padded"], {}),
    "no supervised-only LM head": ([], {"SMOLFORGE_SUPERVISED_LM_HEAD": "0"}),
    "no whole LM head": ([], {"SMOLFORGE_WHOLE_LM_HEAD": "0"}),
    "no allocator tuning": ([], {"SMOLFORGE_MALLOC_TUNE": "0"}),
}


@dataclass
class Measured:
    """One training run of one arm."""

    seconds: float
    loss: float
    supervised: int
    real: int
    processed: int
    steps: int

    @property
    def tokens_per_s(self) -> float:
        return self.supervised / self.seconds

    @property
    def waste(self) -> float:
        return 1 - self.real / self.processed if self.processed else 0.0


def ratio_stats(ratios: list[float]) -> dict[str, float]:
    """Median, min and max of the per-round ratios."""
    return {"median": statistics.median(ratios), "min": min(ratios), "max": max(ratios)}


def equal_work(a: Measured, b: Measured, loss_tolerance: float = 0.01) -> tuple[bool, str]:
    """Same supervised tokens and final training loss within `loss_tolerance` (relative): the same work done."""
    if a.supervised != b.supervised:
        return False, f"supervised tokens differ: {a.supervised} vs {b.supervised}"
    rel = abs(a.loss - b.loss) / abs(b.loss)
    if rel > loss_tolerance:
        return False, f"train loss differs by {rel:.2%}: {a.loss:.4f} vs {b.loss:.4f}"
    return True, f"same supervised tokens ({a.supervised}), loss within {rel:.3%}"


def machine() -> str:
    """CPU model and core count, as this script ran."""
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{model}, {os.cpu_count()} cores, {platform.system()}"


def load() -> str:
    return "load=" + "/".join(f"{x:.2f}" for x in os.getloadavg())


def long_tail_chats(n: int, seed: int) -> list[dict]:
    """n distinct chats with a long-tailed length spread: mostly one exchange, sometimes many."""
    from smolforge.builtin_data import generate
    from smolforge.data.dedup import row_key

    rng = random.Random(seed)
    pool = iter(generate(n * 20, seed))
    rows, seen = [], set()
    while len(rows) < n:
        k = min(9, 1 + int(rng.expovariate(1 / 0.9)))
        msgs: list[dict] = []
        for _ in range(k):
            msgs += [m for m in next(pool)["messages"] if m["role"] != "system"]
        key = row_key({"messages": msgs})  # smolforge's own duplicate rule, so it drops none of them
        if key not in seen:
            seen.add(key)
            # the reasoning mode smolforge picks for chats without <think> traces, so both arms format alike
            rows.append({"messages": msgs, "chat_template_kwargs": {"enable_thinking": False}})
    return rows


def smolforge_arm(work: Path, name: str, data: Path, steps: int, batch: int, sets: list[str],
                  env: dict[str, str]) -> Measured:
    cmd = [SMOLFORGE, "run", "--preset", "tiny", "--yes", "--experiment-name", name]
    for s in [f"data.name={data}", "data.eval_ratio=0", "training.epochs=1", f"training.max_steps={steps}",
              f"training.batch_size={batch}", "training.save_steps=1000000", "tracking.backend=none",
              "evaluation.tasks=[]", "quantize.methods=[]", *sets]:
        cmd += ["--set", s]
    proc = subprocess.run(cmd, cwd=work, env={**os.environ, **env}, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"smolforge arm failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    r = json.loads((work / "runs" / name / "results.json").read_text())
    t = r["tokens"]
    return Measured(r["train_runtime_s"], r["train_loss"], t["supervised"], t["real"], t["processed"],
                    r["global_steps"])


def trl_arm(work: Path, name: str, model: Path, data: Path, steps: int, batch: int, cfg) -> Measured:
    t = cfg.training
    cmd = [sys.executable, str(HERE / "trl_baseline.py"), "--model", str(model), "--data", str(data),
           "--out", str(work / name), "--batch-size", str(batch), "--max-steps", str(steps),
           "--max-length", str(t.max_length), "--lr", str(t.learning_rate), "--scheduler", t.lr_scheduler,
           "--warmup", str(t.warmup_ratio), "--seed", str(t.seed)]
    env = {k: v for k, v in os.environ.items() if k != "SMOLFORGE_MALLOC_TUNE"}
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"TRL arm failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    r = json.loads(proc.stdout.strip().splitlines()[-1])
    c = r["tokens"]
    return Measured(r["train_runtime"], r["train_loss"], c["supervised"], c["real"], c["processed"], r["steps"])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=2000, help="chats in the data (one epoch unless --steps)")
    parser.add_argument("--steps", type=int, default=-1, help="optimizer steps per arm (default: one epoch)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=8, help="sequences per step, both arms")
    parser.add_argument("--breakdown", action="store_true", help="also run smolforge with each lever off")
    parser.add_argument("--quick", action="store_true", help="smoke run: 300 rows, 12 steps, 1 round")
    parser.add_argument("--json", action="store_true", help="also print the raw measurements as JSON")
    args = parser.parse_args()
    if args.quick:
        args.rows, args.steps, args.rounds = 300, 12, 1

    from smolforge.builtin_data import write_jsonl
    from smolforge.config.loading import load_config
    from smolforge.tiny import ensure_tiny

    cfg = load_config(preset="tiny")
    model = ensure_tiny(cfg.model.tiny)
    print(f"machine: {machine()}; torch threads default; {load()}", flush=True)
    arms = ["smolforge", *(LEVERS_OFF if args.breakdown else [])]
    runs: dict[str, list[Measured]] = {arm: [] for arm in ["trl", *arms]}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        data = work / "chats.jsonl"
        write_jsonl(long_tail_chats(args.rows, seed=7), data)
        for r in range(args.rounds):
            order = ["trl", *arms]
            order = order if r % 2 == 0 else order[::-1]
            for arm in order:
                name = f"{arm.replace(' ', '-')}-{r}"
                if arm == "trl":
                    m = trl_arm(work, name, model, data, args.steps, args.batch_size, cfg)
                else:
                    sets, env = LEVERS_OFF.get(arm, ([], {}))
                    m = smolforge_arm(work, name, data, args.steps, args.batch_size, sets, env)
                runs[arm].append(m)
                print(f"  round {r} {arm:28s} {m.seconds:7.1f} s {m.tokens_per_s:7.0f} tok/s supervised={m.supervised} "
                      f"real={m.real} processed={m.processed} loss={m.loss:.4f} {load()}", flush=True)

    base = runs["trl"]
    print(f"trl (plain SFTTrainer, padded): median {statistics.median(m.tokens_per_s for m in base):.0f} "
          f"supervised tok/s, waste {base[0].waste:.1%}")
    summary = {}
    for arm in arms:
        ms = runs[arm]
        st = ratio_stats([m.tokens_per_s / b.tokens_per_s for m, b in zip(ms, base, strict=True)])
        ok, why = equal_work(ms[0], base[0])
        summary[arm] = st
        print(f"{arm}: ratio median {st['median']:.2f} (min {st['min']:.2f}, max {st['max']:.2f}) "
              f"tok/s median {statistics.median(m.tokens_per_s for m in ms):.0f} waste {ms[0].waste:.1%} "
              f"equal_work={ok} ({why})")
    d = runs["smolforge"][0]
    ok, _ = equal_work(d, base[0])
    print(f"ratio={summary['smolforge']['median']:.2f} waste={d.waste:.1%} min={summary['smolforge']['min']:.2f} "
          f"max={summary['smolforge']['max']:.2f} equal_work={ok} rounds={args.rounds} steps={base[0].steps}"
          f" rows={args.rows} batch={args.batch_size} {load()}")
    if args.json:
        print(json.dumps({arm: [m.__dict__ for m in ms] for arm, ms in runs.items()}))


if __name__ == "__main__":
    main()
