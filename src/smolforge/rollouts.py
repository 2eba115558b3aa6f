"""Held-out rollouts: the before/after numbers of a GRPO run.

GRPO's training log shows rewards on the prompts it is learning from, with the policy of the moment.
What a reader wants to know is different: on prompts the run never trained on, do the completions
score better after training than before? `score_rollouts` samples completions for the held-out
prompts the way training samples them (same chat template mode, temperature and length, a fixed
seed), scores them with the run's reward functions, and summarises them: reward per function and
weighted total (mean and spread), completion lengths, the share cut at max_completion_length, and
the share with a closed think block. The same call before and after training gives the comparison.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable
from typing import Any

from smolforge.rewards import THINK_CLOSE, THINK_OPEN

SAMPLES_KEPT = 3  # prompts whose completions the card shows


def _spread(values: list[float]) -> dict[str, float]:
    clean = [v for v in values if v is not None and not math.isnan(v)]
    if not clean:
        return {"mean": float("nan"), "std": float("nan"), "n": 0}
    return {"mean": round(statistics.fmean(clean), 4),
            "std": round(statistics.pstdev(clean), 4) if len(clean) > 1 else 0.0, "n": len(clean)}


def _prompt_means(values: list[float], samples: int) -> list[float | None]:
    """Each prompt's mean over its `samples` completions (in order): what the before/after comparison pairs."""
    out = []
    for i in range(0, len(values), samples):
        clean = [v for v in values[i:i + samples] if not math.isnan(v)]
        out.append(round(statistics.fmean(clean), 6) if clean else None)
    return out


def score_rollouts(model, tokenizer, prompts: list[list[dict]], columns: dict[str, list], funcs: list[Callable],
                   weights: list[float], *, samples: int, max_new_tokens: int, temperature: float,
                   think: bool, seed: int, batch_prompts: int = 8) -> dict[str, Any]:
    """Sample `samples` completions per prompt with KV-cached batched generation, score them, summarise."""
    import torch

    was_training = model.training
    model.eval()
    cuda = [model.device] if model.device.type == "cuda" else []
    rng = torch.random.fork_rng(devices=cuda)  # sampling here leaves the training's random state as it was
    rng.__enter__()
    torch.manual_seed(seed)
    eos = model.generation_config.eos_token_id if model.generation_config.eos_token_id is not None \
        else tokenizer.eos_token_id
    eos_ids = set(eos if isinstance(eos, list) else [eos])
    side = tokenizer.padding_side
    tokenizer.padding_side = "left"  # generation continues every prompt from its last token
    texts: list[str] = []
    ids: list[list[int]] = []
    truncated = 0
    tokens = 0
    started = time.perf_counter()
    try:
        for start in range(0, len(prompts), batch_prompts):
            chunk = prompts[start:start + batch_prompts]
            enc = tokenizer.apply_chat_template(chunk, add_generation_prompt=True, tokenize=True, return_dict=True,
                                                padding=True, return_tensors="pt", enable_thinking=think)
            enc = {k: v.to(model.device) for k, v in enc.items()}
            with torch.inference_mode():
                out = model.generate(**enc, do_sample=True, temperature=temperature, top_p=1.0, top_k=0,
                                     max_new_tokens=max_new_tokens, num_return_sequences=samples,
                                     pad_token_id=tokenizer.pad_token_id, eos_token_id=list(eos_ids))
            chunk_ids = []
            for row in out[:, enc["input_ids"].shape[1]:].tolist():
                end = next((i for i, t in enumerate(row) if t in eos_ids), None)
                truncated += end is None  # cut at max_new_tokens before the model ended its answer
                chunk_ids.append(row[:end] if end is not None else row)
            tokens += sum(len(r) for r in chunk_ids)
            ids += chunk_ids
            texts += tokenizer.batch_decode(chunk_ids, skip_special_tokens=True)  # as TRL decodes completions
    finally:
        tokenizer.padding_side = side
        rng.__exit__(None, None, None)
        model.train(was_training)
    seconds = time.perf_counter() - started
    repeated_prompts = [p for p in prompts for _ in range(samples)]
    completions = [[{"role": "assistant", "content": t}] for t in texts]
    repeated = {k: [v for v in values for _ in range(samples)] for k, values in columns.items()}
    per_func: dict[str, list[float]] = {}
    for fn in funcs:
        per_func[fn.__name__] = [float("nan") if v is None else float(v) for v in
                                 fn(prompts=repeated_prompts, completions=completions, completion_ids=ids,
                                    **repeated)]
    total = [sum(w * per_func[fn.__name__][i] for fn, w in zip(funcs, weights, strict=True)
                 if not math.isnan(per_func[fn.__name__][i])) for i in range(len(texts))]
    lengths = [len(i) for i in ids]
    per_prompt = {name: _prompt_means(values, samples) for name, values in {**per_func, "total": total}.items()}
    return {
        "prompts": len(prompts), "completions": len(texts), "samples_per_prompt": samples,
        "temperature": temperature, "max_new_tokens": max_new_tokens, "seed": seed,
        "rewards": {name: _spread(values) for name, values in per_func.items()},
        "total": _spread(total),
        "completion_tokens": {"mean": round(statistics.fmean(lengths), 1) if lengths else 0,
                              "max": max(lengths, default=0)},
        "truncated_share": round(truncated / len(texts), 4) if texts else 0.0,
        "think_share": round(sum(1 for t in texts if THINK_OPEN in t and THINK_CLOSE in t) / len(texts), 4)
        if texts else 0.0,
        "tokens_per_second": round(tokens / seconds, 1) if seconds > 0 else None,
        "per_prompt": per_prompt,
        "examples": [{"prompt": prompts[i], "completion": texts[i * samples]} for i in range(min(SAMPLES_KEPT,
                                                                                                 len(prompts)))],
    }
