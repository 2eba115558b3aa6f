"""Which models an evaluation compares, and how each is loaded (one at a time, then freed)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from smolforge.modelio import load_saved
from smolforge.runtime import for_inference

BASE, TUNED = "base", "tuned"


@dataclass(frozen=True)
class ModelRef:
    """A model to evaluate. `source` (a folder or Hub id, plus `revision`) is its identity for the
    base-results cache and what the default loader reads; `loader` overrides how it is loaded (e.g.
    smolforge's own runtime, precision and attention settings, or a quantized variant)."""

    source: str
    revision: str | None = None
    loader: Callable[[], Any] | None = None

    def load(self) -> Any:
        model = self.loader() if self.loader else default_loader(self.source, self.revision)
        return model.eval()


def default_loader(source: str, revision: str | None = None) -> Any:
    """The model as any saved model loads for inference on this machine (`modelio.load_saved`)."""
    return load_saved(source, for_inference(), revision)


def normalise(models: Mapping[str, ModelRef | str | Path]) -> dict[str, ModelRef]:
    """`base` and `tuned` first (both required), then the variants in the given order."""
    refs = {name: m if isinstance(m, ModelRef) else ModelRef(str(m)) for name, m in models.items()}
    missing = [n for n in (BASE, TUNED) if n not in refs]
    if missing:
        raise ValueError(f"evaluate_models needs models named {BASE!r} and {TUNED!r}; missing {missing}")
    return {BASE: refs[BASE], TUNED: refs[TUNED], **{n: r for n, r in refs.items() if n not in (BASE, TUNED)}}


