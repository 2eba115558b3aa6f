"""FSDP as smolforge runs it (`training.distributed: fsdp`): the trainer's own FSDP2 integration.

The settings live in `resources/fsdp.yaml` and reach the trainer as `TrainingArguments(fsdp=True,
fsdp_config=...)`, so DDP and FSDP share one launcher (torchrun) and one rendezvous, on one node or
several. On CPU (gloo) accelerate needs one nudge, see `allow_on_cpu`; the rest is accelerate's and
torch's FSDP2 code, the same that runs on GPUs.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from importlib import resources
from typing import Any

import yaml

SETTINGS_FILE = "resources/fsdp.yaml"


def settings() -> dict[str, Any]:
    """The shipped FSDP settings (TrainingArguments.fsdp_config)."""
    text = resources.files("smolforge").joinpath(SETTINGS_FILE).read_text(encoding="utf-8")
    return dict(yaml.safe_load(text))


def trainer_arguments() -> dict[str, Any]:
    """The TrainingArguments that turn FSDP on with the shipped settings."""
    return {"fsdp": True, "fsdp_config": settings()}


def loading_environment() -> dict[str, str]:
    """Environment the training processes need before the model loads, so that with
    `cpu_ram_efficient_loading` transformers loads the weights on rank 0 only (the others get them by
    broadcast when the model is sharded). accelerate's own launcher sets the same variables."""
    efficient = str(settings().get("cpu_ram_efficient_loading", False)).lower()
    return {"ACCELERATE_USE_FSDP": "true", "FSDP_CPU_RAM_EFFICIENT_LOADING": efficient}


@contextlib.contextmanager
def allow_on_cpu(enabled: bool) -> Iterator[None]:
    """While the trainer creates its Accelerator, let accelerate keep the FSDP plugin on CPU processes.

    accelerate 1.15 turns FSDP on only for accelerator devices: `AcceleratorState` switches to FSDP when
    the process state is MULTI_GPU (or NPU, XPU, ...), and a CPU process state is MULTI_CPU, so the FSDP
    plugin would be dropped without a word and a CPU "FSDP" run would train as DDP. torch's FSDP2
    (`fully_shard`) runs on CPU with gloo, so for the moment the Accelerator is created the process state
    reports MULTI_GPU; device, backend and process group stay the CPU/gloo ones already set up, accelerate
    then records FSDP as the state's type (as it does on GPUs), and everything after (wrapping, sharded
    checkpoints, the full-weights gather) is unchanged library code.
    This is what lets the FSDP path be tested on a CPU machine.
    """
    if not enabled:
        yield
        return
    from accelerate.state import PartialState
    from accelerate.utils import DistributedType

    state = PartialState()
    was = state.distributed_type
    if was != DistributedType.MULTI_CPU:
        yield
        return
    PartialState._shared_state["distributed_type"] = DistributedType.MULTI_GPU
    try:
        yield
    finally:
        # accelerate records FSDP in the process state itself once it chose it (as on a GPU); only a failed
        # Accelerator leaves our stand-in behind
        if PartialState._shared_state.get("distributed_type") == DistributedType.MULTI_GPU:
            PartialState._shared_state["distributed_type"] = was

