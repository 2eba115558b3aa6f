"""Training processes through torchrun: one node (`--standalone`) or several (c10d rendezvous).

torchrun's own launcher runs inside this process (`torch.distributed.run`'s argument parser and
`elastic_launch`, which is what the `torchrun` command calls), so its failures arrive as exceptions:
a rendezvous that cannot be reached or that not every node joins, a training process that failed
(with the one-paragraph error it recorded), or the signal that stopped the run. DDP and FSDP take
the same path (FSDP is configured through the trainer's arguments, see `fsdp.py`).

Each process runs `smolforge.worker` on the run folder; the token, if any, travels in the
environment, never in argv (visible to every process on the machine).
"""

from __future__ import annotations

import logging
import os
import shlex
import signal
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from smolforge import fsdp
from smolforge.config import TrainingSection
from smolforge.credentials import redact
from smolforge.errors import Interrupted, SmolforgeError, first_line
from smolforge.resume import last_checkpoint
from smolforge.runfolder import RunFolder

NODE_RANK_ENV = "SMOLFORGE_NODE_RANK"  # training.node_rank (torchrun's own group rank follows arrival order)
COMMAND_ENV = "SMOLFORGE_COMMAND"  # the `smolforge` command line that started this node's processes (redacted)
JOINED_ENV = "SMOLFORGE_JOINED_FILE"  # a file this node's processes write once they met every other process
STOPPED = (130, 143)  # a worker that saved a checkpoint after SIGINT / SIGTERM
HANDLED_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT)  # torchrun forwards these


POLL_S = 0.5


def wait_until(check, seconds: float) -> bool:
    """Poll `check()` until it is true or `seconds` have passed."""
    deadline = time.monotonic() + seconds
    while True:
        if check():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(POLL_S)


def torchrun_args(t: TrainingSection, run: RunFolder, resume_from: Path | None) -> list[str]:
    """The torchrun command line (without the `torchrun` itself) for this node of the run."""
    if t.nnodes == 1:
        # what `torchrun --standalone` does: a private rendezvous on a free local port
        where = ["--rdzv-backend=c10d", "--rdzv-endpoint=localhost:0", f"--rdzv-id={uuid.uuid4()}"]
    else:
        # c10d: node 0 hosts the rendezvous store at the endpoint (is_host), the others connect to it. Both
        # timeouts are training.rdzv_timeout: reaching the store and waiting for every node to join.
        host = 1 if t.node_rank == 0 else 0
        timeout = t.rdzv_timeout
        where = [f"--nnodes={t.nnodes}", "--rdzv-backend=c10d", f"--rdzv-endpoint={t.rdzv_endpoint}",
                 f"--rdzv-id=smolforge-{run.root.resolve().name}",
                 f"--rdzv-conf=is_host={host},join_timeout={timeout},read_timeout={timeout}"]
    worker = [str(run.root.resolve())] + (["--resume-from", str(resume_from.resolve())] if resume_from else [])
    return [*where, f"--nproc-per-node={t.nproc}", "--max-restarts=0", "--module", "smolforge.worker", *worker]


def this_command() -> str | None:
    """The `smolforge` command line of this process, redacted; in a training process under torchrun, the one that
    launched it (None when neither is known)."""
    if sys.argv and Path(sys.argv[0]).name == "smolforge":
        return redact("smolforge " + " ".join(shlex.quote(a) for a in sys.argv[1:]))
    return os.environ.get(COMMAND_ENV)


def worker_environment(t: TrainingSection) -> dict[str, str]:
    """What the training processes need in their environment besides ours (which they inherit, token included)."""
    env: dict[str, str] = {NODE_RANK_ENV: str(t.node_rank)}
    command = this_command()
    if command:  # a training process records the command its segment was started with (results.json, the card)
        env[COMMAND_ENV] = command
    if "OMP_NUM_THREADS" not in os.environ:  # the node's processes share its cores instead of each taking all
        env["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // t.nproc))
    if t.distributed == "fsdp":
        env.update(fsdp.loading_environment())
    return env


PEER_LOST = "PeerLost: "  # how a worker's PeerLost paragraph starts in its error file


def _failure_text(failure: Any) -> str:
    """The paragraph a worker recorded (ErrorHandler's JSON error file), else its exit status; a lost peer keeps
    its `PEER_LOST` prefix for run_workers."""
    message = failure.message
    if isinstance(message, dict):
        message = message.get("message", "")
    text = str(message or "")
    if text.startswith("SmolforgeError: "):
        return text[len("SmolforgeError: "):]
    if text.startswith(PEER_LOST):
        return text
    if failure.exitcode < 0:
        return f"it was killed by signal {-failure.exitcode} ({failure.signal_name()})"
    return f"exit code {failure.exitcode}"


def _rendezvous_error(t: TrainingSection, e: BaseException) -> SmolforgeError:
    from torch.distributed.elastic.rendezvous.api import RendezvousConnectionError, RendezvousTimeoutError

    endpoint, node = t.rdzv_endpoint, f"node {t.node_rank} of {t.nnodes}"
    if isinstance(e, RendezvousConnectionError | ConnectionError) and t.node_rank == 0:
        return SmolforgeError(
            f"{node} could not host the rendezvous at {endpoint} ({_cause(e)}). Node 0 listens there, so "
            "training.rdzv_endpoint must be an address of this machine and a port no other program uses; fix "
            "--rdzv-endpoint (the same on every node) and start the nodes again.")
    if isinstance(e, RendezvousConnectionError | ConnectionError):
        return SmolforgeError(
            f"{node} could not reach the rendezvous at {endpoint} within {t.rdzv_timeout} s "
            "(training.rdzv_timeout). Start node 0 with the same --rdzv-endpoint, check that the host name "
            "resolves to node 0 from this machine and that the port is open between the nodes, then start this "
            "node again.")
    if isinstance(e, RendezvousTimeoutError):
        return SmolforgeError(
            f"Not every node joined the rendezvous at {endpoint} within {t.rdzv_timeout} s "
            f"(training.rdzv_timeout; {node} was waiting for {t.nnodes} nodes). Start `smolforge run` with "
            f"--nnodes {t.nnodes}, the same --rdzv-endpoint and node ranks 0 to {t.nnodes - 1} on every node, or "
            "raise training.rdzv_timeout if the nodes start far apart.")
    return SmolforgeError(f"The rendezvous at {endpoint} failed for {node}: {_cause(e)}. Start every node again.")


def _cause(e: BaseException) -> str:
    inner = e.__cause__ or e.__context__
    return first_line(inner) if inner is not None else first_line(e)


def _host_port(t: TrainingSection) -> tuple[str, int]:
    host, _, port = str(t.rdzv_endpoint).rpartition(":")
    return host.strip("[]"), int(port)


def check_endpoint(t: TrainingSection) -> None:
    """Before torchrun meets the other nodes (which it reports with C++ stack traces when it fails): node 0 can
    listen at the endpoint (an address of this machine, a free port); another node waits, up to
    training.rdzv_timeout, until node 0 listens there. Either failure is one message naming the endpoint."""
    import socket

    host, port = _host_port(t)
    if t.node_rank == 0:
        try:
            family, kind, _, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
            with socket.socket(family, kind) as probe:
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as torch's store does
                probe.bind(address)
        except OSError as e:
            raise _rendezvous_error(t, ConnectionError(e.strerror or str(e))) from None
        return

    def listening() -> bool:
        try:
            with socket.create_connection((host, port), timeout=2):
                return True
        except OSError:
            return False

    if not wait_until(listening, t.rdzv_timeout):
        raise _rendezvous_error(t, ConnectionError(f"nothing listens at {t.rdzv_endpoint}"))


def run_workers(t: TrainingSection, run: RunFolder, resume_from: Path | None) -> None:
    """Start this node's training processes and wait for them; an error when they fail, `Interrupted` (with the
    last complete checkpoint and the resume command) when a signal stopped them."""
    if t.nnodes > 1:
        check_endpoint(t)
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.elastic.rendezvous.api import RendezvousError
    from torch.distributed.launcher.api import elastic_launch
    from torch.distributed.run import config_from_args, parse_args

    config, entrypoint, args = config_from_args(parse_args(torchrun_args(t, run, resume_from)))
    joined = Path(tempfile.mkstemp(prefix="smolforge-joined-")[1])
    env = {**worker_environment(t), JOINED_ENV: str(joined)}
    saved_env = {k: os.environ.get(k) for k in env}
    os.environ.update(env)  # the launcher hands its own environment to the workers
    saved_handlers = {s: signal.getsignal(s) for s in HANDLED_SIGNALS}  # the launcher installs its own
    # torchrun's agent logs each failure it raises; smolforge turns the exception into one message instead
    agent_log = logging.getLogger("torch.distributed.elastic")
    saved_level = agent_log.level
    agent_log.setLevel(logging.CRITICAL)
    try:
        elastic_launch(config=config, entrypoint=entrypoint)(*args)
    except SignalException as e:
        raise _interrupted(run, t, int(e.sigval)) from None
    except ChildFailedError as e:
        codes = {f.exitcode for f in e.failures.values()}
        if codes <= set(STOPPED):
            raise _interrupted(run, t, max(codes) - 128) from None
        texts = {rank: _failure_text(f) for rank, f in e.failures.items()}
        if all(text.startswith(PEER_LOST) for text in texts.values()):
            raise _node_lost(run, t, texts[min(texts)][len(PEER_LOST):]) from None
        rank, text = sorted(texts.items())[0]
        raise SmolforgeError(f"Training process {rank} failed: {text} (its log: "
                             f"{run.logs_dir / ('run.log' if rank == 0 else f'rank{rank}.log')})") from None
    except RendezvousError as e:
        if joined.read_text(encoding="utf-8").strip():  # the nodes had met: node 0, which hosts the store, went away
            raise _node_lost(run, t, _cause(e)) from None
        raise _rendezvous_error(t, e) from None
    finally:
        joined.unlink(missing_ok=True)
        agent_log.setLevel(saved_level)
        for s, handler in saved_handlers.items():
            signal.signal(s, handler)
        for k, v in saved_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _interrupted(run: RunFolder, t: TrainingSection, signum: int) -> Interrupted:
    ckpt = last_checkpoint(run)
    saved = f"the last complete checkpoint is {ckpt}" if ckpt else "there is no complete checkpoint yet"
    return Interrupted(f"Training stopped; {saved}. Resume with: {resume_command(run, t)}", signum,
                       checkpoint=str(ckpt) if ckpt else None)


def _node_lost(run: RunFolder, t: TrainingSection, cause: str) -> SmolforgeError:
    """One paragraph for a run that lost a node mid-training: which node, the checkpoint to resume from, and the
    command for every node."""
    if t.node_rank != 0:
        lost = "node 0, which hosts the rendezvous, stopped or became unreachable"
    elif t.nnodes == 2:
        lost = "node 1 stopped or became unreachable"
    else:
        lost = f"one of the other {t.nnodes - 1} nodes stopped or became unreachable"
    ckpt = last_checkpoint(run)
    saved = (f"The last complete checkpoint is step {ckpt.name.rsplit('-', 1)[-1]} ({ckpt})" if ckpt else
             "No checkpoint was complete yet, so a resume starts over from step 0")
    per_node = " and ".join(f"`{resume_command(run, t.model_copy(update={'node_rank': r}), every=False)}` on node {r}"
                            for r in range(t.nnodes)) if t.nnodes <= 4 else \
        f"`{resume_command(run, t)}`"
    cause = cause.split(". ", 1)[0].rstrip(".")
    return SmolforgeError(f"Training stopped on node {t.node_rank} of {t.nnodes}: {lost} ({cause}). {saved}. When "
                          f"every node is back, resume with {per_node}.")


def resume_command(run: RunFolder, t: TrainingSection, every: bool = True) -> str:
    """The command that continues the run on this node."""
    cmd = f"smolforge run {shlex.quote(str(run.root))} --resume"
    if t.nnodes > 1:
        cmd += f" --nnodes {t.nnodes} --node-rank {t.node_rank} --rdzv-endpoint {t.rdzv_endpoint}"
        if every:
            cmd += " (on every node, each with its own --node-rank)"
    return cmd

