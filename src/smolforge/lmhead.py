"""The LM head and loss only at supervised positions, on a CPU too.

TRL's SFT loss runs a fused LM head that projects, normalises and differentiates only the positions
whose next-token label is not -100, but only on devices with Triton (CUDA, XPU); elsewhere it scores
every position and masks afterwards, which keeps the tile shapes fixed for compilers such as Neuron's.
Nothing is compiled on a CPU, and with assistant-only loss about half the positions of a chat are
unsupervised, so that work is wasted there. The ignored positions contribute exact zeros either way:
the loss and gradients are the same. Measured with benchmarks/throughput.py (`--breakdown`).
"""

from __future__ import annotations

import os

ENV = "SMOLFORGE_SUPERVISED_LM_HEAD"


def enable() -> bool:
    """Make TRL's fused LM head score only supervised positions on CPU tensors too (process-wide).

    TRL has no switch for this: its fused forward asks `trl.trainer.utils._use_triton(device)` whether
    to compact, and nothing else in that module asks it (the kernels import their own copy to choose
    Triton or torch tiles, so on a CPU they still run torch). Returns whether it is on; False when
    SMOLFORGE_SUPERVISED_LM_HEAD=0 or TRL no longer has that hook.
    """
    if os.environ.get(ENV, "1") == "0":
        return False
    import trl.trainer.utils as trl_utils

    decide = getattr(trl_utils, "_use_triton", None)
    if decide is None:
        return False
    if getattr(decide, "smolforge_supervised_only", False):
        return True

    def compact_on_cpu_too(device) -> bool:
        return device.type == "cpu" or decide(device)

    compact_on_cpu_too.smolforge_supervised_only = True
    compact_on_cpu_too.smolforge_original = decide
    trl_utils._use_triton = compact_on_cpu_too
    return True
