"""Entry point of one training process under torchrun / accelerate (`smolforge run --nproc N`).

The parent wrote config.yaml; every rank reads it, prepares the same data, and trains; rank 0
writes model/ and results.json. Tokens reach workers through the environment, never argv.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="smolforge-worker")
    parser.add_argument("run_dir")
    parser.add_argument("--resume-from", default=None)
    args = parser.parse_args(argv)

    from smolforge import processenv
    from smolforge.runfolder import RunFolder

    run = RunFolder(Path(args.run_dir))
    cfg = run.read_config()
    processenv.prepare(cfg)
    from smolforge import logs
    from smolforge.data import prepare
    from smolforge.train import Interrupted, train

    rank = int(os.environ.get("RANK", "0"))
    handler = logs.attach_file(run.logs_dir, "run.log" if rank == 0 else f"rank{rank}.log")
    try:
        data = prepare(cfg.data, cfg.training.method)
        try:
            results = train(cfg, run, data, console=None,
                            resume_from=Path(args.resume_from) if args.resume_from else None)
        except Interrupted as e:
            print(f"rank {rank}: stopped at step {e.step}, checkpoint {e.checkpoint}", file=sys.stderr)
            return 128 + e.signum
        if rank == 0:
            run.write_results(results)
    finally:
        logs.detach(handler)
    return 0


if __name__ == "__main__":
    sys.exit(main())
