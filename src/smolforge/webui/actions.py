"""After training: evaluate, quantize, publish and serve the chat demo of a finished run, each as the CLI command
itself (`smolforge evaluate RUN ...` in a child process), so the UI's results, progress lines and error paragraphs
are the CLI's. A Hub token typed into the UI reaches the child in its environment, never its arguments, and is
never shown or written."""

from __future__ import annotations

import os
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from smolforge.credentials import find_token, redact, register_secret
from smolforge.errors import SmolforgeError
from smolforge.netports import choose_port
from smolforge.paths import smolforge_executable
from smolforge.runfolder import RunFolder

ACTIONS = ("evaluate", "quantize", "publish")


def token_present() -> bool:
    """Whether a Hub token is already there (HF_TOKEN or the Hub's login cache): then the UI asks for none."""
    return find_token()[0] is not None


def _finished(run_dir: Path) -> None:
    if not RunFolder(run_dir).finished():
        raise SmolforgeError(f"{run_dir} has not finished training: evaluate, quantize, publish and the demo work "
                             "on a trained run (resume a stopped one first).")


def command(action: str, run_dir: Path, option: str | None = None) -> list[str]:
    """The CLI command an action runs (the words after `smolforge`)."""
    if action not in ACTIONS:
        raise SmolforgeError(f"Unknown action {action!r}: one of {', '.join(ACTIONS)}.")
    args = [action, str(run_dir)]
    if option:
        args += {"evaluate": ["--tasks"], "quantize": ["--method"], "publish": ["--repo-id"]}[action] + [option]
    return args


def stream(action: str, run_dir: Path, option: str | None = None, token: str | None = None,
           cwd: Path | None = None) -> Iterator[tuple[str, int | None]]:
    """Run the action; yield (output so far, exit code once it ended)."""
    _finished(run_dir)
    env = dict(os.environ)
    if token:
        register_secret(token)
        env["HF_TOKEN"] = token
    proc = subprocess.Popen([smolforge_executable(), *command(action, run_dir, option)], cwd=cwd,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True,
                            env={**env, "COLUMNS": "120"})
    out = ""
    assert proc.stdout is not None
    for line in proc.stdout:
        out += redact(line)
        yield out, None
    yield out, proc.wait()


def run(action: str, run_dir: Path, option: str | None = None, token: str | None = None,
        cwd: Path | None = None) -> dict[str, Any]:
    """Run the action to its end: {"exit_code", "output"}."""
    *_, (out, code) = stream(action, run_dir, option, token, cwd)
    return {"exit_code": code, "output": out}


def serve_demo(run_dir: Path, log_dir: Path, cwd: Path | None = None, wait_s: float = 120.0) -> str:
    """`smolforge demo RUN --serve` in its own session (it keeps serving after the UI stops); its URL."""
    _finished(run_dir)
    port = choose_port(None)
    log_dir.mkdir(parents=True, exist_ok=True)
    log = log_dir / f"{run_dir.name}.demo.out"
    with log.open("w", encoding="utf-8") as out:
        proc = subprocess.Popen([smolforge_executable(), "demo", str(run_dir), "--serve", "--port", str(port)],
                                cwd=cwd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SmolforgeError(f"The demo stopped: {log.read_text(encoding='utf-8').strip().splitlines()[-1:]}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return url
        except OSError:
            time.sleep(0.5)
    raise SmolforgeError(f"The demo did not answer at {url} within {wait_s:.0f} s; see {log}.")
