"""Turn `auto` settings into concrete ones for the machine at hand.

Decisions come from measurements (benchmarks/throughput.py): fp32 on CPU (bf16 is
~5x slower there), bf16 on GPUs that support it; padding-free batches with per-document
attention for SFT, because on length-spread chat data plain padding wastes most tokens.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import asdict, dataclass

from smolforge.config import SmolforgeConfig
from smolforge.errors import SmolforgeError


@dataclass
class Runtime:
    device: str  # cpu | cuda
    precision: str  # fp32 | bf16 | fp16
    batching: str  # padded | grouped | padding_free | packed
    attn_implementation: str
    activation_checkpointing: bool
    world_size: int
    malloc_tuned: bool = False
    liger_kernel: bool = False
    generation: str = "transformers"  # GRPO's sampling: transformers (generate) | vllm (colocate)
    supervised_lm_head: bool = False  # LM head and loss only where the label is not -100 (lmhead.py)
    whole_lm_head: bool = False  # small CPU logits in one log_softmax instead of TRL's tiles (lmhead.py)

    def as_dict(self) -> dict:
        return asdict(self)


def _cuda() -> tuple[bool, bool]:
    import torch

    if not torch.cuda.is_available():
        return False, False
    return True, torch.cuda.is_bf16_supported()


def _auto_precision(has_cuda: bool, bf16_ok: bool) -> str:
    return "bf16" if bf16_ok else ("fp16" if has_cuda else "fp32")


def for_inference() -> Runtime:
    """The runtime to run a saved model on this machine (no training settings involved)."""
    has_cuda, bf16_ok = _cuda()
    return Runtime(device="cuda" if has_cuda else "cpu", precision=_auto_precision(has_cuda, bf16_ok),
                   batching="padded", attn_implementation="sdpa", activation_checkpointing=False, world_size=1)


def resolve(cfg: SmolforgeConfig, cuda: tuple[bool, bool] | None = None) -> Runtime:
    """The run's runtime on this machine; `cuda` = (has CUDA, bf16 supported) decides for another one
    (`smolforge plan --gpu`)."""
    t = cfg.training
    has_cuda, bf16_ok = cuda if cuda is not None else _cuda()
    device = "cuda" if has_cuda else "cpu"

    precision = _auto_precision(has_cuda, bf16_ok) if t.precision == "auto" else t.precision
    if device == "cpu" and precision == "fp16":
        raise SmolforgeError("training.precision: fp16 needs a CUDA GPU and none was found. "
                             "Use --set training.precision=fp32 (or auto) on CPU.")

    batching = t.batching
    if batching == "auto":
        # DPO in TRL 1.16 has no padding-free path (it is disabled upstream): pad its pairs. GRPO pads its
        # prompts (on the left) and completions, for generation and for the loss alike.
        batching = "padded" if t.method in ("dpo", "grpo") else "padding_free"
    if t.method in ("dpo", "grpo") and batching in ("padding_free", "packed"):
        raise SmolforgeError(f"training.batching: {batching!r} is not available for {t.method.upper()} in TRL 1.16 "
                             "(its batches are padded). Use --set training.batching=padded (or auto).")

    attn = cfg.model.attn_implementation
    if attn == "auto":
        if batching in ("padding_free", "packed"):
            flash = has_cuda and importlib.util.find_spec("flash_attn") is not None
            attn = "flash_attention_2" if flash else "varlen_sdpa"
        else:
            attn = "sdpa"
    if batching in ("padding_free", "packed") and attn in ("sdpa", "eager"):
        raise SmolforgeError(
            f"model.attn_implementation: {attn!r} would let attention cross document boundaries in "
            f"{batching!r} batches. Use auto, varlen_sdpa or flash_attention_2, or --set training.batching=padded."
        )
    if attn == "flash_attention_2" and not (has_cuda and importlib.util.find_spec("flash_attn")):
        raise SmolforgeError("model.attn_implementation: flash_attention_2 needs a CUDA GPU and the flash-attn "
                             "package. Use auto (per-document SDPA) instead.")

    liger = _liger(t.liger_kernel, device)
    if t.four_bit_base:
        _check_four_bit()
    ckpt = t.activation_checkpointing
    if ckpt == "auto":
        ckpt = device == "cuda"
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if t.distributed == "fsdp" and world > 1:
        ckpt = False  # the accelerate FSDP config checkpoints activations itself (fsdp_activation_checkpointing)
    if cfg.tracking.backend in ("wandb", "tensorboard"):
        module = {"wandb": "wandb", "tensorboard": "tensorboard"}[cfg.tracking.backend]
        if importlib.util.find_spec(module) is None:
            raise SmolforgeError(f"tracking.backend: {cfg.tracking.backend!r} needs the {module} package, which is "
                                 f"not installed. Install it (pip install {module}) or use trackio (the default).")
    return Runtime(device=device, precision=precision, batching=batching, attn_implementation=attn,
                   activation_checkpointing=bool(ckpt), world_size=world, liger_kernel=liger,
                   generation=_generation(cfg, device))


def _generation(cfg: SmolforgeConfig, device: str) -> str:
    """GRPO's sampler: vLLM (colocate) needs CUDA and the vllm package; auto takes it where both are there."""
    if cfg.training.method != "grpo":
        return "transformers"
    setting = cfg.training.grpo.generation
    installed = importlib.util.find_spec("vllm") is not None
    if setting == "auto":
        return "vllm" if device == "cuda" and installed else "transformers"
    if setting == "vllm" and device != "cuda":
        raise SmolforgeError("training.grpo.generation: vllm needs a CUDA GPU and none was found. Use "
                             "--set training.grpo.generation=auto (transformers' generate here) or transformers.")
    if setting == "vllm" and not installed:
        raise SmolforgeError("training.grpo.generation: vllm needs the vllm package, which is not installed. Install "
                             "smolforge's vllm extra on the GPU machine (pip install 'smolforge[vllm]'), or use "
                             "--set training.grpo.generation=auto.")
    return setting


def _check_four_bit() -> None:
    """qlora's 4-bit base is bitsandbytes' (its CPU and CUDA backends): it must be installed."""
    if importlib.util.find_spec("bitsandbytes") is None:
        raise SmolforgeError("training.finetune: qlora holds the base in 4-bit with the bitsandbytes package, which is "
                             "not installed. Install it (pip install bitsandbytes==0.50.2, or smolforge's qlora extra) "
                             "or use --finetune lora.")


def _liger(setting: bool | str, device: str) -> bool:
    """Liger's kernels are Triton kernels: CUDA only, and only when the liger-kernel package is installed."""
    installed = importlib.util.find_spec("liger_kernel") is not None
    if setting == "auto":
        return device == "cuda" and installed
    if setting and device != "cuda":
        raise SmolforgeError("training.liger_kernel: true needs a CUDA GPU (Liger's kernels are Triton kernels) and "
                             "none was found. Use --set training.liger_kernel=auto (on where it applies) or false.")
    if setting and not installed:
        raise SmolforgeError("training.liger_kernel: true needs the liger-kernel package, which is not installed. "
                             "Install it (pip install liger-kernel) or use --set training.liger_kernel=auto.")
    return bool(setting)


def tune_malloc() -> bool:
    """Keep freed memory in glibc's heap instead of returning it to the OS after every step.

    Training allocates and frees the same large activation buffers each step; with glibc's
    defaults each one is a fresh mmap whose pages fault in again (about a fifth of the CPU time went to
    page faults on a 2-core CPU). Raising the mmap/trim thresholds and the top pad reuses them instead.
    Numerically a no-op. Only on Linux/glibc; SMOLFORGE_MALLOC_TUNE=0 turns it off.
    """
    import ctypes
    import ctypes.util
    import sys

    if os.environ.get("SMOLFORGE_MALLOC_TUNE", "1") == "0" or not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (musl, ...): nothing to tune
        return False
    m_trim_threshold, m_top_pad, m_mmap_threshold = -1, -2, -3
    mib = 1024 * 1024
    ok = mallopt(m_mmap_threshold, 32 * mib)  # glibc's maximum on 64-bit
    ok &= mallopt(m_trim_threshold, 512 * mib)
    ok &= mallopt(m_top_pad, 64 * mib)
    return bool(ok)
