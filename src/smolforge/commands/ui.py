"""`smolforge ui [--port N] [--host 127.0.0.1] [--no-browser] [--runs-dir DIR]`: the web app, until Ctrl-C."""

from __future__ import annotations

from pathlib import Path

from smolforge.netports import choose_port
from smolforge.webui.api import UiContext
from smolforge.webui.app import build

LOOPBACK = ("127.0.0.1", "localhost", "::1")


def ui_command(port: int | None, host: str, open_browser: bool, runs_dir: Path | None, console) -> None:
    """Serve the UI; on a host other than loopback, warn, and let configs read files only under the working
    directory and the runs folder."""
    cwd = Path.cwd().resolve()
    runs = (runs_dir or Path("runs")).expanduser()
    runs = (runs if runs.is_absolute() else cwd / runs).resolve()
    loopback = host in LOOPBACK
    if not loopback:
        console.print(f"Warning: listening on {host}: anyone who can reach this port can start runs on this "
                      f"machine. Configs may read files only under {cwd} and {runs}.", markup=False)
    chosen = choose_port(port, host if loopback else "0.0.0.0")
    app = build(UiContext(runs, cwd, None if loopback else [cwd, runs]))
    shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    console.print(f"smolforge ui on http://{shown}:{chosen}/ (runs folder {runs}); Ctrl-C stops the UI, not the "
                  "runs it started.", markup=False)
    try:
        app.queue(default_concurrency_limit=4).launch(server_name=host, server_port=chosen, inbrowser=open_browser,
                                                      quiet=True, show_error=True, allowed_paths=[str(runs)])
    except KeyboardInterrupt:
        pass
    finally:
        app.close()
    console.print("Stopped the UI. Runs it started keep running; `smolforge ui` lists them again.", markup=False)
