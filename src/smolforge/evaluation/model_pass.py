"""Evaluate one loaded model: every planned task and mode, then its generations, reusing the cache.

Only the base model's results are cached (its weights do not change between fine-tunes); the
fine-tune and variants are always evaluated.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass, field
from typing import Any

from smolforge.config import EvaluationSection
from smolforge.evaluation import samples as sample_gen
from smolforge.evaluation import thinking
from smolforge.evaluation.cache import ResultCache, cache_key, model_fingerprint, runtime_fingerprint
from smolforge.evaluation.harness import TaskRun, make_lm, run_task
from smolforge.evaluation.models import BASE, TUNED, ModelRef
from smolforge.evaluation.plan import Step
from smolforge.evaluation.progress import EvalProgress

log = logging.getLogger("smolforge.evaluation")


@dataclass
class ModelOutcome:
    runs: dict[tuple[str, str], TaskRun] = field(default_factory=dict)  # (task, mode) -> run
    retention: dict | None = None
    samples: list[str] | None = None
    info: dict = field(default_factory=dict)


@dataclass
class Context:
    """Everything that is the same for every model of one evaluation."""

    tokenizer: Any
    tokenizer_fp: str
    thinking: bool
    settings: EvaluationSection
    progress: EvalProgress
    cache: ResultCache
    retention_prompts: list[str]
    picked_samples: list[tuple[list[dict], str]]
    sample_mode: str


def _score(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.3f}"


def _digest(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


class ModelPass:
    """One model's share of the evaluation, with cache lookups when it is the base."""

    def __init__(self, name: str, ref: ModelRef, model: Any, ctx: Context):
        self.name, self.ref, self.model, self.ctx = name, ref, model, ctx
        self.out = ModelOutcome(info={"source": ref.source, "revision": ref.revision})
        self.hits = self.misses = 0
        self._base_parts: dict | None = None
        if name == BASE:
            fp = model_fingerprint(ref.source, ref.revision)
            self.out.info["fingerprint"] = fp
            if fp is not None:
                s = ctx.settings
                self._base_parts = {"model": fp, "runtime": runtime_fingerprint(model), "tokenizer": ctx.tokenizer_fp,
                                    "thinking": ctx.thinking, "shots": s.num_fewshot, "batch": s.batch_size,
                                    "max_gen": s.max_gen_tokens, "seed": s.seed}
            else:
                ctx.progress.note(f"  base {ref.source}: no fixed revision or local weights to key a cache on; "
                                  "its results are not cached")
        self.out.info.update({k: v for k, v in runtime_fingerprint(model).items() if k in ("dtype", "device")})

    def _cached(self, kind: str, **parts: Any) -> tuple[str | None, dict | None]:
        if self._base_parts is None:
            return None, None
        key = cache_key(kind=kind, **self._base_parts, **parts)
        hit = self.ctx.cache.get(key)
        if hit is None:
            self.misses += 1
        else:
            self.hits += 1
        return key, hit

    def run_steps(self, steps: list[Step]) -> None:
        p, s = self.ctx.progress, self.ctx.settings
        lms: dict[str, Any] = {}
        for step in steps:
            et, label = step.task, f"{self.name} · {step.mode} · {step.task.name}"
            p.step(label)
            key, hit = self._cached("task", task=et.fingerprint, n=et.n_items, mode=step.mode)
            if hit is not None:
                run = TaskRun.from_json(hit)
                p.advance(et.n_items)
                p.finished(label, f"{run.metric} {_score(run.score)} (cached)")
            else:
                if step.mode not in lms:
                    lms[step.mode] = make_lm(self.model, self.ctx.tokenizer, step.mode, self.ctx.thinking, s.batch_size)
                lm = lms[step.mode]
                before = p.done
                lm.on_items = p.advance
                run = run_task(lm, self.ctx.tokenizer, et, step.mode, s)
                p.advance(et.n_items - (p.done - before))  # a failed run still counts its items as done
                p.finished(label, f"{run.metric} {_score(run.score)}" if run.error is None else f"failed: {run.error}")
                if key is not None and run.error is None:
                    self.ctx.cache.put(key, run.to_json())
            self.out.runs[(et.name, step.mode)] = run
        lms.clear()

    def generations(self) -> None:
        """Reasoning check and sample answers, for the base and the fine-tune only."""
        if self.name not in (BASE, TUNED):
            return
        ctx, s = self.ctx, self.ctx.settings
        if ctx.thinking and ctx.retention_prompts:
            ctx.progress.step(f"{self.name} · reasoning check")
            key, hit = self._cached("retention", prompts=_digest(ctx.retention_prompts), tokens=s.gen_tokens)
            if hit is None:
                hit = thinking.measure(self.model, ctx.tokenizer, ctx.retention_prompts, s.gen_tokens, s.batch_size)
                if key is not None:
                    ctx.cache.put(key, hit)
            self.out.retention = hit
        if ctx.picked_samples:
            ctx.progress.step(f"{self.name} · sample answers")
            key, hit = self._cached("samples", rows=_digest(ctx.picked_samples), mode=ctx.sample_mode,
                                    tokens=s.gen_tokens)
            texts = hit["texts"] if hit is not None else sample_gen.answers(
                self.model, ctx.tokenizer, ctx.picked_samples, ctx.sample_mode, ctx.thinking, s.gen_tokens,
                s.batch_size)
            if hit is None and key is not None:
                ctx.cache.put(key, {"texts": texts})
            self.out.samples = texts

    def finish(self) -> ModelOutcome:
        if self.name == BASE:
            self.out.info["cache"] = {"hits": self.hits, "misses": self.misses,
                                      "enabled": self._base_parts is not None}
        return self.out
