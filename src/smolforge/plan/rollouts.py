"""GRPO's sampling, priced: the memory and time of generating the completions a step learns from.

A GRPO step first samples `num_generations` completions per prompt with transformers' `generate` (KV cache),
then runs the backward pass over prompt + completion tokens like an SFT step. TRL generates each process's
whole generation batch (batch_size x steps_per_generation completions; smolforge leaves steps_per_generation
at gradient_accumulation_steps, so one generation per optimizer step) in one call.

    KV cache   the generation batch x (its longest prompt + max_completion_length) tokens x layers x 2 (keys
               and values) x kv_heads x head_dim x bytes of the compute dtype, + the last position's logits
               in fp32 for sampling (logits, processed logits, probabilities: 3 x vocab x 4 bytes a sequence).
               Generation and the backward pass never hold their tensors at the same time (the gradients are
               released between steps), so the peak grows only by what the KV cache needs beyond the
               backward pass's gradients, activations and loss buffers.
    time       prefill: 2 N FLOPs per prompt token at the device's rate; then max_completion_length decoding
               steps (an upper bound: sampling stops once every completion has ended), each the longer of its
               FLOPs (2 N per sequence + attention over the context) at the rate and of reading the weights
               and the KV cache once at the memory bandwidth (what bounds decoding on a GPU), plus the
               generate loop's own overhead per step and layer (measured); + the held-out prompts sampled
               before and after training.
"""

from __future__ import annotations

from dataclasses import dataclass

from smolforge.config import SmolforgeConfig
from smolforge.plan.memory import FP32, Layout, base_weight_bytes
from smolforge.plan.model import ModelFacts

# The generate loop's own time per decoding step, beyond its FLOPs and bytes: Python and operator dispatch, per
# step (sampling, stopping checks) and per layer (its ~15 operators). Measured on this 2-core CPU with random
# tiny SmolLM3 models of 4 and 16 layers (hidden 128, 16 sequences, 32 extra tokens; 7 Dec 2026): 8.5 and
# 29.9 ms per step, so about 1.4 ms + 1.8 ms per layer. On a GPU the same loop launches the kernels; the plan
# uses the CPU figure there too, which makes its sampling time an upper bound.
DECODE_STEP_OVERHEAD_S = 1.4e-3
DECODE_LAYER_OVERHEAD_S = 1.8e-3


@dataclass(frozen=True)
class Rollouts:
    sequences: int           # completions one process generates in one call (its generation batch)
    prompt_tokens: int       # the longest prompt (tokens): every sequence is left-padded to it
    completion_tokens: int   # max_completion_length: the cache's room for each completion
    kv_cache: float          # bytes of the generation batch's KV cache (and sampling logits) at its largest
    step_s: float            # generation time per optimizer step (all processes generate at once)
    held_out_s: float        # the held-out prompts, sampled before and after training
    generation: str = "transformers"  # the runtime's sampler: transformers | vllm (colocate)
    vllm_reserved: float = 0.0        # vLLM: the share of the GPU it reserves (weights copy + its KV cache), bytes


def kv_bytes_per_token(m: ModelFacts, lay: Layout) -> float:
    """Keys and values of one token in every layer, in the compute dtype."""
    return 2 * m.layers * m.kv_heads * m.head_dim * lay.activation_bytes


def generation_bytes(m: ModelFacts, lay: Layout, sequences: int, context: int) -> float:
    """The KV cache of `sequences` sequences of `context` tokens, and the logits sampling keeps per sequence."""
    return sequences * (context * kv_bytes_per_token(m, lay) + 3 * m.vocab * FP32)


def _generate_seconds(m: ModelFacts, lay: Layout, sequences: int, prompt: int, completion: int, flops: float,
                      bandwidth: float) -> float:
    """One `generate` call: the prompts' prefill, then `completion` decoding steps (see the module docstring)."""
    if sequences == 0:
        return 0.0
    n = m.matmul_params
    prefill = 2 * n * sequences * prompt / flops
    weights = base_weight_bytes(m) + m.adapter_params * m.adapter_bytes
    total = prefill
    for step in range(completion):
        context = prompt + step
        compute = (2 * n + 4 * m.layers * m.attention_width * context) * sequences / flops
        memory = (weights + sequences * context * kv_bytes_per_token(m, lay)) / bandwidth if bandwidth > 0 else 0.0
        total += max(compute, memory) + DECODE_STEP_OVERHEAD_S + m.layers * DECODE_LAYER_OVERHEAD_S
    return total


def price_rollouts(cfg: SmolforgeConfig, m: ModelFacts, lay: Layout, prompt_lengths: list[int] | None,
                   held_out_prompts: int, flops: float, bandwidth: float) -> Rollouts:
    """GRPO's sampling for the run: the generation batch one process holds, its KV cache, and its time."""
    t, g = cfg.training, cfg.training.grpo
    completion = g.max_completion_length
    longest = max(prompt_lengths) if prompt_lengths else t.max_length - completion
    longest = min(longest, t.max_length - completion)
    sequences = t.batch_size * t.gradient_accumulation_steps
    kv = generation_bytes(m, lay, sequences, longest + completion)
    step_s = _generate_seconds(m, lay, sequences, longest, completion, flops, bandwidth)
    held_out = min(g.eval_prompts, held_out_prompts)
    held_out_s = 0.0
    if held_out:  # score_rollouts: 8 prompts per call, num_generations samples each, before and after training
        calls, last = divmod(held_out, 8)
        per_call = _generate_seconds(m, lay, 8 * g.num_generations, longest, completion, flops, bandwidth)
        tail = _generate_seconds(m, lay, last * g.num_generations, longest, completion, flops, bandwidth)
        held_out_s = 2 * (calls * per_call + tail)
    return Rollouts(sequences=sequences, prompt_tokens=longest, completion_tokens=completion, kv_cache=kv,
                    step_s=step_s, held_out_s=held_out_s)


def with_vllm(r: Rollouts, share: float, capacity: float | None) -> Rollouts:
    """vLLM in colocate mode keeps `share` of the GPU for itself through the whole run (its copy of the weights and
    its own KV cache); the sampling time stays transformers' bound, which vLLM beats."""
    return Rollouts(**{**r.__dict__, "generation": "vllm", "vllm_reserved": share * (capacity or 0.0)})
