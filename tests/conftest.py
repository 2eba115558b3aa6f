"""Shared test set-up: an isolated, offline environment and the real `smolforge` entry point.

Every test runs with HF_HOME, the smolforge cache and TRACKIO_DIR in temporary folders, no HF
token, and the Hub marked offline, so nothing can touch the network or the developer's files.
Tiny models are built once per session (they are cached by spec in SMOLFORGE_CACHE).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

# A tiny SmolLM3 small enough that a few dozen real training steps take seconds.
FAST_TINY = [
    "--set", "model.tiny.hidden_size=64", "--set", "model.tiny.intermediate_size=128",
    "--set", "model.tiny.num_layers=2", "--set", "model.tiny.num_heads=2",
    "--set", "model.tiny.num_kv_heads=1", "--set", "model.tiny.vocab_size=512",
    "--set", "evaluation.tasks=[]",  # the benchmark stage has its own tests (and the shared tiny run below)
]
# The shared run also compares base and fine-tune on a few items of the bundled suite.
EVAL_FEW = ["--set", "evaluation.tasks=[builtin]", "--set", "evaluation.limit=6", "--set", "evaluation.samples=3",
            "--set", "evaluation.retention_prompts=2", "--set", "evaluation.max_gen_tokens=16"]
SHORT_RUN = [
    "--set", "training.max_steps=24", "--set", "training.eval_steps=8", "--set", "training.save_steps=12",
    "--set", "training.logging_steps=4", "--set", "training.learning_rate=3e-3",
]
SMOLFORGE = str(Path(sys.executable).with_name("smolforge"))


# Fixtures that train a model: a test that uses one is in the slow lane (`make test-fast` leaves it out).
TRAINING_FIXTURES = {"tiny_run", "run_copy", "quantized_tiny_run", "quantized_copy"}


def pytest_collection_modifyitems(items):
    for item in items:
        if TRAINING_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


_SESSION_ENV: dict[str, str] = {}


@pytest.fixture(scope="session", autouse=True)
def isolated_env(tmp_path_factory):
    root = tmp_path_factory.mktemp("env")
    saved = dict(os.environ)
    for key in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_ENDPOINT", "WANDB_API_KEY"):
        os.environ.pop(key, None)
    os.environ.update({
        "HF_HOME": str(root / "hf"),
        "SMOLFORGE_CACHE": str(root / "smolforge-cache"),
        "TRACKIO_DIR": str(root / "trackio"),
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "HF_HUB_DISABLE_PROGRESS_BARS": "1",
        "TORCHAO_FORCE_SKIP_LOADING_SO_FILES": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "COLUMNS": "120",
    })
    _SESSION_ENV.update(os.environ)  # what the warm CLI starts with, whichever test first needs it
    yield root
    os.environ.clear()
    os.environ.update(saved)


@pytest.fixture(autouse=True)
def no_env_drift():
    """Each test starts from the session's environment. A command run in this process (`run_main`, or a stage
    called directly) sets variables of its own (processenv's offline and quiet switches, TORCHINDUCTOR_CACHE_DIR,
    HF_XET_HIGH_PERFORMANCE...); left behind, they would differ from the warm CLI's environment and send every
    later `run_cli` to a fresh interpreter (7 s of imports each). A broader fixture that runs a stage in this
    process (a module's shared run) sets them before this fixture starts, so the import-time ones are put back to
    the session's first (measured: they had sent 70 later commands of a `make test` to fresh interpreters)."""
    for key, value in import_time_env(dict(os.environ)):
        if _SESSION_ENV.get(key) != value:
            del os.environ[key]
    os.environ.update(dict(import_time_env(_SESSION_ENV)))
    saved = dict(os.environ)
    yield
    _restore_env(saved)


# Environment variables that libraries read when they are imported (Hub endpoint, caches, offline switches,
# threads, the import path): a command whose environment changes one of them needs a fresh interpreter.
IMPORT_TIME_ENV = ("HF_", "HUGGING", "TRANSFORMERS_", "PYTHON", "OMP_", "MKL_", "TORCH", "TRACKIO", "CUDA", "LD_",
                   "TOKENIZERS_", "DATASETS_", "PATH")


# ...but these are read when a token is needed (huggingface_hub's get_token reads os.environ at each call)
CALL_TIME_ENV = ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN")


def import_time_env(env: dict[str, str]) -> tuple[tuple[str, str], ...]:
    """The variables libraries read when they are imported: one warm process serves the commands that agree on
    them (a command whose environment changes one needs an interpreter that imported with it)."""
    return tuple(sorted((k, v) for k, v in env.items() if k.startswith(IMPORT_TIME_ENV) and k not in CALL_TIME_ENV))


class WarmCLI:
    """The `smolforge` command line run by forking a process that already imported the libraries
    (tests/forkserver.py): the console script's behaviour without its ~7 s of imports per call."""

    def __init__(self, folder: Path, env: dict[str, str] | None = None):
        self.socket = str(folder / "forkserver.sock")
        self.folder = folder
        self.env = dict(env if env is not None else os.environ)
        self.proc = subprocess.Popen([sys.executable, "-m", "tests.forkserver", self.socket],
                                     cwd=Path(__file__).resolve().parents[1], env=self.env, stdout=subprocess.PIPE,
                                     text=True)
        ready = self.proc.stdout.readline()
        if ready.strip() != "ready":
            raise RuntimeError(f"the warm smolforge did not start (exit code {self.proc.poll()})")
        self.calls = 0

    def run(self, args: list[str], cwd: Path | str, env: dict[str, str], input: str | None,
            timeout: float) -> subprocess.CompletedProcess:
        import socket

        self.calls += 1
        files = {name: self.folder / f"{self.calls}.{name}" for name in ("stdin", "stdout", "stderr")}
        files["stdin"].write_text(input or "", encoding="utf-8")
        files["stdout"].write_bytes(b"")
        files["stderr"].write_bytes(b"")
        request = {"argv": [SMOLFORGE, *args], "cwd": str(Path(cwd).resolve()), "env": env,
                   **{name: str(path) for name, path in files.items()}}
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
            conn.settimeout(timeout)
            conn.connect(self.socket)
            conn.sendall((json.dumps(request) + "\n").encode())
            reply = b""
            try:
                while reply.count(b"\n") < 2:
                    chunk = conn.recv(64)
                    if not chunk:
                        break
                    reply += chunk
            except TimeoutError:
                pid = int(reply.split(b"\n")[0]) if b"\n" in reply else None
                if pid:
                    os.kill(pid, signal.SIGKILL)
                raise subprocess.TimeoutExpired([SMOLFORGE, *args], timeout) from None
        lines = reply.decode().split()
        code = int(lines[1]) if len(lines) > 1 else -signal.SIGKILL  # died from a signal before reporting
        out, err = (files[n].read_text(encoding="utf-8") for n in ("stdout", "stderr"))
        for path in files.values():
            path.unlink()
        return subprocess.CompletedProcess([SMOLFORGE, *args], code, out, err)

    def start(self, args: list[str], cwd: Path | str, env: dict[str, str]) -> WarmProcess:
        """Start `smolforge ARGS` forked from the warm process and return at once, with its pid (to signal it)."""
        import socket

        self.calls += 1
        files = {name: self.folder / f"{self.calls}.{name}" for name in ("stdin", "stdout", "stderr")}
        for path in files.values():
            path.write_bytes(b"")
        request = {"argv": [SMOLFORGE, *args], "cwd": str(Path(cwd).resolve()), "env": env,
                   **{name: str(path) for name, path in files.items()}}
        conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        conn.connect(self.socket)
        conn.sendall((json.dumps(request) + "\n").encode())
        reply = b""
        while not reply.endswith(b"\n"):
            reply += conn.recv(1)
        return WarmProcess(conn, int(reply), files)

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait()


class WarmProcess:
    """A command the warm process forked and did not wait for: what the tests use of `subprocess.Popen` (pid,
    `poll`, `send_signal`, `kill`, `wait`, `communicate`, `returncode`). The command is not this process's child:
    its exit code arrives on the socket, and a socket closed without one means a signal ended it."""

    def __init__(self, conn, pid: int, files: dict[str, Path]):
        self.conn, self.pid, self.files = conn, pid, files
        self.returncode: int | None = None
        self._reply = b""

    def _read(self, timeout: float | None) -> None:
        self.conn.settimeout(timeout)
        try:
            while not self._reply.endswith(b"\n"):
                chunk = self.conn.recv(64)
                if not chunk:
                    self.returncode = -signal.SIGKILL  # died from a signal before reporting
                    return
                self._reply += chunk
        except (TimeoutError, BlockingIOError):
            return
        self.returncode = int(self._reply)

    def poll(self) -> int | None:
        if self.returncode is None:
            self._read(0.0)
        return self.returncode

    def send_signal(self, sig: int) -> None:
        os.kill(self.pid, sig)

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGKILL)

    def wait(self, timeout: float | None = None) -> int:
        if self.returncode is None:
            self._read(timeout)
        if self.returncode is None:
            raise subprocess.TimeoutExpired(["smolforge"], timeout)
        self.conn.close()
        return self.returncode

    def output(self) -> str:
        return self.files["stdout"].read_text(encoding="utf-8") + self.files["stderr"].read_text(encoding="utf-8")

    def communicate(self, timeout: float | None = None) -> tuple[str, None]:
        self.wait(timeout)
        return self.output(), None


def start_cli(*args: str, cwd: Path | str, env: dict | None = None) -> WarmProcess | subprocess.Popen:
    """Start `smolforge *args` without waiting (to signal or kill it mid-run): forked from the warm process like
    `run_cli`, or the console script itself when the environment needs a fresh interpreter (stdout and stderr
    together in `.output()` / `communicate()`)."""
    full_env = {k: v for k, v in {**os.environ, **(env or {})}.items() if v is not None}
    warm = None if os.environ.get("SMOLFORGE_TEST_FRESH") == "1" else _warm_for(full_env)
    if warm is not None:
        return warm.start(list(args), cwd, full_env)
    proc = subprocess.Popen([SMOLFORGE, *args], cwd=cwd, env=full_env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    proc.output = lambda: proc.stdout.read() if proc.stdout else ""  # type: ignore[attr-defined]
    return proc


_warm: WarmCLI | None = None


def _warm_for(full_env: dict[str, str]) -> WarmCLI | None:
    """The warm process, started with the session's environment; None when this command's import-time
    environment differs from it (a fork would not re-read it: a fresh interpreter does)."""
    global _warm
    if _warm is None:
        import tempfile

        _warm = WarmCLI(Path(tempfile.mkdtemp(prefix="smolforge-warm-")), _SESSION_ENV)
    return _warm if import_time_env(full_env) == import_time_env(_warm.env) else None


@pytest.fixture(scope="session", autouse=True)
def warm_cli_cleanup():
    yield
    if _warm is not None:
        _warm.close()


def run_cli(*args: str, cwd: Path | str, env: dict | None = None, check: bool = True,
            timeout: float = 600, input: str | None = None, fresh: bool = False) -> subprocess.CompletedProcess:
    """Run `smolforge *args` as a user would: the console script's behaviour, exit code and output. By default
    a warm process forks it (tests/forkserver.py); `fresh=True`, or an environment that changes what libraries
    read at import, starts the installed console script itself."""
    full_env = {k: v for k, v in {**os.environ, **(env or {})}.items() if v is not None}
    warm = None if fresh or os.environ.get("SMOLFORGE_TEST_FRESH") == "1" else _warm_for(full_env)
    proc = None if warm is None else warm.run(list(args), cwd, full_env, input, timeout)
    if proc is None:
        proc = subprocess.run([SMOLFORGE, *args], cwd=cwd, env=full_env, capture_output=True, text=True,
                              timeout=timeout, input=input)
    if check and proc.returncode != 0:
        raise AssertionError(f"smolforge {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> Path:
    """One real tiny SFT run through the CLI, shared by tests that only read its run folder."""
    work = tmp_path_factory.mktemp("tiny-run")
    proc = run_cli("run", "--preset", "tiny", "--yes", "--experiment-name", "shared", *FAST_TINY, *SHORT_RUN,
                   *EVAL_FEW, cwd=work)
    (work / "stdout.txt").write_text(proc.stdout)  # what the user saw, for tests of the console output
    return work / "runs" / "shared"


@pytest.fixture
def run_copy(tiny_run, tmp_path) -> Path:
    """A private copy of the shared run folder (without checkpoints) for tests that modify it."""
    import shutil

    dest = tmp_path / "run"
    shutil.copytree(tiny_run, dest, ignore=shutil.ignore_patterns("checkpoints"))
    return dest


@pytest.fixture(scope="session")
def quantized_tiny_run(tiny_run, tmp_path_factory) -> Path:
    """A copy of the shared run after `smolforge quantize --method int8 --method int4` (read-only)."""
    import shutil

    dest = tmp_path_factory.mktemp("quantized-run") / "run"
    shutil.copytree(tiny_run, dest, ignore=shutil.ignore_patterns("checkpoints"))
    run_cli("quantize", str(dest), "--method", "int8", "--method", "int4", cwd=dest.parent)
    return dest


@pytest.fixture
def quantized_copy(quantized_tiny_run, tmp_path) -> Path:
    """A private copy of the quantized run for tests that modify it (publish records, cards)."""
    import shutil

    dest = tmp_path / "run"
    shutil.copytree(quantized_tiny_run, dest)
    return dest


def run_main(*args: str, cwd: Path | str) -> int:
    """Run the CLI's real `main()` in this process (libraries are imported once for many runs).

    Used where a test needs many full runs; tests of the console script itself use run_cli.
    """
    import contextlib

    from smolforge.cli import main

    old_argv, old_cwd, old_env = sys.argv, os.getcwd(), dict(os.environ)
    sys.argv = ["smolforge", *args]
    try:
        os.chdir(cwd)
        with contextlib.suppress(SystemExit):
            try:
                main()
            except SystemExit as e:
                return int(e.code or 0)
        return 0
    finally:
        sys.argv = old_argv
        os.chdir(old_cwd)
        _restore_env(old_env)  # the run set variables (processenv, libraries): later commands must not see them


def _restore_env(saved: dict[str, str]) -> None:
    for key in set(os.environ) - set(saved):
        del os.environ[key]
    os.environ.update(saved)


def kill_when(argv: list[str], cwd: Path, appears: Callable[[], bool], timeout: float = 300) -> None:
    """Start `smolforge ARGV`, SIGKILL it (no handler runs) as soon as `appears()` is true: what a crash, an
    out-of-memory kill or a pulled plug does to a stage in the middle of its work."""
    import time

    proc = start_cli(*argv, cwd=cwd)
    deadline = time.monotonic() + timeout
    try:
        while not appears():
            assert proc.poll() is None, f"smolforge {' '.join(argv)} ended before it could be killed"
            assert time.monotonic() < deadline, "the moment to kill it never came"
            time.sleep(0.05)
    finally:
        proc.kill()
        proc.wait()
