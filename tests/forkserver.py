"""A warm `smolforge` for the tests: one process imports the training libraries once, then forks a child per
command line, which runs the CLI's real `main()` as the console script would.

Starting `smolforge` costs ~7 s of imports (torch, transformers, TRL, PEFT, lm-eval) before the first line
of work; most tests run the CLI for seconds after that. A forked child is a fresh process in every other
respect: its own pid, environment, working directory, argv, stdin/stdout/stderr files, exit code, and its own
copy of every library's state, so nothing one command does reaches the next (unlike running `main()` in the
test process). What a fork cannot give is a fresh read of environment variables that libraries read when they
are imported (HF_ENDPOINT, HF_HOME, offline switches, thread counts): `run_cli` starts a real interpreter
whenever a test changes one of those (`import_time_env`); a Hub token is read at each call, so it does not.

Protocol, one UNIX-socket connection per command: the client sends one JSON line {argv, cwd, env, stdin,
stdout, stderr} (file paths); the child answers with a line holding its pid, and, when `main()` returns, a
line holding its exit code. A child that dies from a signal closes the connection without the second line.
"""

from __future__ import annotations

import atexit
import json
import os
import signal
import socket
import sys

# Imported once here, before any child is forked. None of them starts a thread or an OpenMP pool on import, which
# is what makes forking after them safe.
WARM_MODULES = ("torch", "transformers", "trl", "peft", "datasets", "accelerate", "lm_eval",
                "lm_eval.models.huggingface", "smolforge.cli", "smolforge.commands.run", "smolforge.commands.evaluate",
                "smolforge.commands.quantize", "smolforge.commands.publish", "smolforge.commands.reproduce",
                "smolforge.commands.plan", "smolforge.commands.data", "trackio", "matplotlib.pyplot")


def _child(conn: socket.socket, request: dict) -> None:
    """In the forked child: become the command line described by `request`, run it, report, exit."""
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)  # the server ignores it; a command's own subprocesses need it
    os.setpgrp()  # like a process started on its own: a signal to the test's process group does not reach it
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    for fd, path, mode in ((0, request["stdin"], os.O_RDONLY), (1, request["stdout"], os.O_WRONLY),
                           (2, request["stderr"], os.O_WRONLY)):
        target = os.open(path, mode)
        os.dup2(target, fd)
        os.close(target)
    sys.argv = list(request["argv"])
    conn.sendall(f"{os.getpid()}\n".encode())
    code = 1
    try:
        from smolforge.cli import main

        main()
        code = 0
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    except BaseException:  # main() maps every error itself; anything left is a bug, shown as the script would
        import traceback

        traceback.print_exc()
        code = 1
    finally:
        try:
            atexit._run_exitfuncs()  # what interpreter shutdown runs (library flushes, temp-dir cleanup)
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            try:
                conn.sendall(f"{code}\n".encode())
            finally:
                os._exit(code)


def serve(path: str) -> None:
    import importlib

    import matplotlib

    matplotlib.use("Agg")  # what the card's loss plot selects; pyplot then imports no GUI toolkit
    for name in WARM_MODULES:
        importlib.import_module(name)
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # children are reaped by the kernel
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen(8)
    print("ready", flush=True)
    while True:
        conn, _ = server.accept()
        line = b""
        while not line.endswith(b"\n"):
            chunk = conn.recv(65536)
            if not chunk:
                break
            line += chunk
        if not line.strip():
            conn.close()
            continue
        request = json.loads(line)
        if request.get("stop"):
            conn.close()
            return
        if os.fork() == 0:
            server.close()
            _child(conn, request)
        conn.close()


if __name__ == "__main__":
    serve(sys.argv[1])
