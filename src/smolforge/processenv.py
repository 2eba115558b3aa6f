"""The process environment a stage runs in, set before torch, transformers or huggingface_hub load.

Two separate decisions: libraries stay quiet (no telemetry, no progress bars, no noise a user
cannot act on), and the Hugging Face libraries work offline when nothing has to be fetched, or
when the Hub cannot be reached: then a cached model loads at once and an uncached one fails at
once, instead of after minutes of retries.
"""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path

from smolforge.config.outputs import NAMED_TASKS
from smolforge.data import is_local_source
from smolforge.hubclient import UNREACHABLE_ENV, endpoint_from_env, reachable

OFFLINE_ENV = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}


def quiet_libraries() -> None:
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    os.environ.setdefault("TORCHAO_FORCE_SKIP_LOADING_SO_FILES", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    # torchao (imported by trl, peft and the quantize stage) registers enums with torch's pytree, which logs a
    # deprecation warning per enum; torch and transformers warn about their own deprecations. Nothing to act on.
    logging.getLogger("torch.utils._pytree").setLevel(logging.ERROR)
    logging.getLogger("torchao").setLevel(logging.ERROR)  # "Skipping import of cpp extensions": asked for above
    # bitsandbytes (qlora; transformers imports it when installed) warns at import, on CPUs with AVX512-BF16, that
    # the optional `kernels` package for a bf16 inference kernel is missing; training never uses that kernel
    # (modelio.keep_four_bit_trainable), so the warning is noise.
    logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    # torch's C++ warnings (DDP's advice on find_unused_parameters, the c10d store's stack frames when a node
    # goes away) print straight to stderr, not through Python's warnings; smolforge reports what matters itself.
    # Read when torch loads (nothing has imported it yet), inherited by the training processes; a value the user
    # set is kept.
    os.environ.setdefault("TORCH_CPP_LOG_LEVEL", "ERROR")
    for name, messages in FALSE_ALARMS.items():
        logger = logging.getLogger(name)
        if not any(isinstance(f, _Dropped) for f in logger.filters):
            logger.addFilter(_Dropped(messages))


# Library messages that are wrong about smolforge's runs, by logger. A checkpoint is saved without the output head
# that is tied to the input embedding (save_pretrained leaves tied copies out), so a wrapped (DDP) model "misses" it
# on resume although the head is the embedding. Checkpoints of a fast run are written within the same second,
# which transformers takes for a filesystem with unreliable modification times (it then orders them by step, as
# smolforge does anyway).
FALSE_ALARMS = {
    "transformers.trainer": ("There were missing keys in the checkpoint model loaded: ['lm_head.weight'].",),
    "transformers.trainer_utils": ("mtime may not be reliable on this filesystem, falling back to numerical ordering",),
}


class _Dropped(logging.Filter):
    def __init__(self, messages: tuple[str, ...]):
        super().__init__()
        self.messages = set(messages)

    def filter(self, record: logging.LogRecord) -> bool:
        return record.getMessage() not in self.messages


def offline_by_env() -> bool:
    return any(os.environ.get(k, "").strip().upper() in ("1", "ON", "YES", "TRUE") for k in OFFLINE_ENV)


def go_offline() -> None:
    for key, value in OFFLINE_ENV.items():
        os.environ[key] = value


def fetches_from_hub(cfg) -> bool:
    """Whether this run downloads anything: a Hub base model, a Hub dataset, or a registry benchmark's data."""
    model_local = cfg.model.is_tiny or Path(cfg.model.name_or_path).expanduser().exists()
    registry = [t for t in cfg.evaluation.tasks if t not in NAMED_TASKS and not Path(t).expanduser().exists()]
    return not model_local or not is_local_source(cfg.data.name) or bool(registry)


def pushes_to_hub(cfg) -> bool:
    return bool(cfg.publish.repo_id) or bool(cfg.tracking.space_id)


def prepare(cfg=None, console=None) -> None:
    """Quiet libraries; offline when the config needs nothing from the Hub, or when what it must download
    cannot be reached (then a cached model or dataset loads at once and an uncached one fails at once)."""
    quiet_libraries()
    if cfg is None or offline_by_env():
        return
    if not fetches_from_hub(cfg):
        if not pushes_to_hub(cfg):
            go_offline()
        return  # a push goes through smolforge's own retries and messages (hubclient.Retrier)
    url = endpoint_from_env(cfg.publish.endpoint)
    if not reachable(url):
        go_offline()
        os.environ[UNREACHABLE_ENV] = url
        if console is not None:
            console.print(f"The Hub ({url}) is not reachable: working offline (models and datasets from the local "
                          "cache only; nothing can be published).", markup=False)
