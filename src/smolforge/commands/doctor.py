"""`smolforge doctor`: versions, hardware, whether a token is present, whether the Hub answers."""

from __future__ import annotations

from rich.table import Table

from smolforge.credentials import find_token
from smolforge.hardware import detect, versions
from smolforge.hubclient import endpoint_from_env, reachable


def doctor_command(endpoint: str | None, console) -> None:
    """Print the table; `endpoint` is the Hub to check (default HF_ENDPOINT or huggingface.co)."""
    table = Table(title="smolforge doctor", show_header=False)
    for name, version in versions().items():
        table.add_row(name, version)
    table.add_row("hardware", detect(with_gpu=True)["summary"])
    token, source = find_token()
    table.add_row("HF token", f"found ({source})" if token else "not found (set HF_TOKEN or `hf auth login`)")
    url = endpoint_from_env(endpoint)
    table.add_row("Hub", f"{url}: reachable {'yes' if reachable(url) else 'no'}")
    console.print(table)
