"""`smolforge --help` and `smolforge presets` stay cheap: no torch, transformers or trl."""

from __future__ import annotations

import os
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


@pytest.mark.parametrize("argv", [["--help"], ["slurm", "--help"], ["evaluate", "--help"]])
def test_help_does_not_import_the_schema_once_the_flag_table_is_cached(argv, tmp_path):
    """pydantic alone costs more than typer: the flags come from the cached table (benchmarks/cli_startup.py
    measures the ratio to `import typer`). The first start reads the schema and writes the table. (typer
    itself imports pydantic to convert some options of a subcommand, so only the top-level help is free of it.)"""
    code = (
        "import sys\n"
        f"sys.argv = ['smolforge', *{argv!r}]\n"
        "from smolforge.cli import main\n"
        "try:\n    main()\nexcept SystemExit as e:\n    assert e.code in (0, None), e.code\n"
        "print('LOADED:', [m for m in ('smolforge.config.schema', 'pydantic') if m in sys.modules])\n"
    )
    env = {**os.environ, "SMOLFORGE_CACHE": str(tmp_path)}
    first = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env).stdout
    assert "LOADED: ['smolforge.config.schema', 'pydantic']" in first, first
    assert len(list(tmp_path.glob("cli-flags-*.json"))) == 1
    second = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env).stdout
    assert "LOADED: []" in second if argv == ["--help"] else "LOADED: ['smolforge.config.schema'" not in second, second
    assert first.split("LOADED:")[0] == second.split("LOADED:")[0]  # the same help either way


def test_a_changed_schema_is_read_again(tmp_path, monkeypatch):
    from smolforge import cliflags

    monkeypatch.setenv("SMOLFORGE_CACHE", str(tmp_path))
    cliflags.flag_table.cache_clear()
    rows = cliflags.flag_table()
    assert {r["path"] for r in rows} >= {"training.learning_rate", "card.author_name"}
    (tmp_path / next(tmp_path.glob("cli-flags-*.json")).name).write_text("[]")  # a stale table under this key
    cliflags.flag_table.cache_clear()
    assert cliflags.flag_table() == ()  # the key says the schema is unchanged: the table is trusted
    monkeypatch.setattr(cliflags, "_sources_key", lambda: "0" * 16)  # a schema edit changes the key
    cliflags.flag_table.cache_clear()
    assert cliflags.flag_table() == rows
    cliflags.flag_table.cache_clear()
