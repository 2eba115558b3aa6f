"""The loss curve PNG next to the card, drawn from the trainer's log history in results.json."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def loss_points(results: dict[str, Any]) -> tuple[list[tuple[int, float]], list[tuple[int, float]]]:
    """(step, loss) for training and validation, one point per step (a final evaluation at the step of the last
    periodic one is the same measurement: drawn once)."""
    history = results.get("log_history") or []
    train = dict((h["step"], h["loss"]) for h in history if "loss" in h and "step" in h)
    evals = dict((h["step"], h["eval_loss"]) for h in results.get("eval_history") or [])
    return sorted(train.items()), sorted(evals.items())


def reward_points(results: dict[str, Any]) -> list[tuple[int, float]]:
    """GRPO: (step, mean reward of the step's sampled completions), as TRL logged it."""
    curve = (results.get("grpo") or {}).get("training_curve") or []
    return [(c["step"], c["reward"]) for c in curve if isinstance(c.get("reward"), (int, float))]


def steps_per_epoch(results: dict[str, Any]) -> float | None:
    """From the log's last (step, epoch) pair: how many optimizer steps one pass over the data took."""
    pairs = [(h["step"], h["epoch"]) for h in results.get("log_history") or []
             if h.get("step") and isinstance(h.get("epoch"), (int, float)) and h["epoch"] > 0]
    if not pairs:
        return None
    step, epoch = pairs[-1]
    return step / epoch


def write_loss_plot(results: dict[str, Any], path: Path, title: str | None = None) -> Path | None:
    """Write the plot; None when the run logged no losses (nothing to draw, no empty chart)."""
    train, evals = loss_points(results)
    rewards = reward_points(results)
    if not train and not evals and not rewards:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    if train:
        ax.plot(*zip(*train, strict=True), label="training loss", linewidth=1.5)
    if evals:
        ax.plot(*zip(*evals, strict=True), label="validation loss", marker="o", linewidth=1.5)
    if isinstance(results.get("chance_loss"), (int, float)):  # a model trained from random weights starts here
        ax.axhline(results["chance_loss"], color="grey", linestyle="--", linewidth=1, label="chance (ln vocabulary)")
    per_epoch = steps_per_epoch(results)
    if per_epoch:
        top = ax.secondary_xaxis("top", functions=(lambda s: s / per_epoch, lambda e: e * per_epoch))
        top.set_xlabel("epoch")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss")
    ax.set_title(title or str(results.get("experiment_name") or "training"))
    ax.grid(alpha=0.3)
    handles, labels = ax.get_legend_handles_labels()
    if rewards:  # GRPO: the reward the loss pushes up, on its own axis beside the loss
        right = ax.twinx()
        right.plot(*zip(*rewards, strict=True), color="tab:green", linewidth=1.5, label="mean reward (sampled)")
        right.set_ylabel("reward")
        more_handles, more_labels = right.get_legend_handles_labels()
        handles, labels = handles + more_handles, labels + more_labels
    ax.legend(handles, labels)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, metadata={"Software": None})
    plt.close(fig)
    tmp.replace(path)
    return path
