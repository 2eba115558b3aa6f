"""Before training (and before `smolforge quantize` loads anything): can this model become a GGUF at all?

Three things are checked when a `gguf-*` method is asked for, each with the fix in its message:
llama.cpp's converter and library are installed; the base model's architecture (its config.json, read with
transformers' AutoConfig, no weights) is one the converter registers; and the converter accepts the
tokenizer, found by running it in `--vocab-only` mode on the base model's tokenizer and config (a few
seconds, no weights), which is where an unknown pre-tokenizer is rejected.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from smolforge.config import SmolforgeConfig
from smolforge.config.outputs import GGUF_METHODS
from smolforge.errors import SmolforgeError, first_line
from smolforge.gguf.convert import run_converter
from smolforge.gguf.source import stage_source
from smolforge.gguf.toolchain import find, supported_architectures
from smolforge.modelio import model_source


def wants_gguf(cfg: SmolforgeConfig) -> bool:
    return any(m in GGUF_METHODS for m in cfg.quantize.methods)


def _architecture(cfg: SmolforgeConfig, source: str) -> str:
    from transformers import AutoConfig

    try:
        config = AutoConfig.from_pretrained(source, revision=cfg.model.revision,
                                            trust_remote_code=cfg.model.trust_remote_code)
    except (OSError, ValueError) as e:
        raise SmolforgeError(f"model.name_or_path: cannot read the config of {source!r} to check GGUF support: "
                             f"{first_line(e)}. Check the id or path, and that you are online (or it is cached)."
                             ) from None
    archs = getattr(config, "architectures", None) or []
    return archs[0] if archs else type(config).__name__.replace("Config", "ForCausalLM")


def check_architecture(cfg: SmolforgeConfig, source: str) -> str:
    """The base's architecture, if llama.cpp's converter registers it; SmolforgeError otherwise."""
    tc = find()
    arch = _architecture(cfg, source)
    if arch not in supported_architectures(tc.converter_dir):
        raise SmolforgeError(
            f"quantize: {', '.join(m for m in cfg.quantize.methods if m in GGUF_METHODS)} needs a model llama.cpp can "
            f"convert, but {cfg.model.name_or_path!r} is a {arch}, which llama.cpp's converter (from "
            f"llama-cpp-python {tc.version}) does not support. Choose a supported base model (SmolLM3, Llama, Qwen, "
            "Mistral, Gemma, Phi and others), or drop the gguf-* methods from `quantize` (torchao int8 works for any "
            "model).")
    return arch


def check_export(cfg: SmolforgeConfig, model_dir: Path | None = None) -> str:
    """`smolforge quantize`: toolchain and architecture, from the run's saved config when there is one."""
    source = str(model_dir) if model_dir is not None and (model_dir / "config.json").is_file() else None
    if source is None:
        source = model_source(cfg)
    return check_architecture(cfg, source)


def check_before_training(cfg: SmolforgeConfig) -> None:
    """`smolforge run`: toolchain, architecture and tokenizer, before the run folder exists."""
    if not wants_gguf(cfg):
        return
    from transformers import AutoTokenizer

    source = model_source(cfg)
    arch = check_architecture(cfg, source)
    with tempfile.TemporaryDirectory(prefix="smolforge-gguf-check-") as tmp:
        folder = Path(tmp) / "tokenizer"
        from transformers import AutoConfig

        config = AutoConfig.from_pretrained(source, revision=cfg.model.revision,
                                            trust_remote_code=cfg.model.trust_remote_code)
        config.architectures = [arch]  # what training saves; the converter picks its model class by it
        config.save_pretrained(folder)
        AutoTokenizer.from_pretrained(source, revision=cfg.model.revision,
                                      trust_remote_code=cfg.model.trust_remote_code).save_pretrained(folder)
        staged, _ = stage_source(folder, Path(tmp) / "staged", source)
        run_converter(find(), staged, Path(tmp) / "vocab.gguf", "check", cfg.model.name_or_path, vocab_only=True)
