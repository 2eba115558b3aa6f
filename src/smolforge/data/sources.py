"""Where rows come from: `builtin`, a local file or folder (split by file name), or a Hub dataset id.

Every failure to read becomes a one-paragraph `DataError` naming `data.name` and the fix.
"""

from __future__ import annotations

import codecs
import csv
import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from smolforge.builtin_data import BUILTIN_FILES, BUILTIN_NAMES
from smolforge.config import DataSection
from smolforge.errors import DataError, first_line
from smolforge.identifiers import dataset_id, local_or_hub_problem

LOCAL_SUFFIXES = {".jsonl": "json", ".json": "json", ".csv": "csv", ".parquet": "parquet"}
EVAL_SPLIT_NAMES = ("validation", "valid", "val", "test", "eval", "dev")


def is_local_source(name: str) -> bool:
    """`builtin`, an existing path, or anything that looks like one (so a typo is not sent to the Hub)."""
    return (name in BUILTIN_FILES or Path(name).expanduser().exists() or name.startswith((".", "/", "~"))
            or Path(name).suffix.lower() in LOCAL_SUFFIXES)


def is_hub_dataset_id(name: str) -> bool:
    """True for names that can only mean a Hub dataset (used for card metadata)."""
    return not is_local_source(name) and source_problem(name) is None


def source_problem(name: str) -> str | None:
    """Why `name` cannot be data.name (None when it can): the rule `smolforge run` and the wizard share."""
    def unsupported(path: Path) -> str | None:
        if path.is_file() and path.suffix.lower() not in LOCAL_SUFFIXES:
            return f"{path} has an unsupported extension {path.suffix!r}; use a {', '.join(LOCAL_SUFFIXES)} file"
        return None

    if name in BUILTIN_FILES:
        return None
    return local_or_hub_problem(name, is_local_source(name), unsupported, dataset_id, "dataset")


def display_name(cfg: DataSection) -> str:
    return BUILTIN_NAMES.get(cfg.name, cfg.name)


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


def source_files(cfg: DataSection) -> list[Path]:
    """The local files `load_splits` reads (builtin: the bundled file; a Hub dataset: none)."""
    if cfg.name in BUILTIN_FILES:
        return [BUILTIN_FILES[cfg.name]]
    if not is_local_source(cfg.name) or source_problem(cfg.name):
        return []
    path = Path(cfg.name).expanduser()
    named = tuple(n for n in (cfg.split, cfg.eval_split) if n)
    return [Path(f) for group in _local_files(path, named).values() for f in group]


def check_source(cfg: DataSection) -> None:
    """data.name names something loadable (the message `smolforge run` stops with, before the Hub is asked)."""
    problem = source_problem(cfg.name)
    if problem:
        raise DataError(f"data.name: {problem}. Give an existing file or folder, a bundled dataset (`builtin`, "
                        "`builtin-answers`, or `builtin-prompts` for GRPO), or a Hub dataset id like "
                        "`HuggingFaceTB/smoltalk`.")


def load_splits(cfg: DataSection) -> dict[str, Any]:
    """Every split of the source, as `datasets.Dataset`s (the Hub only when online or cached)."""
    import datasets

    datasets.disable_progress_bars()
    check_source(cfg)
    if is_local_source(cfg.name):
        path = BUILTIN_FILES.get(cfg.name) or Path(cfg.name).expanduser()
        return read_local(path, _local_files(path, tuple(n for n in (cfg.split, cfg.eval_split) if n)))
    try:
        dd = datasets.load_dataset(cfg.name, cfg.config, revision=cfg.revision)
    except Exception as e:  # offline, unknown id, gated, bad config: one message each
        raise DataError(hub_error_message(cfg, e)) from None
    return dict(dd)


def local_recipe(cfg: DataSection) -> dict[str, Any] | None:
    """How `datasets.load_dataset` reads a local source (builder, file names by split), for the card's metadata:
    names only, since a published card holds no local paths. None for Hub datasets."""
    if not is_local_source(cfg.name):
        return None
    path = BUILTIN_FILES.get(cfg.name) or Path(cfg.name).expanduser()
    files = _local_files(path, tuple(n for n in (cfg.split, cfg.eval_split) if n))
    first = next(iter(files.values()))[0]
    return {"builder": LOCAL_SUFFIXES[Path(first).suffix.lower()],
            "data_files": {split: [Path(f).name for f in names] for split, names in files.items()}}


# ---------------------------------------------------------------- local files: read, or say exactly what is wrong

HINTS = {"json": "JSON Lines: one JSON object per line, or one JSON array of objects",
         "csv": "a UTF-8 CSV file with a header row", "parquet": "a Parquet file"}
CHUNK = 1 << 20  # bytes per read when scanning a file: a huge file is never held in memory


@contextmanager
def quiet_logger(name: str) -> Iterator[None]:
    """Silence a library's logger for a moment: its line on stderr would precede smolforge's error paragraph."""
    lg = logging.getLogger(name)
    level = lg.level
    lg.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        lg.setLevel(level)


def read_local(path: Path, files: dict[str, list[str]]) -> dict[str, Any]:
    """Load local files with `datasets`; when that fails or yields nothing, scan the files for the cause.

    The JSON reader stores invalid UTF-8 without complaint (it fails later, while rows are read), so
    text splits are validated once here: a full Arrow validation costs far less than the load itself.
    """
    import datasets

    builder = LOCAL_SUFFIXES[Path(next(iter(files.values()))[0]).suffix.lower()]
    try:
        with quiet_logger("datasets"):  # it logs a failed read before raising; the DataError below says it all
            splits = dict(datasets.load_dataset(builder, data_files=files))
    except Exception as e:  # datasets raises many types for unreadable files
        raise DataError(diagnose_local(files, builder) or _unreadable(path, builder, e)) from None
    for name, ds in splits.items():
        try:
            if builder != "parquet":
                ds.data.table.validate(full=True)
        except Exception as e:  # pyarrow.ArrowInvalid: invalid UTF-8 in a string
            raise DataError(diagnose_local(files, builder) or _unreadable(path, builder, e)) from None
        if len(ds) == 0:
            raise DataError(diagnose_local({name: files[name]}, builder)
                            or f"data.name: {path} is empty (0 rows) in split `{name}`. {_add_rows(builder)}")
    return splits


def _unreadable(path: Path, builder: str, err: BaseException) -> str:
    while err.__cause__ is not None:  # datasets wraps the reader's error in "An error occurred while ..."
        err = err.__cause__
    return (f"data.name: cannot read {path} as {builder}: {first_line(err)[:300]}. "
            f"Check that it is valid ({HINTS[builder]}).")


def _add_rows(builder: str) -> str:
    add = {"json": f"Add rows ({HINTS['json']})", "csv": "Add data rows below the header",
           "parquet": "Write rows into it"}[builder]
    return f"{add}, or point data.name at a file that has them."


def diagnose_local(files: dict[str, list[str]], builder: str) -> str | None:
    """The first concrete problem in the files (not UTF-8, a broken JSON line, an empty split), or None."""
    for file in (Path(f) for group in files.values() for f in group):
        problem = _not_utf8(file) if builder in ("json", "csv") else None
        problem = problem or (_bad_json_line(file) if builder == "json" else None)
        if problem:
            return problem
    for name, group in files.items():
        why = [_emptiness(Path(f), builder) for f in group]
        if all(w is not None for w in why):
            if len(group) == 1:
                return f"data.name: {group[0]} is empty (0 rows){why[0]}. {_add_rows(builder)}"
            return (f"data.name: every `{name}` file is empty (0 rows): {', '.join(group)}. "
                    f"{_add_rows(builder)}")
    return None


def _not_utf8(file: Path) -> str | None:
    """Find the first byte that is not UTF-8, scanning in chunks; its line counts newlines before it."""
    lines, carry = 0, b""
    with open(file, "rb") as f:
        while True:
            chunk = f.read(CHUNK)
            data = carry + chunk
            try:
                data.decode("utf-8")
                good, carry = len(data), b""
            except UnicodeDecodeError as e:
                if chunk and e.reason == "unexpected end of data":  # a character split by the chunk boundary
                    good, carry = e.start, data[e.start:]
                else:
                    line = lines + data[: e.start].count(b"\n") + 1
                    return (f"data.name: {file} is not UTF-8 (byte 0x{data[e.start]:02x} at line {line}): re-save "
                            f"it as UTF-8, e.g. `iconv -f cp1252 -t utf-8 {file.name} > utf8-{file.name}` for a "
                            "Windows or Latin-1 file.")
            lines += data[:good].count(b"\n")
            if not chunk:
                return None


def _bad_json_line(file: Path) -> str | None:
    """The first line that is not a JSON object (JSON Lines), or where a JSON array breaks."""
    with open(file, "rb") as f:
        if f.read(4).lstrip(codecs.BOM_UTF8).startswith(b"["):  # one JSON array: datasets reads it whole too
            try:
                json.loads(file.read_text(encoding="utf-8-sig"))
            except json.JSONDecodeError as e:
                return (f"data.name: {file} line {e.lineno} is not valid JSON ({e.msg}, column {e.colno}): "
                        "fix that line.")
            except RecursionError:
                return (f"data.name: {file} nests JSON values too deeply to read (thousands of levels): flatten or "
                        "remove the deeply nested value.")
            return None
        f.seek(0)
        for number, raw in enumerate(f, 1):
            text = raw.decode("utf-8-sig" if number == 1 else "utf-8", errors="replace").strip()
            if not text:
                continue
            try:
                value = json.loads(text)
            except json.JSONDecodeError as e:
                return (f"data.name: {file} line {number} is not valid JSON ({e.msg}, column {e.colno}): "
                        "fix that line (JSON Lines: one complete JSON object per line).")
            except RecursionError:
                return (f"data.name: {file} line {number} nests JSON values too deeply to read (thousands of "
                        "levels): flatten or remove that value, or remove the line.")
            if not isinstance(value, dict):
                return (f"data.name: {file} line {number} is a JSON {type(value).__name__}, not an object: "
                        'fix that line (JSON Lines: one {"column": value, ...} object per line).')
    return None


def _emptiness(file: Path, builder: str) -> str | None:
    """Why a file holds no rows ("" when it has no bytes at all), or None when it has some."""
    if file.stat().st_size == 0:
        return ""
    if builder == "parquet":
        import pyarrow.parquet as pq

        try:
            rows = pq.ParquetFile(file).metadata.num_rows
        except Exception:  # not readable as Parquet: the loader's own message says why
            return None
        return ": the Parquet file has no rows" if rows == 0 else None
    with open(file, "rb") as f:
        lines = (raw.strip() for raw in f)
        first = next((line for line in lines if line), None)
        if first is None:
            return ": it holds only blank lines"
        if builder == "json":
            small = file.stat().st_size < CHUNK
            empty_array = small and b"".join(file.read_bytes().split()).lstrip(codecs.BOM_UTF8) == b"[]"
            return ": the JSON array has no elements" if empty_array else None
        if next((line for line in lines if line), None) is not None:
            return None
    header = next(csv.reader([first.decode("utf-8-sig", errors="replace")]), [])
    return f": the CSV has a header (columns {', '.join(header)}) but no data rows"


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

