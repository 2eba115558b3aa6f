"""User-facing errors: one paragraph that names the field or file and the fix.

The CLI turns any `SmolforgeError` into that paragraph on stderr and exit code 2, without a
traceback. Code raises these for bad input; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


def first_line(err: BaseException | str) -> str:
    """The first non-blank line of an error message, or the exception's type name when it has none.

    Error paragraphs quote a library's message; an empty one must not turn into an IndexError. Its closing
    period is dropped: the paragraph goes on with its own punctuation (no "files.. Check").
    """
    text = err if isinstance(err, str) else str(err)
    line = next((s.strip().rstrip(".").rstrip() for s in text.splitlines() if s.strip().rstrip(".")), "")
    return line or (type(err).__name__ if isinstance(err, BaseException) else "(no message)")


class SmolforgeError(Exception):
    """Bad input or environment the user can fix; `str(err)` is the whole message."""

    exit_code = 2


class ConfigError(SmolforgeError):
    """One or more config problems, all collected before anything runs."""

    def __init__(self, source: str, problems: list[str], hint: str | None = None):
        self.source = source
        self.problems = problems
        n = len(problems)
        lines = [f"{n} problem{'s' if n != 1 else ''} in {source}:"]
        lines += [f"  - {p}" for p in problems]
        lines.append(hint or "Fix the value in the YAML file, or override it with --set section.key=value.")
        super().__init__("\n".join(lines))


class Interrupted(SmolforgeError):
    """Training stopped on a signal (Ctrl-C, SIGTERM, ...) after saving a checkpoint when it could. The message
    says where it stopped and the command that resumes it; the exit code is 128 + the signal, as a shell reports
    a process the signal ended."""

    def __init__(self, message: str, signum: int, step: int | None = None, checkpoint: str | None = None):
        super().__init__(message)
        self.signum, self.step, self.checkpoint = signum, step, checkpoint
        self.exit_code = 128 + signum


class PeerLost(SmolforgeError):
    """A training process lost the others mid-run (a node stopped, crashed or became unreachable); the launcher
    turns it into the paragraph that names the lost node, the last checkpoint and how to resume."""


class DataError(SmolforgeError):
    """The dataset cannot be read or its columns do not match a known format."""


class PublishError(SmolforgeError):
    """The push to the Hub failed; local files are intact."""

    exit_code = 1
