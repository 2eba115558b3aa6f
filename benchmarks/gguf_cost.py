"""GGUF export cost on the tiny model, and the file sizes it implies for SmolLM3-3B.

Runs smolforge's real export path on the tiny preset's model (random weights: conversion cost does
not depend on training): llama.cpp's converter to f16 (in its own process, as `smolforge quantize` runs
it), the end-of-turn metadata copy, and `llama_model_quantize` to Q8_0 and Q4_K_M, each timed (best of
--rounds) and each file's size and bits per weight measured.

SmolLM3-3B's sizes are projected from its parameter count (`SmolLM3Config()`'s defaults are
SmolLM3-3B's architecture, built on the meta device: no download, no memory): F16 is 16 bits per weight
and Q8_0 8.5 (32 int8 weights plus one f16 scale per block), both exact by format; Q4_K_M mixes Q4_K
and Q6_K by layer, so its figure uses the 4.90 bits per weight llama.cpp's quantize tool lists for
Llama-3-8B (4.58 GiB for 8.03B parameters). The tiny model's own Q4_K_M is not representative: most of
its tensors are narrower than a 256-weight super-block and fall back to Q5_0.

    .venv/bin/python benchmarks/gguf_cost.py [--rounds 2]

Prints the machine, one line per method for the tiny model, then the SmolLM3-3B projection.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

BITS = {"gguf-f16": 16.0, "gguf-q8_0": 8.5, "gguf-q4_k_m": 4.58 * 2**30 * 8 / 8.03e9}


def smollm3_3b_parameters() -> int:
    import torch
    from transformers import SmolLM3Config, SmolLM3ForCausalLM

    with torch.device("meta"):
        model = SmolLM3ForCausalLM(SmolLM3Config())
    return sum(p.numel() for p in model.parameters())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    os.environ.setdefault("SMOLFORGE_CACHE", tempfile.mkdtemp(prefix="smolforge-bench-"))

    from eval_cost import machine  # the same machine line as the other benchmarks (this folder is on sys.path)
    from smolforge.config import TinySpec
    from smolforge.gguf.convert import add_turn_metadata, file_name, quantize_file, run_converter
    from smolforge.gguf.source import stage_source
    from smolforge.gguf.toolchain import find
    from smolforge.tiny import ensure_tiny
    from smolforge.weightfiles import parameter_count

    tc = find()
    source = ensure_tiny(TinySpec())
    params = parameter_count(source)
    print(machine())
    print("load average before: {:.2f} {:.2f} {:.2f} (other processes share these cores)".format(*os.getloadavg()))
    print(f"llama.cpp: llama-cpp-python {tc.version}; tiny model: {params:,} parameters ({source})")
    best: dict[str, tuple[float, int]] = {}
    for _ in range(args.rounds):
        with tempfile.TemporaryDirectory(prefix="gguf-bench-") as tmp:
            work = Path(tmp)
            t0 = time.perf_counter()
            staged, facts = stage_source(source, work / "src", str(source))
            run_converter(tc, staged, work / "raw.gguf", "tiny", "tiny")
            f16 = work / file_name("tiny", "gguf-f16")
            add_turn_metadata(work / "raw.gguf", f16, facts)
            times = {"gguf-f16": time.perf_counter() - t0}
            sizes = {"gguf-f16": f16.stat().st_size}
            for method in ("gguf-q8_0", "gguf-q4_k_m"):
                out = work / file_name("tiny", method)
                t1 = time.perf_counter()
                quantize_file(f16, out, method)
                times[method] = time.perf_counter() - t1
                sizes[method] = out.stat().st_size
            for m, t in times.items():
                if m not in best or t < best[m][0]:
                    best[m] = (t, sizes[m])
    for m, (t, size) in best.items():
        step = "convert to f16 (converter process + metadata copy)" if m == "gguf-f16" else "llama_model_quantize"
        print(f"tiny {m}: {t:.2f} s ({step}), {size / 1e3:.1f} KB, {8 * size / params:.2f} bits/weight")
    big = smollm3_3b_parameters()
    print(f"SmolLM3-3B: {big:,} parameters (SmolLM3Config defaults)")
    for m, bits in BITS.items():
        print(f"SmolLM3-3B {m}: projected {big * bits / 8 / 1e9:.2f} GB ({bits:.2f} bits/weight)")


if __name__ == "__main__":
    main()
