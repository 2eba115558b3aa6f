"""Read and check an lm-eval task YAML file before the harness builds it.

lm-eval reports a bad file late and obliquely (a TypeError for an unknown key, a download attempt
for an unknown metric name), so smolforge checks what it can first and names the key and the fix.
Relative `data_files` resolve against the YAML file's own folder when the file is there (so a task
folder can be moved as a whole), else against the working directory, as lm-eval itself does; a glob
pattern becomes the list of files it matches, so what is scored (and cached) is exactly those files.
"""

from __future__ import annotations

import difflib
from dataclasses import fields
from pathlib import Path
from typing import Any

from smolforge.errors import SmolforgeError

STRUCTURAL_KEYS = {"tag", "group", "task_list", "include", "class"}


def _fail(path: Path, problem: str, fix: str) -> SmolforgeError:
    fix = fix if fix.endswith((".", "?", ")")) else f"{fix}."  # a paragraph ends as a sentence
    return SmolforgeError(f"evaluation.tasks: {path}: {problem}. {fix}")


def load_task_file(path: Path) -> dict[str, Any]:
    """The task's config dict (includes merged, `!function` resolved), checked, with absolute data files."""
    import yaml
    from lm_eval.tasks._yaml_loader import load_yaml  # lm-eval's own loader: `include:` and `!function` tags

    if not path.is_file():
        raise _fail(path, "no such task file", "Check the path, or use a registry task name or `builtin`")
    try:
        cfg = load_yaml(path, resolve_func=True)
    except yaml.YAMLError as e:
        where = getattr(e, "problem_mark", None)
        line = f" at line {where.line + 1}" if where is not None else ""
        raise _fail(path, f"is not valid YAML{line} ({getattr(e, 'problem', None) or e})",
                    "Fix the syntax; lm-eval task files are YAML mappings") from None
    except (ValueError, OSError, ImportError, AttributeError) as e:
        raise _fail(path, f"cannot be read as an lm-eval task ({e})",
                    "It must be a YAML mapping; check its `include:` files and `!function` references") from None
    check_config(cfg, path)
    cfg["dataset_kwargs"] = resolve_data_files(cfg.get("dataset_kwargs"), path)
    return cfg


def _known_keys() -> set[str]:
    from lm_eval.config.task import TaskConfig

    return {f.name for f in fields(TaskConfig)}


def _suggest(key: str, options: set[str]) -> str:
    close = difflib.get_close_matches(key, sorted(options), n=1)
    return f" (did you mean `{close[0]}`?)" if close else ""


def check_config(cfg: dict[str, Any], path: Path) -> None:
    """Every problem lm-eval would hit late or obscurely, reported with the key that causes it."""
    import lm_eval.api.metrics  # noqa: F401  (registers the built-in metrics)
    from lm_eval.api.registry import metric_registry
    from lm_eval.api.task import ALL_OUTPUT_TYPES

    if "group" in cfg or "class" in cfg:
        raise _fail(path, "defines a group or a Python task class, which smolforge does not load from a path",
                    "List each task's own YAML file (or the registry name) in evaluation.tasks instead")
    if not isinstance(cfg.get("task"), str) or not cfg["task"]:
        raise _fail(path, "has no `task:` name", "Add `task: my_task_name`")
    known = _known_keys()
    for key in cfg:
        if key not in known and key not in STRUCTURAL_KEYS:
            raise _fail(path, f"has unknown key `{key}`{_suggest(key, known)}",
                        "Remove or rename it; the keys are those of lm-eval's TaskConfig")
    output_type = cfg.get("output_type", "generate_until")
    if output_type not in ALL_OUTPUT_TYPES:
        raise _fail(path, f"`output_type: {output_type}` is not one of {', '.join(ALL_OUTPUT_TYPES)}",
                    "Use `multiple_choice` for log-likelihood choices or `generate_until` for generated answers")
    if not cfg.get("dataset_path") and not cfg.get("custom_dataset"):
        raise _fail(path, "has no `dataset_path`",
                    "For local files use `dataset_path: json` and `dataset_kwargs: {data_files: {test: file.jsonl}}`")
    for key in ("doc_to_text", "doc_to_target"):
        if cfg.get(key) is None:
            raise _fail(path, f"has no `{key}`", f"Add `{key}:` (a column name or a Jinja template such as "
                                                 "\"{{question}}\")")
    if output_type == "multiple_choice" and cfg.get("doc_to_choice") is None:
        raise _fail(path, "is `multiple_choice` but has no `doc_to_choice`",
                    "Add `doc_to_choice:` (a list column, e.g. \"{{choices}}\")")
    if not cfg.get("test_split") and not cfg.get("validation_split"):
        raise _fail(path, "names neither `test_split` nor `validation_split`",
                    "Add `test_split: test` (the split holding the items to score)")
    _check_metrics(cfg.get("metric_list"), path, set(metric_registry), custom=cfg.get("process_results") is not None)


def _check_metrics(metric_list: Any, path: Path, builtin: set[str], custom: bool) -> None:
    """Only lm-eval's built-in metrics: any other name makes lm-eval download it from the Hub."""
    if metric_list is None:
        return
    if not isinstance(metric_list, list):
        raise _fail(path, "`metric_list` is not a list", "Write it as a list of `- metric: acc` entries")
    for entry in metric_list:
        if not isinstance(entry, dict) or "metric" not in entry:
            raise _fail(path, f"`metric_list` entry {entry!r} has no `metric:`", "Write entries as `- metric: acc`")
        name = entry["metric"]
        if entry.get("hf_evaluate"):
            raise _fail(path, f"metric `{name}` asks for the Hugging Face `evaluate` library (`hf_evaluate: true`), "
                              "which downloads it", "Use a built-in metric such as acc or exact_match")
        if isinstance(name, str) and name not in builtin and not custom:
            raise _fail(path, f"metric `{name}` is not built into lm-eval{_suggest(name, builtin)}; lm-eval would "
                              "try to download it", "Use a built-in metric such as acc, acc_norm or exact_match")


def _has_rows(file: Path) -> bool:
    """False for an empty file, or one holding only whitespace (no JSON line, no CSV row)."""
    with open(file, "rb") as f:
        for block in iter(lambda: f.read(1 << 16), b""):
            if block.strip():
                return True
    return False


def _resolve_one(value: str, key: str, path: Path) -> str | list[str]:
    """A local data file as an absolute path; a glob pattern as the sorted absolute paths it matches. Relative
    ones are read from the YAML file's folder when they exist there, else from the working directory."""
    if "://" in value:  # URLs go to datasets as written
        return value
    pattern = any(ch in value for ch in "*?[")
    wanted = Path(value).expanduser()

    def found(candidate: Path) -> list[Path]:
        if pattern:
            return sorted(p for p in candidate.parent.glob(candidate.name) if p.is_file())
        return [candidate] if candidate.exists() else []

    if wanted.is_absolute():
        matches = found(wanted)
    else:
        matches = found(path.parent / wanted) or found(Path.cwd() / wanted)
    if not matches:
        what = "matches no file" if pattern else "not found"
        raise _fail(path, f"data file `{value}` ({key}) {what} beside the YAML file or in {Path.cwd()}",
                    "Fix the path; relative paths are read from the YAML file's folder")
    for file in matches:
        if file.is_file() and not _has_rows(file):
            raise _fail(path, f"data file {file} ({key}) has no rows", "Add the items to score, one per line")
    resolved = [str(m.resolve()) for m in matches]
    return resolved if pattern else resolved[0]


def resolve_data_files(dataset_kwargs: Any, path: Path) -> Any:
    """`dataset_kwargs` with each local `data_files` entry made absolute (and checked to exist)."""
    if not isinstance(dataset_kwargs, dict) or "data_files" not in dataset_kwargs:
        return dataset_kwargs
    files = dataset_kwargs["data_files"]
    key = "dataset_kwargs.data_files"

    def fix(v: Any, where: str) -> Any:
        if isinstance(v, str):
            return _resolve_one(v, where, path)
        if isinstance(v, list):
            return [fix(x, where) for x in v]
        if isinstance(v, dict):
            return {k: fix(x, f"{where}.{k}") for k, x in v.items()}
        raise _fail(path, f"`{where}` must be a path, a list or a split mapping", "See lm-eval's task guide")

    return {**dataset_kwargs, "data_files": fix(files, key)}




def task_input_files(path: Path) -> list[Path]:
    """Every local file a task file reads, for copying it to another machine: the YAML, the YAML and Python files
    beside it (its `include:` files and `!function` modules are found there) and its resolved data files."""
    cfg = load_task_file(path)
    beside = [p for p in sorted(path.parent.iterdir()) if p.is_file() and p.suffix in (".yaml", ".yml", ".py")]
    data: list[Path] = []

    def collect(v: Any) -> None:
        if isinstance(v, str) and "://" not in v:
            data.append(Path(v))
        elif isinstance(v, list):
            for x in v:
                collect(x)
        elif isinstance(v, dict):
            for x in v.values():
                collect(x)

    collect((cfg.get("dataset_kwargs") or {}).get("data_files"))
    return list(dict.fromkeys([path.resolve(), *(p.resolve() for p in beside), *data]))
