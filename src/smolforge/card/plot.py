"""The loss curve PNG next to the card, drawn from the trainer's log history in results.json."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def loss_points(results: dict[str, Any]) -> tuple[list[tuple[int, float]], list[tuple[int, float]]]:
    history = results.get("log_history") or []
    train = [(h["step"], h["loss"]) for h in history if "loss" in h and "step" in h]
    evals = [(h["step"], h["eval_loss"]) for h in results.get("eval_history") or []]
    return train, evals


def write_loss_plot(results: dict[str, Any], path: Path) -> Path | None:
    """Write the plot; None when the run logged no losses (nothing to draw, no empty chart)."""
    train, evals = loss_points(results)
    if not train and not evals:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    if train:
        ax.plot(*zip(*train, strict=True), label="training loss", linewidth=1.5)
    if evals:
        ax.plot(*zip(*evals, strict=True), label="validation loss", marker="o", linewidth=1.5)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss")
    ax.set_title(str(results.get("experiment_name") or "training"))
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, metadata={"Software": None})
    plt.close(fig)
    tmp.replace(path)
    return path
