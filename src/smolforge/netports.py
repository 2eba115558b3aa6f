"""Ports for the apps smolforge serves on 127.0.0.1 (the demo, the dashboard)."""

from __future__ import annotations

import socket

from smolforge.errors import SmolforgeError

FIRST_PORT = 7860  # Gradio's usual port; the next free one is taken when it is busy


def _free(port: int, host: str) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def choose_port(port: int | None, host: str = "127.0.0.1", flag: str = "--port") -> int:
    """The port asked for (it must be free), else the first free one from 7860."""
    if port is not None:
        if not 1 <= port <= 65535:
            raise SmolforgeError(f"{flag} {port} is not a TCP port: use a number between 1 and 65535.")
        if not _free(port, host):
            raise SmolforgeError(f"{flag} {port} is already in use on {host}. Stop what listens there, pass another "
                                 f"port, or leave {flag} out to take the first free one.")
        return port
    for candidate in range(FIRST_PORT, FIRST_PORT + 100):
        if _free(candidate, host):
            return candidate
    raise SmolforgeError(f"No free port from {FIRST_PORT} to {FIRST_PORT + 99} on {host}. Pass one with {flag}.")
