"""Tokens per step from the data's real token lengths, batched the way the run batches them.

The lengths are the run's own chat-template token lengths (`data.lengths`, measured before the model
loads). Batches are drawn in the trainer's own order for one process (the same seeded torch permutation
per epoch as its sampler), split over the processes like a distributed sampler, `batch_size` rows per
micro-batch; grouped batches use a seeded shuffle, not the trainer's exact order, so their per-step numbers
are statistics. Padding-free batches process their real tokens, padded ones the longest row
times the rows, grouped ones sort megabatches by length first (transformers' LengthGroupedSampler),
packed ones fill `max_length` bins best-fit-decreasing (TRL's packer) and batch the bins.
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass

from smolforge.config import SmolforgeConfig
from smolforge.trainers import planned_steps

MEGABATCH_MULT = 50  # transformers' LengthGroupedSampler sorts megabatches of 50 batches by length


@dataclass(frozen=True)
class Batches:
    source: str                  # "data": measured lengths; "max_length": no data, every sequence assumed full
    rows: int                    # training rows (sequences; packed: bins); 0: unknown
    steps: int                   # optimizer steps the trainer will run; 0: unknown (no data, no max_steps)
    steps_per_epoch: int
    tokens_per_step: float       # processed tokens per optimizer step (padding included), all processes
    real_tokens_per_step: float  # tokens that are not padding
    peak_micro_tokens: int       # processed tokens of the largest micro-batch one process holds
    peak_micro_rows: int
    context_per_token: float     # mean causal attention context of a processed token (attention FLOPs)
    eval_tokens: int             # processed tokens of one evaluation pass (all processes)
    eval_context: float
    evals: int                   # evaluation passes during training (the step-0 baseline included)
    saves: int                   # checkpoints written

    @property
    def total_tokens(self) -> float:
        return self.tokens_per_step * self.steps

    @property
    def padding_fraction(self) -> float:
        return 1 - self.real_tokens_per_step / self.tokens_per_step if self.tokens_per_step else 0.0


def trainer_steps(rows: int, cfg: SmolforgeConfig, world: int) -> tuple[int, int]:
    """(steps per epoch, total optimizer steps) by transformers' own rule (Trainer.set_initial_training_values)."""
    t = cfg.training
    per_process = math.ceil(rows / world)
    loader = math.ceil(per_process / t.batch_size)
    per_epoch = max(1, math.ceil(loader / t.gradient_accumulation_steps))
    total = t.max_steps if t.max_steps > 0 else math.ceil(t.epochs * per_epoch)
    return per_epoch, max(1, total)


def pack_bins(lengths: list[int], capacity: int) -> list[list[int]]:
    """Best-fit-decreasing bins of at most `capacity` tokens (rows longer than it are cut to it).

    TRL packs a tokenised Dataset; only lengths are known here, so the same rule is applied to them
    (bisect over the bins' free space keeps it O(n log n) for a million rows).
    """
    free: list[tuple[int, int]] = []  # (free space, bin index), sorted
    bins: list[list[int]] = []
    for n in sorted((min(x, capacity) for x in lengths), reverse=True):
        i = bisect.bisect_left(free, (n, -1))
        if i < len(free):
            space, b = free.pop(i)
            bins[b].append(n)
            if space - n > 0:
                bisect.insort(free, (space - n, b))
        else:
            bins.append([n])
            if capacity - n > 0:
                bisect.insort(free, (capacity - n, len(bins) - 1))
    return bins


def _micro_batches(units, rng, cfg: SmolforgeConfig, world: int, wanted: int, grouped: bool):
    """Per-process micro-batches (lists of unit indices), epoch after epoch, until `wanted` per process."""
    import numpy as np

    b = cfg.training.batch_size
    n = len(units)
    out: list[np.ndarray] = []
    epoch = 0
    while len(out) < wanted * world:
        order = _trainer_order(n, cfg.training.seed + epoch) if not grouped else rng.permutation(n)
        epoch += 1
        per = math.ceil(n / world)
        order = np.concatenate([order, order[: per * world - n]])  # DistributedSampler pads by repeating rows
        for rank in range(world):
            shard = order[rank::world]
            if grouped:
                mult = max(1, min(len(shard) // (b * 4), MEGABATCH_MULT))
                shard = np.concatenate([sorted(shard[i:i + mult * b], key=lambda j: -units[j][0])
                                        for i in range(0, len(shard), mult * b)]).astype(int)
            out += [shard[i:i + b] for i in range(0, len(shard), b)]
    return out[: wanted * world]


def _trainer_order(n: int, seed: int):
    """The order the trainer's sampler visits the rows in epoch `seed - training.seed`: transformers hands a
    RandomSampler to accelerate, which swaps in its SeedableRandomSampler (a torch generator seeded with
    data_seed + epoch, and smolforge sets data_seed = training.seed), so the same permutation is drawn here."""
    import torch

    return torch.randperm(n, generator=torch.Generator().manual_seed(seed)).numpy()


def _unit_stats(units, idx, padded: bool, pair: bool) -> tuple[int, int, float]:
    """(processed tokens, real tokens, attention pairs) of one micro-batch."""
    rows = [units[i] for i in idx]
    real = sum(u[0] for u in rows)
    if padded:
        longest = max(u[0] for u in rows)
        factor = 2 if pair else 1  # DPO stacks chosen and rejected: 2 x rows, padded to the longest of both
        return factor * longest * len(rows), factor * real, factor * len(rows) * longest * (longest + 1) / 2
    return real, real, sum(u[1] for u in rows)


def plan_batches(cfg: SmolforgeConfig, batching: str, world: int, train_lengths: list[int] | None,
                 eval_lengths: list[int] | None) -> Batches:
    """Steps and tokens for the run. Without lengths (the data could not be read), every micro-batch is assumed
    full (`batch_size` rows of `max_length` tokens, an upper bound) and the step count is known only from
    training.max_steps (else 0: unknown); both are said where the numbers are shown."""
    t = cfg.training
    if not train_lengths:
        return _without_data(cfg, world)
    if t.method == "grpo":
        return _grpo_batches(cfg, world, train_lengths)
    import numpy as np

    cap = t.max_length
    lengths = [min(n, cap) for n in train_lengths]
    if batching == "packed":
        units = [(sum(b), sum(n * (n + 1) / 2 for n in b)) for b in pack_bins(lengths, cap)]
    else:
        units = [(n, n * (n + 1) / 2) for n in lengths]
    per_epoch, steps = trainer_steps(len(units), cfg, world)
    padded = batching in ("padded", "grouped") or t.method == "dpo"
    pair = t.method == "dpo"
    micro = _micro_batches(units, np.random.default_rng(t.seed), cfg, world, steps * t.gradient_accumulation_steps,
                           grouped=batching == "grouped")
    stats = [_unit_stats(units, m, padded, pair) for m in micro]
    processed = sum(s[0] for s in stats)
    peak = max(range(len(stats)), key=lambda i: stats[i][0])
    eval_tokens, eval_ctx = _eval_pass(cfg, eval_lengths, padded, pair)
    return Batches(
        source="data", rows=len(units), steps=steps, steps_per_epoch=per_epoch,
        tokens_per_step=processed / steps, real_tokens_per_step=sum(s[1] for s in stats) / steps,
        peak_micro_tokens=int(stats[peak][0]), peak_micro_rows=len(micro[peak]) * (2 if pair else 1),
        context_per_token=sum(s[2] for s in stats) / processed if processed else 0.0,
        eval_tokens=eval_tokens, eval_context=eval_ctx,
        evals=_evals(cfg, steps, len(lengths), world, bool(eval_lengths)), saves=_saves(cfg, steps))


def _grpo_batches(cfg: SmolforgeConfig, world: int, prompt_lengths: list[int]) -> Batches:
    """GRPO's steps: each prompt sampled num_generations times (TRL's RepeatSampler keeps a prompt's completions
    together, in a seeded order of the prompts), every sequence its prompt + max_completion_length tokens (an
    upper bound: a completion that ends sooner is padded to the longest of its batch), left-padded to the
    longest prompt of its micro-batch. The step count is the trainer's (trainers.planned_steps)."""
    import numpy as np

    t, g = cfg.training, cfg.training.grpo
    completion = g.max_completion_length
    steps = planned_steps(cfg, len(prompt_lengths), world)
    per_epoch = max(1, math.ceil(len(prompt_lengths) * g.num_generations
                                 / (t.batch_size * t.gradient_accumulation_steps * world)))
    rng = np.random.default_rng(t.seed)
    wanted = steps * t.gradient_accumulation_steps * world * t.batch_size
    order: list[int] = []
    while len(order) < wanted:
        order += [int(i) for i in rng.permutation(len(prompt_lengths)) for _ in range(g.num_generations)]
    micro = [order[i:i + t.batch_size] for i in range(0, wanted, t.batch_size)]
    stats = []
    for idx in micro:
        prompts = [min(prompt_lengths[i], t.max_length - completion) for i in idx]
        longest = max(prompts) + completion
        real = sum(p + completion for p in prompts)
        stats.append((longest * len(idx), real, len(idx) * longest * (longest + 1) / 2))
    processed = sum(s[0] for s in stats)
    peak = max(range(len(stats)), key=lambda i: stats[i][0])
    return Batches(
        source="data", rows=len(prompt_lengths), steps=steps, steps_per_epoch=per_epoch,
        tokens_per_step=processed / steps, real_tokens_per_step=sum(s[1] for s in stats) / steps,
        peak_micro_tokens=int(stats[peak][0]), peak_micro_rows=len(micro[peak]),
        context_per_token=sum(s[2] for s in stats) / processed if processed else 0.0,
        eval_tokens=0, eval_context=0.0, evals=0, saves=_saves(cfg, steps))


def _without_data(cfg: SmolforgeConfig, world: int) -> Batches:
    t = cfg.training
    rows = t.batch_size * (2 if t.method == "dpo" else 1)
    micro = rows * t.max_length
    steps = t.max_steps if t.max_steps > 0 else 0
    return Batches(source="max_length", rows=0, steps=steps, steps_per_epoch=0,
                   tokens_per_step=micro * t.gradient_accumulation_steps * world,
                   real_tokens_per_step=micro * t.gradient_accumulation_steps * world, peak_micro_tokens=micro,
                   peak_micro_rows=rows, context_per_token=(t.max_length + 1) / 2, eval_tokens=0, eval_context=0.0,
                   evals=0, saves=_saves(cfg, steps) if steps else 0)


def _eval_pass(cfg: SmolforgeConfig, lengths: list[int] | None, padded: bool, pair: bool) -> tuple[int, float]:
    """Tokens of one evaluation pass: the eval rows in order (no shuffle), `batch_size` per batch."""
    if not lengths:
        return 0, 0.0
    b, cap = cfg.training.batch_size, cfg.training.max_length
    units = [(min(n, cap), min(n, cap) * (min(n, cap) + 1) / 2) for n in lengths]
    tokens, pairs = 0, 0.0
    for i in range(0, len(units), b):
        processed, _, p = _unit_stats(units, range(i, min(i + b, len(units))), padded, pair)
        tokens += processed
        pairs += p
    return tokens, pairs / tokens if tokens else 0.0


def _evals(cfg: SmolforgeConfig, steps: int, rows: int, world: int, has_eval: bool) -> int:
    """The trainer's evaluations: step 0 (the baseline), every eval_steps, and the final one if it is not on one."""
    if not has_eval:
        return 0

    every = cfg.training.eval_steps or max(1, planned_steps(cfg, rows, world) // 10)  # trainer_arguments' rule
    return 1 + steps // every + (1 if steps % every else 0)


def _saves(cfg: SmolforgeConfig, steps: int) -> int:
    every = cfg.training.save_steps
    return steps // every + (1 if steps % every else 0)  # transformers also saves at the last step
