"""The LM head and loss on a CPU: only at supervised positions, and in one piece when it is small.

TRL's SFT/DPO loss runs a fused LM head (`ChunkedLogProbFunction`) that never holds the whole logits: it
projects tiles of 32,768 vocabulary columns and folds them into running log-sum-exp statistics. Two of its
choices cost time on a CPU and change nothing in the numbers:

- It scores only the positions whose next-token label is not -100, but only on devices with Triton (CUDA,
  XPU); elsewhere it scores every position and masks afterwards, which keeps the tile shapes fixed for
  compilers such as Neuron's. Nothing is compiled on a CPU, and with assistant-only loss about half the
  positions of a chat are unsupervised, so that work is wasted there.
- Without Triton each tile is folded by a chain of small torch ops written for the tiled algorithm (a
  running maximum, rescaled sums, a zero-filled gradient tile); when the logits of the scored positions are
  small, one `log_softmax` over them does the same with fewer passes (measured 14.0 ms vs 5.7 ms forward +
  backward for 600 tokens x 1,024 columns on a 2-core CPU).

TRL has no switch for either, so `enable()` swaps two module attributes of `trl.trainer.utils` that only
its fused forward reads; the ignored positions contribute exact zeros and the log-probabilities agree to
float rounding (tests/unit/test_speed_levers.py). Measured end to end with benchmarks/throughput.py
(`--breakdown`). Larger logits, GPUs and options this module does not implement go to TRL's own kernel.
"""

from __future__ import annotations

import os

COMPACT_ENV = "SMOLFORGE_SUPERVISED_LM_HEAD"  # "0": score every position on a CPU, as TRL does
WHOLE_ENV = "SMOLFORGE_WHOLE_LM_HEAD"  # "0": TRL's tiled kernel on a CPU, as TRL does
# Scored positions x vocabulary up to which the CPU head runs in one piece: 16M fp32 logits are 64 MiB, and
# the piece keeps about three such tensors (logits, log-probabilities, their gradient) at its peak.
WHOLE_HEAD_MAX_LOGITS = 1 << 24
_PLAIN_OUTPUTS = {"log_probs", "entropy", "is_top1"}


def _on(env: str) -> bool:
    return os.environ.get(env, "1") != "0"


def holds_logits_whole(rows: int, vocab: int) -> bool:
    """Whether a CPU head of `rows` scored positions over `vocab` columns runs in one piece (also what
    `smolforge plan` budgets memory for)."""
    return _on(WHOLE_ENV) and rows * vocab <= WHOLE_HEAD_MAX_LOGITS


def enable() -> dict[str, bool]:
    """Turn on both CPU levers in TRL's fused LM head (process-wide, idempotent); returns which are on.

    Each is off when its environment variable is "0" or when TRL no longer has the attribute it replaces.
    """
    import trl.trainer.utils as trl_utils

    on = {"supervised_only": False, "whole": False}
    decide = getattr(trl_utils, "_use_triton", None)
    if _on(COMPACT_ENV) and decide is not None:
        if not getattr(decide, "smolforge_original", None):
            def compact_on_cpu_too(device) -> bool:
                return device.type == "cpu" or decide(device)

            compact_on_cpu_too.smolforge_original = decide
            trl_utils._use_triton = compact_on_cpu_too
        on["supervised_only"] = True
    kernel = getattr(trl_utils, "_ChunkedLogProbFunction", None)
    if _on(WHOLE_ENV) and kernel is not None:
        if not getattr(kernel, "smolforge_original", None):
            trl_utils._ChunkedLogProbFunction = _WholeOnCpu(kernel)
        on["whole"] = True
    return on


def disable() -> None:
    """Put TRL's own attributes back (tests and benchmark arms that compare against stock TRL)."""
    import trl.trainer.utils as trl_utils

    for name in ("_use_triton", "_ChunkedLogProbFunction"):
        original = getattr(getattr(trl_utils, name, None), "smolforge_original", None)
        if original is not None:
            setattr(trl_utils, name, original)


class _WholeOnCpu:
    """Stands in for `ChunkedLogProbFunction` (same `apply` signature and outputs): small CPU logits in one piece."""

    def __init__(self, original) -> None:
        self.smolforge_original = original

    def apply(self, hidden, weight, bias, targets, temperature, chunk_size, final_logit_softcapping=None,
              logit_scale=1.0, outputs=("entropy", "log_sum_sq_probs", "mean_logits", "is_top1")):
        import torch

        whole = (hidden.device.type == "cpu" and not torch.is_autocast_enabled("cpu")
                 and holds_logits_whole(hidden.shape[0], weight.shape[0])
                 and temperature == 1.0 and final_logit_softcapping is None and logit_scale == 1.0
                 and set(outputs) | {"log_probs"} <= _PLAIN_OUTPUTS)
        if not whole:
            return self.smolforge_original.apply(hidden, weight, bias, targets, temperature, chunk_size,
                                                 final_logit_softcapping, logit_scale, outputs)
        return whole_head(hidden, weight, bias, targets, outputs)


def whole_head(hidden, weight, bias, targets, outputs):
    """(log_probs, entropy, None, None, is_top1) of `hidden @ weight.T + bias` at `targets`, by plain autograd.

    Same definitions as TRL's kernel: entropy of the softmax, and is_top1 true only when the target is the
    first maximum (argmax returns the first one).
    """
    import torch

    logits = torch.nn.functional.linear(hidden, weight, bias).float()
    log_p = torch.log_softmax(logits, dim=-1)
    log_probs = log_p.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    entropy = -(log_p.exp() * log_p).sum(-1) if "entropy" in outputs else None
    is_top1 = logits.detach().argmax(-1) == targets if "is_top1" in outputs else None
    return log_probs, entropy, None, None, is_top1
