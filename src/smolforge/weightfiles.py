"""What a model folder's weight files hold: sizes on disk, and the tensors' shapes and dtypes read through
safetensors' own reader (headers only, no tensor is loaded), for the quantize and GGUF stages and their cards."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

WEIGHT_SUFFIXES = (".safetensors", ".bin")
DTYPE_NAMES = {"F32": "float32", "BF16": "bfloat16", "F16": "float16", "I8": "int8", "U8": "uint8"}


def weights_bytes(folder: Path) -> int:
    """Bytes of the weight files (*.safetensors, *.bin) in a model folder: what a download of the weights costs."""
    return sum(p.stat().st_size for p in folder.iterdir() if p.is_file() and p.name.endswith(WEIGHT_SUFFIXES))


def folder_bytes(folder: Path) -> int:
    """Bytes of every file in a folder (weights, config, tokenizer, chat template)."""
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def tensors(folder: Path) -> Iterator[tuple[str, list[int], str]]:
    """(name, shape, safetensors dtype such as "BF16") of every tensor in the folder's safetensors files."""
    from safetensors import safe_open

    for f in sorted(folder.glob("*.safetensors")):
        with safe_open(str(f), framework="numpy") as handle:
            for name in handle.keys():
                part = handle.get_slice(name)
                yield name, part.get_shape(), part.get_dtype()


def parameter_count(folder: Path) -> int:
    return sum(math.prod(shape) for _, shape, _ in tensors(folder))


def main_dtype(folder: Path) -> str:
    """The dtype most of the folder's parameters are stored in ("float32", "bfloat16", "int8", ...)."""
    counts: Counter[str] = Counter()
    for _, shape, dtype in tensors(folder):
        counts[dtype] += math.prod(shape)
    top = counts.most_common(1)[0][0] if counts else "unknown"
    return DTYPE_NAMES.get(top, top.lower())
