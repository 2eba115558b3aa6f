"""What a 4-bit NF4 weight costs in memory, as bitsandbytes stores it (the qlora base): pure arithmetic, shared by
the model facts (`model.py`, the base's size as loaded) and the memory terms (`memory.py`)."""

from __future__ import annotations

import math

FP32 = 4
NF4_BLOCK = 64             # bitsandbytes' 4-bit blocksize: weights sharing one absmax
NESTED_BLOCK = 256         # double quantization: absmax values sharing one fp32 scale
NF4_FIXED = (16 + 256 + 1) * FP32  # per quantized tensor: copies of both code tables, and the absmax offset


def four_bit_bytes(numel: int) -> int:
    """Bytes bitsandbytes keeps for one weight of `numel` parameters quantized to NF4 with double quantization
    (`quantize_4bit(..., quant_type="nf4", compress_statistics=True)`, blocksize 64): the packed codes, the 8-bit
    absmax per block, the fp32 scale per 256 absmax values, and the code tables and offset each tensor keeps. A
    qlora base is held this way, so its weights cost about 0.516 bytes per parameter instead of 2 in bf16 (memory.py's
    docstring)."""
    blocks = math.ceil(numel / NF4_BLOCK)
    return math.ceil(numel / 2) + blocks + FP32 * math.ceil(blocks / NESTED_BLOCK) + NF4_FIXED
