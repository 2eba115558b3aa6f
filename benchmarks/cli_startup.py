"""`smolforge --help` against `python -c "import typer"`: the cost smolforge adds to a command line's start.

Both are started as a user starts them, alternately, and the medians are compared. The flag table must be
cached (any earlier `smolforge` command writes it), as it is after the first start.

    python benchmarks/cli_startup.py [--rounds 15]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path


def timed(argv: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()
    smolforge = str(Path(sys.executable).with_name("smolforge"))
    subprocess.run([smolforge, "--help"], check=True, stdout=subprocess.DEVNULL)  # writes the flag table
    typer_s, help_s = [], []
    for _ in range(args.rounds):
        typer_s.append(timed([sys.executable, "-c", "import typer"]))
        help_s.append(timed([smolforge, "--help"]))
    t, h = statistics.median(typer_s), statistics.median(help_s)
    print(f"import typer {t * 1000:.0f} ms, smolforge --help {h * 1000:.0f} ms (medians of {args.rounds})")
    print(f"ratio={h / t:.2f}")


if __name__ == "__main__":
    main()
