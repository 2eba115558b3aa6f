"""Named GPUs for `smolforge plan --gpu NAME`: peak dense tensor FLOP/s, memory and memory bandwidth, from the
vendors' datasheets.

A prediction for a GPU that is not in this machine is the model's FLOPs at ASSUMED_MFU of the peak: the
share of peak that a well-fed bf16 fine-tune of a ~1-8B decoder reaches. It is an assumption, stated
wherever the number is shown; `--calibrate` on the GPU itself replaces it with a measurement.
"""

from __future__ import annotations

from dataclasses import dataclass

from smolforge.errors import SmolforgeError

ASSUMED_MFU = 0.40


@dataclass(frozen=True)
class Gpu:
    name: str          # what --gpu takes
    label: str         # what tables print
    peak_tflops: float  # dense (no sparsity) bf16 tensor-core TFLOP/s; fp16 for GPUs without bf16
    memory_gib: float   # the datasheet's memory; the CUDA context and allocator reserve are counted separately
    bandwidth_gbs: float  # the datasheet's memory bandwidth (GB/s): what a 4-bit weight's dequantization is bound by
    bf16: bool = True

    @property
    def peak_flops(self) -> float:
        return self.peak_tflops * 1e12

    @property
    def memory_bytes(self) -> int:
        return int(self.memory_gib * 2**30)

    @property
    def precision(self) -> str:
        """What `training.precision: auto` resolves to on this GPU (runtime.py's rule)."""
        return "bf16" if self.bf16 else "fp16"


GPUS: tuple[Gpu, ...] = (
    Gpu("b200", "NVIDIA B200 (180 GB)", 2250.0, 180, 8000),
    Gpu("h200", "NVIDIA H200 SXM (141 GB)", 989.4, 141, 4800),
    Gpu("h100", "NVIDIA H100 SXM (80 GB)", 989.4, 80, 3350),
    Gpu("h100-pcie", "NVIDIA H100 PCIe (80 GB)", 756.0, 80, 2000),
    Gpu("a100-80gb", "NVIDIA A100 (80 GB)", 312.0, 80, 2039),
    Gpu("a100-40gb", "NVIDIA A100 (40 GB)", 312.0, 40, 1555),
    Gpu("l40s", "NVIDIA L40S (48 GB)", 362.0, 48, 864),
    Gpu("a10", "NVIDIA A10 (24 GB)", 125.0, 24, 600),
    Gpu("l4", "NVIDIA L4 (24 GB)", 121.0, 24, 300),
    Gpu("rtx-4090", "NVIDIA GeForce RTX 4090 (24 GB)", 165.2, 24, 1008),
    Gpu("t4", "NVIDIA T4 (16 GB, no bf16)", 65.0, 16, 320, bf16=False),
    Gpu("mi300x", "AMD Instinct MI300X (192 GB)", 1307.4, 192, 5300),
)
ALIASES = {"h100-sxm": "h100", "a100": "a100-80gb", "4090": "rtx-4090", "h200-sxm": "h200"}


def known_names() -> list[str]:
    return [g.name for g in GPUS]


def lookup(name: str) -> Gpu:
    """The GPU `--gpu` names; an unknown name lists the known ones."""
    key = name.strip().lower().replace("_", "-").replace(" ", "-")
    key = ALIASES.get(key, key)
    for gpu in GPUS:
        if gpu.name == key:
            return gpu
    raise SmolforgeError(f"--gpu: unknown GPU {name!r}. Known GPUs: {', '.join(known_names())}. Pick the closest "
                         "one, or plan on the GPU itself (without --gpu) to use the detected device.")


def match_detected(device_name: str) -> Gpu | None:
    """The table's entry for a GPU torch reports (e.g. "NVIDIA H100 80GB HBM3"), when one fits."""
    text = device_name.lower().replace(" ", "")
    if "h100" in text:
        return lookup("h100-pcie" if "pcie" in text else "h100")
    if "a100" in text:
        return lookup("a100-40gb" if "40gb" in text else "a100-80gb")
    for key, probe in (("h200", "h200"), ("b200", "b200"), ("l40s", "l40s"), ("l4", "nvidial4"), ("a10", "nvidiaa10"),
                       ("rtx-4090", "4090"), ("t4", "teslat4"), ("mi300x", "mi300x")):
        if probe in text and not (key == "a10" and "a100" in text):
            return lookup(key)
    return None
