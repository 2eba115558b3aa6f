"""Logging for a run: a plain-text file under logs/ and short lines on the console.

Library loggers (transformers, trl, datasets, peft, huggingface_hub) go to the file too, all
through the redacting filter, so a token can never reach disk through a library's message.
"""

from __future__ import annotations

import logging
from pathlib import Path

from smolforge.credentials import RedactingFilter

LIBRARY_LOGGERS = ["transformers", "trl", "datasets", "peft", "accelerate", "huggingface_hub", "trackio", "torchao",
                   "lm_eval"]
FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

log = logging.getLogger("smolforge")


def attach_file(logs_dir: Path, name: str = "run.log") -> logging.Handler:
    """Send smolforge's and the libraries' log records to logs/<name> (appending, for resumed runs)."""
    logs_dir.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(logs_dir / name, encoding="utf-8")
    handler.setFormatter(logging.Formatter(FORMAT))
    handler.addFilter(RedactingFilter())
    handler.setLevel(logging.INFO)
    logging.captureWarnings(True)
    for name_ in ["smolforge", "py.warnings", *LIBRARY_LOGGERS]:
        lg = logging.getLogger(name_)
        for existing in lg.handlers:  # libraries' own console handlers: warnings only, redacted
            if type(existing) is logging.StreamHandler:
                existing.setLevel(max(existing.level, logging.WARNING))
                existing.addFilter(RedactingFilter())
        lg.addHandler(handler)
        if lg.level == logging.NOTSET or lg.level > logging.INFO:
            lg.setLevel(logging.INFO)
    return handler


def detach(handler: logging.Handler) -> None:
    for name_ in ["smolforge", "py.warnings", *LIBRARY_LOGGERS]:
        logging.getLogger(name_).removeHandler(handler)
    handler.close()
