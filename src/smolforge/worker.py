"""Entry point of one training process under torchrun (`smolforge run` with several processes or nodes).

The launching node wrote config.yaml (node 0) or found it (the other nodes); every rank reads it,
joins the others, checks that they all see this run folder, prepares the same data, and trains;
global rank 0 writes model/ and results.json. Tokens reach workers through the environment,
never argv. An error is one paragraph, recorded for the launcher (torchrun's error file) so the
node's `smolforge run` prints it.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from smolforge import logs, nodes, processenv
from smolforge.console import make_console
from smolforge.credentials import redact
from smolforge.data import prepare
from smolforge.errors import Interrupted, PeerLost, SmolforgeError
from smolforge.runfolder import RunFolder
from smolforge.train import train


def _record_error(e: BaseException) -> int:
    """Hand the paragraph to torchrun (its JSON error file, read back by the launcher) and print it here."""
    from torch.distributed.elastic.multiprocessing.errors import ErrorHandler

    ErrorHandler().record_exception(e)
    if not isinstance(e, PeerLost):  # the launcher says which node was lost, once for the node
        print(f"error: {redact(str(e))}", file=sys.stderr, flush=True)
    return 2


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="smolforge-worker")
    parser.add_argument("run_dir")
    parser.add_argument("--resume-from", default=None)
    args = parser.parse_args(argv)

    run = RunFolder(Path(args.run_dir))
    resume_from = Path(args.resume_from) if args.resume_from else None
    rank = int(os.environ.get("RANK", "0"))
    try:
        cfg = run.read_config()
    except SmolforgeError as e:
        return _record_error(e)
    processenv.prepare(cfg)

    handler = logs.attach_file(run.logs_dir, "run.log" if rank == 0 else f"rank{rank}.log")
    try:
        nodes.start_process_group(cfg)
        topology = nodes.meet(run, cfg.training, resume_from)
        nodes.mark_joined()
        data = prepare(cfg.data, cfg.training.method)
        try:
            # global rank 0 shows the run's progress on its node's console, as a single process does
            console = make_console() if rank == 0 else None
            results = train(cfg, run, data, console=console, resume_from=resume_from, topology=topology)
        except Interrupted as e:
            print(f"rank {rank}: stopped at step {e.step}, checkpoint {e.checkpoint}", file=sys.stderr)
            return 128 + e.signum
        except Exception as e:  # a collective failed because another process went away: one paragraph, no traceback
            if not nodes.lost_peer(e):
                raise
            raise PeerLost(f"training process {rank}: {nodes.peer_failure(e)}") from None
        if rank == 0:
            run.write_results(results)
        nodes.finish()
    except SmolforgeError as e:
        logs.log.error("%s", e)
        return _record_error(e)
    finally:
        logs.detach(handler)
    return 0


if __name__ == "__main__":
    sys.exit(main())
