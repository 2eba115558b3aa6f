"""Keep lm-eval's and datasets' own console output (tqdm bars, warnings) off the user's terminal.

smolforge draws one progress display for the whole evaluation; the libraries' bars and warnings
would interleave with it. Their stderr output is captured and sent to the log at DEBUG instead,
so nothing is lost from the run log. Two lm-eval helpers are replaced for the duration: the git
lookup (it runs `git describe` in the caller's directory, printing "fatal: not a git repository"
outside one, and describes the caller's repository, not the model) and the environment report
(half a second of subprocesses per call, for information smolforge records itself).
"""

from __future__ import annotations

import contextlib
import io
import logging
from collections.abc import Iterator
from unittest import mock

log = logging.getLogger("smolforge.evaluation")


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    buf = io.StringIO()
    patches = [mock.patch("lm_eval.evaluator.get_git_commit_hash", return_value=None),
               mock.patch("lm_eval.evaluator.add_env_info", return_value=None)]
    try:
        with contextlib.ExitStack() as stack:
            for p in patches:
                stack.enter_context(p)
            stack.enter_context(contextlib.redirect_stderr(buf))
            yield
    finally:
        captured = buf.getvalue().strip()
        if captured:
            log.debug("library output:\n%s", captured)
