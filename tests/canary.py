"""A secret in the environment of a command that writes launcher files, and the check that it is written
nowhere: the same helper for the SLURM script and the SkyPilot task."""

from __future__ import annotations

from pathlib import Path

CANARY = "hf_CanaryTokenLauncher0123456789abcdef"


def assert_written_nowhere(folder: Path, *outputs: str) -> None:
    """No file under `folder` (text or binary, a wheel included) and no output holds the canary."""
    for path in folder.rglob("*"):
        if path.is_file():
            assert CANARY.encode() not in path.read_bytes(), f"the secret is in {path}"
    for text in outputs:
        assert CANARY not in text
