"""Run one lm-eval task on an already-loaded model and keep every item's outcome.

lm-eval does the prompting and scoring (`HFLM` around the loaded model, `simple_evaluate` with
`log_samples=True`); this module fixes what must be identical across models (tokenizer, chat
template, reasoning mode, shots, items, seeds) and turns lm-eval's logged samples into per-item
records: a stable id, the reference, the model's answer or choice, right or wrong.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from smolforge.config import EvaluationSection
from smolforge.evaluation.generation import has_chat_template, think_end_token
from smolforge.evaluation.quiet import quiet
from smolforge.evaluation.tasks import EvalTask

log = logging.getLogger("smolforge.evaluation")
NO_ANSWER = ("", "[invalid]")  # what lm-eval's filters leave when no answer in the expected format was found
CHUNK_ITEMS = 32  # items per call into lm-eval's model: how often progress advances (bigger: better batching)


@dataclass
class ItemResult:
    id: str
    target: str
    answer: str | None
    score: float | None  # the primary metric for this item (1.0/0.0 for accuracy-type metrics)
    prompt_hash: str  # lm-eval's hash of the full prompt: equal across models means equal prompts
    no_answer: bool = False

    @property
    def correct(self) -> bool | None:
        return None if self.score not in (0.0, 1.0) else self.score == 1.0


@dataclass
class TaskRun:
    task: str
    mode: str
    metric: str
    shots: int
    score: float | None = None  # lm-eval's aggregate of the primary metric
    metrics: dict[str, float] = field(default_factory=dict)
    items: list[ItemResult] = field(default_factory=list)
    seconds: float = 0.0
    error: str | None = None

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> TaskRun:
        items = [ItemResult(**i) for i in data.get("items", [])]
        return cls(**{**data, "items": items})


def _progress_lm():
    from lm_eval.models.huggingface import HFLM

    class ProgressHFLM(HFLM):
        """HFLM that feeds requests in item-aligned chunks, so a progress display can advance per item."""

        on_items: Callable[[float], None] | None = None

        def _chunked(self, method: Callable, requests: list) -> list:
            per_item = Counter((r.task_name, r.doc_id) for r in requests)
            out: list = []
            chunk: list = []
            items_in_chunk: set = set()
            for i, req in enumerate(requests):
                key = (req.task_name, req.doc_id)
                items_in_chunk.add(key)
                chunk.append(req)
                nxt = requests[i + 1] if i + 1 < len(requests) else None
                boundary = nxt is None or (nxt.task_name, nxt.doc_id) != key
                if boundary and (len(items_in_chunk) >= CHUNK_ITEMS or nxt is None):
                    out += method(chunk, disable_tqdm=True)
                    if self.on_items:
                        self.on_items(sum(1 / per_item[(r.task_name, r.doc_id)] for r in chunk))
                    chunk, items_in_chunk = [], set()
            return out

        def loglikelihood(self, requests, disable_tqdm: bool = False):
            return self._chunked(super().loglikelihood, requests)

        def generate_until(self, requests, disable_tqdm: bool = False):
            return self._chunked(super().generate_until, requests)

    return ProgressHFLM


def make_lm(model: Any, tokenizer: Any, mode: str, thinking: bool, batch_size: int):
    """The lm-eval model wrapper for one model in one reasoning mode."""
    kwargs: dict[str, Any] = {}
    if thinking:  # lm-eval's own reasoning handling: the template switch, and the answer cut after </think>
        kwargs = {"enable_thinking": mode == "think", "think_end_token": think_end_token(tokenizer)}
    with quiet():
        return _progress_lm()(pretrained=model, tokenizer=tokenizer, batch_size=batch_size, **kwargs)


def _answer(et: EvalTask, sample: dict) -> tuple[str | None, bool]:
    resps = sample.get("filtered_resps") or []
    if et.output_type == "multiple_choice":
        lls = [r[0] if isinstance(r, (list, tuple)) else r for r in resps]
        if not lls:
            return None, True
        best = max(range(len(lls)), key=lambda i: lls[i])
        choices = et.task.doc_to_choice(sample["doc"])
        return (str(choices[best]) if best < len(choices) else str(best)), False
    if et.output_type == "generate_until":
        text = resps[0] if resps else ""
        text = text if isinstance(text, str) else str(text)
        return text, text.strip() in NO_ANSWER
    return None, False


def _target(et: EvalTask, sample: dict) -> str:
    target = sample.get("target")
    if et.output_type == "multiple_choice" and isinstance(target, int):
        choices = et.task.doc_to_choice(sample["doc"])
        if 0 <= target < len(choices):
            return str(choices[target])
    return str(target)


def _items(et: EvalTask, samples: list[dict]) -> list[ItemResult]:
    out = []
    for s in sorted((s for s in samples if s.get("filter", "none") == et.filter), key=lambda s: s["doc_id"]):
        value = s.get(et.metric)
        score = float(value) if isinstance(value, (int, float, bool)) else None
        answer, missing = _answer(et, s)
        out.append(ItemResult(id=et.ids[s["doc_id"]], target=_target(et, s), answer=answer, score=score,
                              prompt_hash=s.get("prompt_hash", ""), no_answer=missing))
    return out


def run_task(lm: Any, tokenizer: Any, et: EvalTask, mode: str, settings: EvaluationSection) -> TaskRun:
    """Evaluate one task in one mode; a harness failure is recorded on the result, not raised."""
    from lm_eval import simple_evaluate
    from lm_eval.tasks import TaskManager

    chat = has_chat_template(tokenizer)
    start = time.perf_counter()
    run = TaskRun(task=et.name, mode=mode, metric=et.metric, shots=settings.num_fewshot)
    try:
        with quiet():
            res = simple_evaluate(
                model=lm, tasks=[et.task], task_manager=TaskManager(include_defaults=False),
                num_fewshot=settings.num_fewshot, limit=et.n_items if et.n_items < et.n_total else None,
                log_samples=True, apply_chat_template=chat, fewshot_as_multiturn=chat,
                gen_kwargs={"max_gen_toks": settings.max_gen_tokens} if settings.max_gen_tokens else None,
                bootstrap_iters=0, random_seed=settings.seed, numpy_random_seed=settings.seed,
                torch_random_seed=settings.seed, fewshot_random_seed=settings.seed,
            )
    except Exception as e:  # one task's failure (context too long, out of memory...) must not lose the others
        log.warning("%s (%s) failed: %s", et.name, mode, e, exc_info=log.isEnabledFor(logging.DEBUG))
        run.error = f"{type(e).__name__}: {(str(e).strip().splitlines() or [''])[0]}"
        run.seconds = time.perf_counter() - start
        return run
    run.seconds = time.perf_counter() - start
    suffix = f",{et.filter}"
    raw = res["results"].get(et.name, {})
    run.metrics = {k[: -len(suffix)]: float(v) for k, v in raw.items()
                   if k.endswith(suffix) and "_stderr" not in k and isinstance(v, (int, float))}
    run.score = run.metrics.get(et.metric)
    run.shots = int(res.get("n-shot", {}).get(et.name, settings.num_fewshot))
    run.items = _items(et, res.get("samples", {}).get(et.name, []))
    return run
