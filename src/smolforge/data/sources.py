"""Where rows come from: `builtin`, a local file or folder (split by file name), or a Hub dataset id.

Every failure to read becomes a one-paragraph `DataError` naming `data.name` and the fix.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from smolforge.builtin_data import BUILTIN_NAME, BUILTIN_PATH
from smolforge.config import DataSection
from smolforge.errors import DataError, first_line

LOCAL_SUFFIXES = {".jsonl": "json", ".json": "json", ".csv": "csv", ".parquet": "parquet"}
EVAL_SPLIT_NAMES = ("validation", "valid", "val", "test", "eval", "dev")


def is_local_source(name: str) -> bool:
    """`builtin`, an existing path, or anything that looks like one (so a typo is not sent to the Hub)."""
    return (name == "builtin" or Path(name).expanduser().exists() or name.startswith((".", "/", "~"))
            or Path(name).suffix.lower() in LOCAL_SUFFIXES)


def is_hub_dataset_id(name: str) -> bool:
    """True for names that can only mean a Hub dataset (used for card metadata)."""
    return not is_local_source(name) and "\\" not in name and name.count("/") <= 1 and bool(name.strip())


def display_name(cfg: DataSection) -> str:
    if cfg.name == "builtin":
        return BUILTIN_NAME
    return cfg.name


def _local_files(path: Path, named: tuple[str, ...] = ()) -> dict[str, list[str]]:
    """Files of a local source grouped by split.

    In a folder, a file whose name (without extension) is one of `named` (data.split, data.eval_split)
    is that split, e.g. train_prefs.jsonl; other files go by prefix: train*, validation*, test*, ...
    """
    if path.is_file():
        if path.suffix.lower() not in LOCAL_SUFFIXES:
            raise DataError(f"data.name: {path} has an unsupported extension {path.suffix!r}. "
                            f"Use one of {', '.join(LOCAL_SUFFIXES)}.")
        return {"train": [str(path)]}
    files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in LOCAL_SUFFIXES)
    if not files:
        raise DataError(f"data.name: the folder {path} holds no {', '.join(LOCAL_SUFFIXES)} files. "
                        "Point data.name at a data file or a folder of them.")
    suffixes = {p.suffix.lower() for p in files}
    if len({LOCAL_SUFFIXES[s] for s in suffixes}) > 1:
        raise DataError(f"data.name: the folder {path} mixes file types ({', '.join(sorted(suffixes))}). "
                        "Keep one type per folder.")
    splits: dict[str, list[str]] = {}
    for p in files:
        stem = p.stem.lower()
        split = next((n for n in named if n.lower() == stem), None) \
            or next((s for s in ("train", *EVAL_SPLIT_NAMES) if stem.startswith(s)), "train")
        splits.setdefault(split, []).append(str(p))
    return splits


def load_splits(cfg: DataSection) -> dict[str, Any]:
    """Every split of the source, as `datasets.Dataset`s (the Hub only when online or cached)."""
    import datasets

    datasets.disable_progress_bars()
    if is_local_source(cfg.name):
        path = BUILTIN_PATH if cfg.name == "builtin" else Path(cfg.name).expanduser()
        if not path.exists():
            raise DataError(f"data.name: {cfg.name} does not exist. Give an existing file or folder, "
                            "`builtin`, or a Hub dataset id like `HuggingFaceTB/smoltalk`.")
        files = _local_files(path, tuple(n for n in (cfg.split, cfg.eval_split) if n))
        builder = LOCAL_SUFFIXES[Path(next(iter(files.values()))[0]).suffix.lower()]
        try:
            dd = datasets.load_dataset(builder, data_files=files)
        except Exception as e:  # datasets raises many types for unreadable files
            raise DataError(f"data.name: cannot read {path} as {builder}: {first_line(e)}. "
                            "Check that the file is valid (JSON Lines: one JSON object per line).") from None
        return dict(dd)
    try:
        dd = datasets.load_dataset(cfg.name, cfg.config, revision=None)
    except Exception as e:  # offline, unknown id, gated, bad config: one message each
        raise DataError(hub_error_message(cfg, e)) from None
    return dict(dd)


def _hub_offline() -> bool:
    import os

    return any(os.environ.get(k, "").upper() in ("1", "ON", "YES", "TRUE")
               for k in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"))


def hub_error_message(cfg: DataSection, err: Exception) -> str:
    """One paragraph for a Hub dataset that cannot be loaded, naming data.name and the fix."""
    what = f"data.name: {cfg.name!r} is not a local file or folder, so it is read as a Hub dataset id"
    local_fix = ("or set data.name to a local .jsonl/.json/.csv/.parquet file or folder "
                 "(--set data.name=path/to/data.jsonl)")
    text = str(err)
    if _hub_offline() or "OfflineModeIsEnabled" in text:
        return (f"{what}, but the Hub is offline (HF_HUB_OFFLINE / HF_DATASETS_OFFLINE is set) and the dataset "
                f"is not in the local cache. Run once online (unset HF_HUB_OFFLINE) to download it, {local_fix}.")
    first = first_line(err)[:300]
    if type(err).__name__ in ("DatasetNotFoundError", "RepositoryNotFoundError", "GatedRepoError"):
        return (f"{what}, but the Hub has no such dataset or it needs access ({first}). Check the id; for a "
                f"private or gated dataset log in (hf auth login) or set HF_TOKEN, {local_fix}.")
    config = f" with data.config {cfg.config!r}" if cfg.config else ""
    return (f"{what}, but loading it{config} failed: {first}. Check the id and data.config, that you are "
            f"online, {local_fix}.")

