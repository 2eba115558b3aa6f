"""Whole-process time of `smolforge card RUN_DIR`, and proof it imports no torch.

Baseline in the same invocation: a bare `python -c pass` start-up, so the ratio shows what the
command costs beyond the interpreter itself. Target: under 1 s whole-process.

    .venv/bin/python benchmarks/card_speed.py [--runs 7]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FIXTURE = ROOT / "tests" / "fixtures" / "card" / "quantized"
SMOLFORGE = Path(sys.executable).with_name("smolforge")


def timed(cmd: list[str], runs: int) -> float:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp) / "run"
        shutil.copytree(FIXTURE, run, ignore=shutil.ignore_patterns("expected_*"))
        (run / "model").mkdir()
        (run / "model" / "model.safetensors").touch()  # `smolforge card` describes finished runs: weights exist
        (run / "quantized" / "int8").mkdir(parents=True)
        out = Path(tmp) / "card.md"
        card_cmd = [str(SMOLFORGE), "card", str(run), "--output", str(out), "--author-name", "bench"]
        subprocess.run(card_cmd, check=True, capture_output=True)  # warm the file cache (and draw the plot once)
        probe = subprocess.run(
            [sys.executable, "-c", "import sys; sys.argv=['smolforge', *sys.argv[1:]]\n"
             "from smolforge.cli import main\ntry:\n    main()\nexcept SystemExit:\n    pass\n"
             "print('torch' in sys.modules, 'transformers' in sys.modules)",
             "card", str(run), "--output", str(out)], check=True, capture_output=True, text=True).stdout.split()
        baseline = timed([sys.executable, "-c", "pass"], args.runs)
        card = timed(card_cmd, args.runs)
    print(f"card_seconds={card:.3f} python_startup_seconds={baseline:.3f} ratio={card / baseline:.1f} "
          f"torch_imported={probe[-2]} transformers_imported={probe[-1]} target_under_1s={'yes' if card < 1 else 'no'}")


if __name__ == "__main__":
    main()
