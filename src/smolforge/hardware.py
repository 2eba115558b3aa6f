"""What the run trained on: one human string for the card plus structured fields.

CPU facts come from /proc and os (no torch), so `smolforge doctor` stays quick; GPU facts come
from torch only when it is already imported (inside training) or when asked for.
"""

from __future__ import annotations

import os
import platform
import sys
from importlib import metadata

VERSIONED_PACKAGES = ["smolforge", "torch", "transformers", "trl", "peft", "accelerate", "datasets",
                      "tokenizers", "huggingface_hub", "trackio", "torchao", "safetensors"]


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _ram_gib() -> float | None:
    try:
        with open("/proc/meminfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return round(int(line.split()[1]) / 1024**2, 1)
    except OSError:
        pass
    return None


def _cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def detect(with_gpu: bool | None = None) -> dict:
    """Hardware facts; GPUs are looked up through torch when it is imported (or with_gpu=True)."""
    info: dict = {
        "cpu": _cpu_model(),
        "cpu_cores": _cpu_count(),
        "ram_gib": _ram_gib(),
        "platform": f"{platform.system()} {platform.machine()}",
        "gpus": [],
    }
    if with_gpu or (with_gpu is None and "torch" in sys.modules):
        import torch

        if torch.cuda.is_available():
            for i in range(torch.cuda.device_count()):
                p = torch.cuda.get_device_properties(i)
                info["gpus"].append({"name": p.name, "memory_gib": round(p.total_memory / 1024**3, 1),
                                     "capability": f"{p.major}.{p.minor}"})
    info["device"] = "cuda" if info["gpus"] else "cpu"
    info["summary"] = summary(info)
    return info


def summary(info: dict) -> str:
    cpu = f"{info['cpu']} ({info['cpu_cores']} cores)"
    ram = f", {info['ram_gib']} GiB RAM" if info.get("ram_gib") else ""
    gpus = info.get("gpus") or []
    if not gpus:
        return f"CPU only: {cpu}{ram}"
    names = {g["name"] for g in gpus}
    gpu = f"{len(gpus)}x {gpus[0]['name']} ({gpus[0]['memory_gib']} GiB)" if len(names) == 1 else \
        ", ".join(f"{g['name']} ({g['memory_gib']} GiB)" for g in gpus)
    return f"{gpu}; {cpu}{ram}"


def run_summary(hardware: dict, topology: dict | None) -> str | None:
    """The machines a run trained on, with its topology when it took several processes, e.g. "2 nodes × 8
    processes (DDP, nccl); each node: 8x NVIDIA H100 ...". `topology` as results.json records it."""
    here = hardware.get("summary")
    topology = topology or {}
    world = int(topology.get("world_size") or 1)
    if world < 2:
        return here
    nodes, per = int(topology.get("nodes") or 1), int(topology.get("processes_per_node") or world)
    how = ", ".join(str(x) for x in (str(topology.get("distributed") or "").upper(), topology.get("backend")) if x)
    processes = f"{per} process{'es' if per > 1 else ''}"
    shape = f"{nodes} nodes × {processes}" if nodes > 1 else processes
    shape += f" ({how})" if how else ""
    per_node = [h for h in topology.get("node_hardware") or [] if h]
    if nodes > 1 and per_node:
        if len(set(per_node)) == 1:
            return f"{shape}; each node: {per_node[0]}"
        return f"{shape}; " + "; ".join(f"node {i}: {h}" for i, h in enumerate(per_node))
    return f"{shape} on {here}" if here else shape


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in VERSIONED_PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return out
