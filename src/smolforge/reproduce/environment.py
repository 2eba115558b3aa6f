"""The software and hardware a run trained on, and every difference from another record of them.

Recorded: smolforge's version and a SHA-256 of its own source files (a development install keeps its
version while the code changes), every installed distribution and its version (the environment, not only
the training libraries), the Python build, the torch build (version, git commit, CUDA/cuDNN, the CPU
instruction set its kernels use, threads, the BLAS and OpenMP it was built with), the device, and the
environment variables that change numerics or threading.
"""

from __future__ import annotations

import hashlib
import os
import platform
from importlib import metadata
from pathlib import Path
from typing import Any

from smolforge import hardware

NUMERIC_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "CUBLAS_WORKSPACE_CONFIG", "CUDA_VISIBLE_DEVICES",
               "PYTHONHASHSEED", "SMOLFORGE_MALLOC_TUNE", "TORCH_DETERMINISTIC")
SOURCE_SUFFIXES = (".py", ".jinja", ".j2", ".yaml", ".json", ".jsonl", ".txt")


def packages() -> dict[str, str]:
    """Every installed distribution, by its normalised name."""
    out: dict[str, str] = {}
    for dist in metadata.distributions():
        name = (dist.metadata.get("Name") or "").strip()
        if name:
            out[name.lower().replace("_", "-")] = dist.version
    return dict(sorted(out.items()))


def source_sha256() -> str:
    """SHA-256 over smolforge's source and resource files (relative path + content, in path order)."""
    root = Path(__file__).resolve().parents[1]  # the smolforge package folder
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file() and p.suffix in SOURCE_SUFFIXES
                       and "__pycache__" not in p.parts):
        digest.update(str(path.relative_to(root)).encode())
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def _torch_build() -> dict[str, Any]:
    import torch

    config = torch.__config__.show()
    out: dict[str, Any] = {
        "version": torch.__version__, "git": torch.version.git_version, "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(), "threads": torch.get_num_threads(),
        "interop_threads": torch.get_num_interop_threads(), "mkldnn": torch.backends.mkldnn.is_available(),
        "build_config_sha256": hashlib.sha256(config.encode()).hexdigest(),
    }
    for line in config.splitlines():
        text = line.strip().removeprefix("- ")
        if text.startswith(("Intel(R) oneAPI Math Kernel Library", "Intel(R) MKL-DNN", "OpenMP", "LAPACK", "NNPACK")):
            out.setdefault("libraries", []).append(text)
    return out


def capture() -> dict[str, Any]:
    """This process's environment, as the manifest records it."""
    try:
        version = metadata.version("smolforge")
    except metadata.PackageNotFoundError:
        version = None
    return {
        "smolforge": {"version": version, "source_sha256": source_sha256()},
        "python": {"version": platform.python_version(), "implementation": platform.python_implementation(),
                   "build": " ".join(platform.python_build()), "compiler": platform.python_compiler()},
        "platform": platform.platform(),
        "torch": _torch_build(),
        "device": hardware.detect(with_gpu=True),
        "env": {k: os.environ[k] for k in NUMERIC_ENV if k in os.environ},
        "packages": packages(),
    }


def _flat(data: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(data, dict):
        out: dict[str, Any] = {}
        for key, value in data.items():
            out.update(_flat(value, f"{prefix}{key}."))
        return out
    return {prefix.rstrip("."): data}


IGNORED = ("device.summary",)  # a sentence built from the other device fields


def differences(recorded: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """One line per difference: every package added, removed or changed, and every other field."""
    lines: list[str] = []
    old_pk, new_pk = recorded.get("packages") or {}, current.get("packages") or {}
    for name in sorted(set(old_pk) | set(new_pk)):
        before, after = old_pk.get(name), new_pk.get(name)
        if before != after:
            lines.append(f"package {name}: {before or 'not installed'} -> {after or 'not installed'}")
    old = _flat({k: v for k, v in recorded.items() if k != "packages"})
    new = _flat({k: v for k, v in current.items() if k != "packages"})
    for key in sorted(set(old) | set(new)):
        if key not in IGNORED and old.get(key) != new.get(key):
            lines.append(f"{key}: {old.get(key)!r} -> {new.get(key)!r}")
    return lines
