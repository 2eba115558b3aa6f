"""`smolforge run` in a terminal: it asks for an unknown license and confirms before training."""

from __future__ import annotations

import os

import pexpect
import pytest

from tests.conftest import FAST_TINY, SMOLFORGE
from tests.integration.test_wizard import ENTER, clean, finish, pat

pytestmark = pytest.mark.slow  # drives the CLI with the training libraries loaded (`make test` runs it)


def test_run_asks_for_an_unknown_license_then_confirms(tmp_path):
    env = {**os.environ, "TERM": "xterm", "PROMPT_TOOLKIT_NO_CPR": "1"}
    child = pexpect.spawn(SMOLFORGE, ["run", "--preset", "tiny", "--set", "card.license=null", *FAST_TINY],
                          cwd=str(tmp_path), env=env, dimensions=(60, 150), encoding="utf-8", timeout=60)
    import io

    screen = io.StringIO()
    child.logfile_read = screen
    child.expect(pat("License for the model card"))
    child.send("apache2")  # not a Hub id: refused with the reason, the prompt stays
    child.send(ENTER)
    child.expect(pat("Type a Hub license id"))
    child.send("\x15mit")  # Ctrl-U clears, then a valid id
    child.send(ENTER)
    child.expect(pat("Start training?"))
    child.send("n")
    child.send(ENTER)
    assert finish(child) == 2
    text = clean(screen)
    assert "License" in text and "mit" in text
    assert "Stopped before training; nothing was written." in text
    assert not (tmp_path / "runs").exists()
