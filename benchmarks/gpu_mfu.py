"""Training throughput and MFU of the SmolLM3-3B architecture on one NVIDIA GPU (H100 class).

The model is built from `SmolLM3Config()` (whose defaults are SmolLM3-3B: 36 layers, hidden 2048,
GQA 16/4 heads, vocab 128256) with random weights, so nothing is downloaded. Inputs are synthetic
token ids. Precision bf16 (weights and AdamW states), SDPA attention, or flash-attention 2 with
--attn flash_attention_2 when installed.

MFU = achieved model FLOP/s / peak FLOP/s, with model FLOPs per trained token
    full fine-tune: 6 * N   (forward 2N + backward 4N)
    LoRA:           4 * N   (forward 2N + backward through the frozen weights 2N; adapter FLOPs ignored)
where N is the parameter count of the base model (tied embedding counted once), and the peak is
989 TFLOP/s (H100 SXM dense bf16; pass --peak-tflops for other GPUs). Attention's quadratic FLOPs
are not counted, as in the usual 6N convention, so long sequences understate MFU slightly.
Activation recomputation (--checkpointing) is also not counted as useful work.

    python benchmarks/gpu_mfu.py [--mode full|lora|both] [--batch 4] [--seq 4096] [--steps 20]

Prints one line per mode: mode=... tokens_per_s=... mfu=...  On a machine without a CUDA GPU it
exits with status 2 and says so: the number is then not measured.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

os.environ.setdefault("TORCHAO_FORCE_SKIP_LOADING_SO_FILES", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def build(attn: str, checkpointing: bool):
    import torch
    from transformers import SmolLM3Config, SmolLM3ForCausalLM

    config = SmolLM3Config(attn_implementation=attn, use_cache=False)
    with torch.device("cuda"):
        model = SmolLM3ForCausalLM(config).to(torch.bfloat16)
    if checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.train()
    n_params = sum(p.numel() for p in model.parameters())
    return model, config, n_params


def run_mode(mode: str, args) -> dict:
    import torch

    model, config, n_params = build(args.attn, args.checkpointing)
    if mode == "lora":
        from peft import LoraConfig, get_peft_model

        model = get_peft_model(model, LoraConfig(r=16, lora_alpha=32, target_modules="all-linear",
                                                 task_type="CAUSAL_LM"))
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-5, fused=True)
    gen = torch.Generator(device="cuda").manual_seed(0)
    ids = torch.randint(0, config.vocab_size, (args.batch, args.seq), device="cuda", generator=gen)

    def step() -> torch.Tensor:
        out = model(input_ids=ids, labels=ids)
        out.loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return out.loss.detach()

    for _ in range(args.warmup):
        step()
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(args.steps):
        loss = step()
    torch.cuda.synchronize()
    seconds = time.perf_counter() - t0
    tokens = args.batch * args.seq * args.steps
    tokens_per_s = tokens / seconds
    flops_per_token = (6 if mode == "full" else 4) * n_params
    mfu = tokens_per_s * flops_per_token / (args.peak_tflops * 1e12)
    peak_mem = torch.cuda.max_memory_allocated() / 2**30
    return {"mode": mode, "tokens_per_s": tokens_per_s, "mfu": mfu, "n_params": n_params,
            "trainable": sum(p.numel() for p in params), "seconds": seconds, "loss": float(loss),
            "peak_mem_gib": peak_mem}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mode", choices=["full", "lora", "both"], default="both")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--seq", type=int, default=4096)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--attn", default="sdpa", choices=["sdpa", "flash_attention_2"])
    parser.add_argument("--checkpointing", action="store_true", help="activation checkpointing (saves memory)")
    parser.add_argument("--peak-tflops", type=float, default=989.0, help="GPU dense bf16 peak (H100 SXM: 989)")
    args = parser.parse_args()

    import torch

    if not torch.cuda.is_available():
        print("gpu_mfu: no CUDA GPU is available on this machine, so MFU was not measured. Run this script on an "
              "NVIDIA GPU (H100 class) with a CUDA build of torch.", file=sys.stderr)
        sys.exit(2)
    name = torch.cuda.get_device_name(0)
    modes = ["full", "lora"] if args.mode == "both" else [args.mode]
    for mode in modes:
        r = run_mode(mode, args)
        torch.cuda.empty_cache()  # the mode's model and optimizer died with run_mode's frame
        torch.cuda.reset_peak_memory_stats()
        print(f"mode={mode} gpu={name!r} tokens_per_s={r['tokens_per_s']:.0f} mfu={r['mfu']:.1%} "
              f"flops_per_token={'6N' if mode == 'full' else '4N'} N={r['n_params']:,} trainable={r['trainable']:,} "
              f"batch={args.batch}x{args.seq} attn={args.attn} checkpointing={args.checkpointing} "
              f"peak_mem_gib={r['peak_mem_gib']:.1f} loss={r['loss']:.3f} peak_tflops={args.peak_tflops:g}")


if __name__ == "__main__":
    main()
