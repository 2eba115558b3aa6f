"""`smolforge quantize RUN_DIR [--method ...]`: quantized variants of a finished run, measured, then the card."""

from __future__ import annotations

from pathlib import Path

from smolforge import processenv
from smolforge.card.writer import refresh_card
from smolforge.commands.finished import logged, open_finished
from smolforge.config.outputs import GGUF_METHODS
from smolforge.credentials import cached_username
from smolforge.gguf.precheck import check_export
from smolforge.quantize import plan, quantize_run


def quantize_command(run_dir: Path, methods: list[str], console) -> None:
    """The variants asked for (else the config's, else int8), then the card."""
    done = open_finished(run_dir, "quantize")
    methods = methods or list(done.cfg.quantize.methods) or ["int8"]
    for m in methods:
        plan(m, "cpu")  # unknown names fail here, before anything is loaded
    if any(m in GGUF_METHODS for m in methods):
        check_export(done.cfg, done.run.model_dir)  # llama.cpp present, an architecture it converts: before loading
    processenv.prepare(done.cfg)
    with logged(done.run, "quantize"):
        quantize_run(done.run, done.cfg, methods, console)
        refresh_card(done.run, done.cfg, console, cached_username())
