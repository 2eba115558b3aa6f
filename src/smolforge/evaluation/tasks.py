"""Turn `evaluation.tasks` entries into loaded lm-eval tasks, once, shared by every model.

An entry is `builtin` (the bundled suite), `held-out` (a GRPO run's held-out prompts, written as a task
file by evaluation/heldout.py), a path to a task YAML, or an lm-eval registry name.
Tasks are built once (dataset loaded, items fixed) and the same Task objects go to the harness for
every model and mode, so both sides of a comparison see identical items. lm-eval's registry index
takes seconds to build, so it is only built when an entry is neither `builtin` nor a path.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from smolforge.config.outputs import BUILTIN_SUITE, HELD_OUT_TASK, looks_like_task_file
from smolforge.errors import SmolforgeError
from smolforge.evaluation.contamination import BenchmarkItem
from smolforge.evaluation.suite import suite_yamls
from smolforge.evaluation.taskfile import load_task_file
from smolforge.runfolder import file_sha256

log = logging.getLogger("smolforge.evaluation")
LOGLIKELIHOOD_TYPES = ("multiple_choice", "loglikelihood", "loglikelihood_rolling")
DEFAULT_METRIC = {"multiple_choice": "acc", "loglikelihood": "acc", "generate_until": "exact_match",
                  "loglikelihood_rolling": "word_perplexity"}


@dataclass
class EvalTask:
    """One leaf lm-eval task, loaded, with the items every model will be scored on."""

    name: str
    spec: str  # the evaluation.tasks entry it came from
    kind: str  # "builtin", "file" or "registry"
    task: Any = field(repr=False)  # lm_eval.api.task.Task, reused for every model and mode
    output_type: str
    metric: str  # the primary metric (first of the task's metric_list)
    filter: str  # the primary filter (first of the task's filter_list)
    n_total: int
    n_items: int
    ids: list[str] = field(repr=False)  # stable item id per doc index, for the first n_items docs
    fingerprint: str = ""
    note: str | None = None
    fewshot_split: str | None = None  # where few-shot examples come from; None: the scored split itself
    chance: float | None = None  # multiple choice: the expected score of a uniform guess over each item's choices

    @property
    def loglikelihood(self) -> bool:
        """Scored by log-likelihood, not generation: lm-eval refuses these with reasoning enabled."""
        return self.output_type in LOGLIKELIHOOD_TYPES

    def describe(self) -> dict:
        return {"task": self.name, "source": self.spec, "kind": self.kind, "output_type": self.output_type,
                "metric": self.metric, "items": self.n_items, "items_in_task": self.n_total,
                "fewshot_split": self.fewshot_split, "fingerprint": self.fingerprint, "note": self.note,
                "chance": self.chance}


def _offline() -> bool:
    return any(os.environ.get(k, "").lower() in ("1", "true", "yes") for k in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"))


def _build_error(spec: str, err: Exception) -> SmolforgeError:
    first = (str(err).strip().splitlines() or [type(err).__name__])[0]
    return SmolforgeError(f"evaluation.tasks: `{spec}`: lm-eval could not build the task ({type(err).__name__}: "
                          f"{first}). Check the task's columns and templates against its data.")


def _offline_error(name: str, err: Exception) -> SmolforgeError:
    first = (str(err).strip().splitlines() or [type(err).__name__])[0]
    return SmolforgeError(
        f"evaluation.tasks: `{name}`: its data is not in the Hugging Face cache and cannot be downloaded "
        f"({first}). Run once online so `datasets` caches it, or copy the task's YAML, point it at local files "
        "(`dataset_path: json`, `dataset_kwargs: {data_files: {test: items.jsonl}}`) and list that file's path.")


class TaskResolver:
    """Loads tasks; `registry` (a TaskManager factory) is only called when a registry name is used. `held_out` is
    the task file written for the run's held-out prompts, when `held-out` is listed."""

    def __init__(self, registry: Callable[[], Any] | None = None, held_out: Path | None = None):
        self._registry_factory = registry or _default_registry
        self._registry = None
        self.held_out = held_out

    @property
    def registry(self):
        if self._registry is None:
            log.info("building lm-eval's task index (registry names were requested)")
            self._registry = self._registry_factory()
        return self._registry

    def _load(self, manager, spec_obj: Any, spec: str, on_connection: Callable[[Exception], SmolforgeError]):
        try:
            return list(manager.load([spec_obj])["tasks"].values())
        except SmolforgeError:
            raise
        except (ConnectionError, TimeoutError) as e:
            raise on_connection(e) from None
        except Exception as e:  # lm-eval raises many kinds (TypeError, KeyError, jinja2 errors) for one bad task
            if type(e).__name__ in ("DatasetNotFoundError", "OfflineModeIsEnabled", "LocalEntryNotFoundError"):
                raise on_connection(e) from None
            raise _build_error(spec, e) from None

    def _from_file(self, path: Path, spec: str, kind: str) -> list[tuple[Any, str, str, str]]:
        from lm_eval.tasks import TaskManager

        cfg = load_task_file(path)
        digest = _config_digest(cfg)
        tasks = self._load(TaskManager(include_defaults=False), cfg, spec,
                           lambda e: _offline_error(cfg["task"], e) if _offline() else _build_error(spec, e))
        return [(t, spec, kind, digest) for t in tasks]

    def _from_registry(self, name: str) -> list[tuple[Any, str, str, str]]:
        manager = self.registry
        if name not in manager.all_tasks:
            close = difflib.get_close_matches(name, manager.all_tasks, n=5, cutoff=0.6)
            hint = f" Closest registry names: {', '.join(close)}." if close else ""
            raise SmolforgeError(f"evaluation.tasks: `{name}` is not `{BUILTIN_SUITE}`, not a task file and not "
                                 f"an lm-eval registry task.{hint} List names with `lm-eval ls tasks`, or give a "
                                 "path to a task YAML file.")
        tasks = self._load(manager, name, name, lambda e: _offline_error(name, e))
        return [(t, name, "registry", _registry_digest(t)) for t in tasks]

    def resolve(self, specs: list[str], limit: int | None) -> list[EvalTask]:
        loaded: list[tuple[Any, str, str, str]] = []
        for spec in specs:
            if spec == BUILTIN_SUITE:
                for path in suite_yamls():
                    loaded += self._from_file(path, spec, "builtin")
            elif spec == HELD_OUT_TASK:
                if self.held_out is None:
                    raise SmolforgeError(f"evaluation.tasks: `{HELD_OUT_TASK}` is a GRPO run's held-out prompts, so it "
                                         "is evaluated with its run: `smolforge run` or `smolforge evaluate RUN_DIR`.")
                loaded += self._from_file(self.held_out, spec, "held-out")
            elif looks_like_task_file(spec):
                loaded += self._from_file(Path(spec).expanduser(), spec, "file")
            else:
                loaded += self._from_registry(spec)
        out, seen = [], set()
        for task, spec, kind, digest in loaded:
            et = _eval_task(task, spec, kind, digest, limit)
            if et.name in seen:
                raise SmolforgeError(f"evaluation.tasks: task `{et.name}` is listed twice (also via `{spec}`). "
                                     "List each task once.")
            seen.add(et.name)
            out.append(et)
        return out


def _default_registry():
    from lm_eval.tasks import TaskManager

    return TaskManager()


def _config_digest(cfg: dict) -> str:
    """What decides a file task's items and prompts: its config (includes merged, `!function` sources), with each
    local data file, in its place among the splits, stood for by the SHA-256 of its bytes."""

    def by_content(v: Any) -> Any:
        if isinstance(v, str) and Path(v).is_file():
            return "sha256:" + file_sha256(Path(v))
        if isinstance(v, list):
            return [by_content(x) for x in v]
        if isinstance(v, dict):
            return {k: by_content(x) for k, x in v.items()}
        return v

    kwargs = dict(cfg.get("dataset_kwargs") or {})
    if "data_files" in kwargs:
        kwargs["data_files"] = by_content(kwargs["data_files"])
    blob = json.dumps({**{k: v for k, v in cfg.items() if k != "metadata"}, "dataset_kwargs": kwargs},
                      sort_keys=True, default=_callable_text)
    return hashlib.sha256(blob.encode()).hexdigest()


def docs_digest(docs: Any, n: int) -> str:
    """The first `n` documents as the harness will see them (after the task's own processing): whatever changed
    the data behind a task, from a local file to a Hub dataset's new revision, changes this."""
    h = hashlib.sha256()
    for i in range(n):
        h.update(json.dumps(docs[i], sort_keys=True, default=str).encode())
        h.update(b"\n")
    return h.hexdigest()


def _callable_text(obj: Any) -> str:
    import inspect

    try:
        return inspect.getsource(obj)
    except (OSError, TypeError):
        return repr(obj)


def _registry_digest(task: Any) -> str:
    """A registry task is fixed by its config in this lm-eval version (the harness version is keyed separately)."""
    cfg = dict(task.dump_config())
    cfg.pop("metadata", None)
    return hashlib.sha256(json.dumps(cfg, sort_keys=True, default=str).encode()).hexdigest()


def item_ids(docs: list[Any]) -> list[str]:
    """The docs' own `id` when every doc has a distinct one, else position plus a short content hash."""
    own = [d.get("id") if isinstance(d, dict) else None for d in docs]
    if all(isinstance(x, (str, int)) for x in own) and len({str(x) for x in own}) == len(own):
        return [str(x) for x in own]
    return [f"{i}-{hashlib.sha256(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()[:8]}"
            for i, d in enumerate(docs)]


def _primary(task: Any) -> tuple[str, str]:
    cfg = task.config
    metric = DEFAULT_METRIC.get(cfg.output_type, "acc")
    if cfg.metric_list:
        first = cfg.metric_list[0]["metric"]
        metric = first if isinstance(first, str) else getattr(first, "__name__", str(first))
    filt = "none"
    if cfg.filter_list and isinstance(cfg.filter_list, list) and isinstance(cfg.filter_list[0], dict):
        filt = cfg.filter_list[0].get("name", "none")
    return metric, filt


def _eval_task(task: Any, spec: str, kind: str, digest: str, limit: int | None) -> EvalTask:
    name = task.config.task
    if getattr(task, "UNSAFE_CODE", False) or getattr(task, "MULTIMODAL", False):
        what = "runs model-written code" if getattr(task, "UNSAFE_CODE", False) else "needs images or audio"
        raise SmolforgeError(f"evaluation.tasks: `{name}` (from `{spec}`) {what}, which smolforge does not "
                             "evaluate. Remove it from evaluation.tasks.")
    docs = task.eval_docs
    n_total = len(docs)
    n_items = min(limit, n_total) if limit else n_total
    note = None
    if limit and limit > n_total:
        note = f"limit {limit} is more than the {n_total} items of {name}: all {n_total} were used"
        log.warning(note)
    metric, filt = _primary(task)
    ids = item_ids([docs[i] for i in range(n_items)])
    cfg = task.config
    fewshot = cfg.fewshot_split or cfg.training_split or cfg.validation_split
    if fewshot and fewshot in (cfg.test_split or cfg.validation_split,):
        fewshot = None  # the split being scored is not a separate pool
    pool = task.fewshot_docs() if fewshot else None  # the examples few-shot prompts draw from
    digest = hashlib.sha256(":".join([digest, docs_digest(docs, n_items),
                                      docs_digest(pool, len(pool)) if pool is not None else ""]).encode()).hexdigest()
    return EvalTask(name=name, spec=spec, kind=kind, task=task, output_type=cfg.output_type, metric=metric,
                    filter=filt, n_total=n_total, n_items=n_items, ids=ids, fingerprint=digest, note=note,
                    fewshot_split=fewshot, chance=_chance(task, docs, n_items, metric))


def _chance(task: Any, docs: Any, n: int, metric: str) -> float | None:
    """A multiple-choice task's accuracy by uniform guessing: the mean of 1 / choices over the scored items."""
    if task.config.output_type != "multiple_choice" or metric not in ("acc", "acc_norm") or not n:
        return None
    counts = [len(task.doc_to_choice(docs[i])) for i in range(n)]
    return sum(1 / c for c in counts if c) / n


def benchmark_items(tasks: list[EvalTask]) -> list[BenchmarkItem]:
    """Each scored item as prompt text plus reference answer, for the contamination check."""
    out = []
    for et in tasks:
        t = et.task
        docs = t.eval_docs  # a property that may re-run process_docs: read it once
        for i in range(et.n_items):
            doc = docs[i]
            prompt, target = t.doc_to_text(doc), t.doc_to_target(doc)
            if et.output_type == "multiple_choice":
                choices = t.doc_to_choice(doc)
                if isinstance(prompt, int):
                    prompt = choices[prompt]
                if isinstance(target, int) and 0 <= target < len(choices):
                    target = choices[target]
            out.append(BenchmarkItem(task=et.name, id=et.ids[i], text=f"{prompt} {target}"))
    return out
