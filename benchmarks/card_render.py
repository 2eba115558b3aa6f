"""One card render in a process that has rendered before (the template compiled once, as a run renders its card
after each stage) against a render that compiles the template again (the baseline: what every render did before
`card/render.py` kept compiled templates).

    .venv/bin/python benchmarks/card_render.py [--renders 7]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import yaml

from smolforge.card import render
from smolforge.config.loading import validate
from smolforge.runfolder import RunFolder

FIXTURE = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "card" / "smollm3_reasoning"


def timed(run: RunFolder, renders: int, compile_again: bool) -> float:
    cfg = validate(yaml.safe_load(run.config_path.read_text()), "fixture")
    results = run.read_results()
    times = []
    for _ in range(renders):
        if compile_again:
            render._compiled.cache_clear()
        t0 = time.perf_counter()
        render.render_card(run, cfg, results)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--renders", type=int, default=7)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "run"
        shutil.copytree(FIXTURE, root, ignore=shutil.ignore_patterns("expected_*"))
        (root / "model").mkdir()
        run = RunFolder(root)
        timed(run, 1, compile_again=False)  # imports, the loss plot's first draw
        baseline = timed(run, args.renders, compile_again=True)
        cached = timed(run, args.renders, compile_again=False)
    print(f"compile_each_render_seconds={baseline:.3f} compiled_once_seconds={cached:.3f} "
          f"ratio={baseline / cached:.1f} (medians of {args.renders})")


if __name__ == "__main__":
    main()
