"""Where a run's base model came from, as far as the record shows: a Hub model, the tiny model built from random
weights, or a local folder, which may be another smolforge run's model/ (then that run's own record says how it
was made, whether it was published, and what it descends from).

The derived card states these facts (a LoRA or DPO run on a model trained from scratch is no "chat model" for
research), and publishing uses the exact base a reader's loader needs: an adapter applies to its own base's
weights, not to an ancestor of it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from smolforge.card.frontmatter import read_metadata
from smolforge.config import SmolforgeConfig
from smolforge.errors import SmolforgeError
from smolforge.identifiers import is_repo_id
from smolforge.runfolder import RunFolder

MAX_DEPTH = 8  # runs trained on runs trained on runs...: the chain is followed this far


@dataclass(frozen=True)
class Lineage:
    kind: str                      # hub | tiny | local
    name: str                      # how prose names the base: a Hub id, or a local folder by its name
    hub_id: str | None = None      # where exactly this base is on the Hub (a Hub base, or a local run published)
    ancestor: str | None = None    # a local base's own Hub ancestor (its card's base_model), for prose and metadata
    from_scratch: bool = False     # the base is, or descends from, a model trained from random weights
    parameters: int | None = None  # a local run's base: its parameter count, from its record
    rows: int | None = None        # ... and the rows it trained on
    method: str | None = None      # ... and how it was trained (SFT, DPO; LoRA or full)
    run: str | None = None         # ... and its run folder (for messages on this machine, never on a card)


def base_run(folder: Path) -> RunFolder | None:
    """The smolforge run folder a local base model folder belongs to (`<run>/model`), if it is one."""
    run = RunFolder(folder.parent)
    if folder.name == "model" and run.config_path.is_file() and run.results_path.is_file():
        return run
    return None


def upstream(folder: Path) -> str | None:
    """The Hub base model a local model folder's card names (a smolforge run's model/), if any."""
    base = read_metadata(folder / "README.md").get("base_model")
    if isinstance(base, list) and len(base) == 1:
        base = base[0]
    return base if isinstance(base, str) and is_repo_id(base) and not Path(base).exists() else None


def is_hub_base(cfg: SmolforgeConfig) -> bool:
    """The base model is a Hub id (not `tiny`, not a local folder)."""
    name = cfg.model.name_or_path
    return not cfg.model.is_tiny and is_repo_id(name) and not Path(name).expanduser().exists()


def lineage(cfg: SmolforgeConfig, depth: int = 0) -> Lineage:
    """The base model of `cfg`, with what its record says (following local smolforge runs back MAX_DEPTH steps)."""
    if cfg.model.is_tiny:
        return Lineage("tiny", "a tiny SmolLM3-architecture model with random weights", from_scratch=True)
    if is_hub_base(cfg):
        return Lineage("hub", cfg.model.name_or_path, hub_id=cfg.model.name_or_path)
    folder = Path(cfg.model.name_or_path).expanduser()
    name = f"{folder.parent.name}/{folder.name}" if folder.name == "model" else folder.name
    run = base_run(folder)
    if run is None or depth >= MAX_DEPTH:
        return Lineage("local", name, ancestor=upstream(folder))
    try:
        base_cfg, results = run.read_config(), run.read_results()
    except SmolforgeError:  # an unreadable record says nothing more
        return Lineage("local", name, ancestor=upstream(folder))
    parent = lineage(base_cfg, depth + 1)
    t = base_cfg.training
    how = t.method.upper() + (f" with {t.finetune.upper() if t.finetune == 'qlora' else 'LoRA'}"
                              if t.adapters else "")
    return Lineage("local", name, hub_id=(results.get("publish") or {}).get("repo_id"),
                   ancestor=upstream(folder) or parent.hub_id or parent.ancestor, from_scratch=parent.from_scratch,
                   parameters=(results.get("parameters") or {}).get("total"),
                   rows=(results.get("dataset") or {}).get("train_size"), method=how, run=str(run.root))
