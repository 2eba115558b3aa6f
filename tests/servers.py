"""Local HTTP servers the tests start as child processes: a free loopback port, and the wait until one answers."""

from __future__ import annotations

import socket
import subprocess
import time
import urllib.request
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until_served(proc: subprocess.Popen, url: str, log: Path, what: str, timeout: float) -> None:
    """Return once `url` answers 200; fail with the server's log if it exits first or does not answer in time."""
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise AssertionError(f"{what} exited ({proc.returncode}):\n{log.read_text()}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not answer in {timeout:.0f} s:\n{log.read_text()}")
        time.sleep(0.3)
