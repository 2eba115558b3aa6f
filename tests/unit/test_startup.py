"""`smolforge --help` and `smolforge presets` stay cheap: no torch, transformers or trl."""

from __future__ import annotations

import subprocess
import sys

import pytest

HEAVY = ("torch", "transformers", "trl", "peft", "datasets", "torchao", "gradio")


@pytest.mark.parametrize("argv", [["--help"], ["presets"], *(
    [cmd, "--help"] for cmd in ("run", "init", "card", "quantize", "publish", "demo", "dashboard", "doctor", "plan",
                                "reproduce"))])
def test_command_imports_no_heavy_library(argv):
    code = (
        "import sys\n"
        f"sys.argv = ['smolforge', *{argv!r}]\n"
        "from smolforge.cli import main\n"
        "try:\n    main()\nexcept SystemExit as e:\n    assert e.code in (0, None), e.code\n"
        f"loaded = [m for m in {HEAVY!r} if m in sys.modules]\n"
        "print('HEAVY:', loaded)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "HEAVY: []" in out, out
