"""Loading and saving models the same way in every stage (training, evaluation, quantization, merge).

One place for: where the base model comes from (`tiny` is built locally), the tokenizer with the
chat template training needs, the dtype rule (the run's precision on a GPU, fp32 on a CPU), the
attention implementation, what a saved model must look like before it is published, and
perplexity.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

from smolforge.chat_templates import (
    TOOL_EXAMPLE,
    is_official_smollm3,
    official_with_tool_calls,
    renders_tool_calls,
    training_chat_template,
)
from smolforge.config import SmolforgeConfig
from smolforge.errors import SmolforgeError, first_line
from smolforge.identifiers import local_or_hub_problem, model_id
from smolforge.runfolder import atomic_write_text, file_sha256, share_like_other_files
from smolforge.tiny import ensure_tiny

log = logging.getLogger("smolforge.model")

PUBLISHED_ATTENTION = ("sdpa", "eager", "flash_attention_2")  # what a saved config may name (no training kernels)
PERPLEXITY_MAX_LOSS = 700.0  # exp() overflows beyond ~709: a larger loss has no measurable perplexity


def model_problem(name: str) -> str | None:
    """Why `name` cannot be model.name_or_path (None when it can): the rule `smolforge run` and the wizard share.
    `tiny`, a model folder (anything that exists or looks like a path must be one), or a Hub model id."""
    def not_a_folder(path: Path) -> str | None:
        return None if path.is_dir() else f"{path} is a file, not a model folder (a folder with config.json and " \
                                          "the weights)"

    local = Path(name).expanduser().exists() or name.startswith((".", "/", "~"))
    return None if name == "tiny" else local_or_hub_problem(name, local, not_a_folder, model_id, "model")


def check_model_name(cfg: SmolforgeConfig) -> None:
    """model.name_or_path names something loadable, checked before the Hub is asked or anything is written."""
    problem = model_problem(cfg.model.name_or_path)
    path = Path(cfg.model.name_or_path).expanduser()
    if problem and path.name == "model" and not path.exists():  # a run's model/ folder: that run comes first
        raise SmolforgeError(f"model.name_or_path: {cfg.model.name_or_path} does not exist. It names the model/ "
                             f"folder of a smolforge run, so train that run first (into {path.parent}, e.g. with "
                             f"--experiment-name {path.parent.name}), or point model.name_or_path at the model/ "
                             "folder of a run you have (--set model.name_or_path=runs/<run>/model).")
    if problem:
        raise SmolforgeError(f"model.name_or_path: {problem}. Give a local model folder, `tiny`, or a Hub model id "
                             "like HuggingFaceTB/SmolLM3-3B (--base-model or --set model.name_or_path=...).")


def model_source(cfg: SmolforgeConfig) -> str:
    """The base model as a name or folder transformers can load (`tiny` is built, once, into the cache)."""
    if cfg.model.is_tiny:
        return str(ensure_tiny(cfg.model.tiny))
    return cfg.model.name_or_path


def load_tokenizer(cfg: SmolforgeConfig, source: str, needs_markers: bool):
    from transformers import AutoTokenizer
    from trl.chat_template_utils import has_generation_markers

    try:
        tok = AutoTokenizer.from_pretrained(source, revision=cfg.model.revision,
                                            trust_remote_code=cfg.model.trust_remote_code)
    except (OSError, ValueError) as e:
        raise SmolforgeError(f"model.name_or_path: cannot load a tokenizer from {source!r}: {first_line(e)}. Check "
                             "the id or path, and that you are online (or the model is in the Hugging Face "
                             "cache).") from None
    template = tok.chat_template if isinstance(tok.chat_template, str) else None
    is_smollm3 = "smollm3" in source.lower() or (template and "/no_think" in template)
    if needs_markers and is_smollm3 and template and "## Metadata" in template and not renders_tool_calls(template):
        # SmolLM3's official template drops structured tool calls (and marks the assistant header for the loss):
        # the same template with tool calls rendered as SmolLM3's <tool_call> text; everything else is unchanged.
        tok.chat_template = official_with_tool_calls()
        tok.smolforge_replaced_template = not is_official_smollm3(template)
        log.info("chat template: SmolLM3's official template, with structured tool calls rendered")
    elif needs_markers and (template is None or not has_generation_markers(template)) and is_smollm3:
        # A SmolLM3 template without {% generation %} markers (TRL has no training variant for it): use
        # smolforge's SmolLM3-compatible template that marks assistant turns.
        tok.chat_template = training_chat_template()
        tok.smolforge_replaced_template = template is not None  # the card says the format differs from the base's
        log.info("chat template: smolforge's SmolLM3 training template (assistant turns marked for the loss)")
    if tok.chat_template is None and needs_markers:
        raise SmolforgeError(f"The tokenizer of {source!r} has no chat template, so conversations cannot be "
                             "formatted. Use a chat model, or --set data.format=text for plain text.")
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def torch_dtype(rt):
    """The run's precision on a GPU; fp32 on a CPU (bf16 on a CPU is several times slower there)."""
    import torch

    if rt.device != "cuda":
        return torch.float32
    return {"bf16": torch.bfloat16, "fp16": torch.float16}.get(rt.precision, torch.float32)


def _register_attention(name: str) -> None:
    if name == "varlen_sdpa":
        from smolforge.attention import register  # lazy: attention.py imports torch and transformers

        register()


# QLoRA's storage for a frozen base (Dettmers et al. 2023): 4-bit NormalFloat in blocks of 64 weights, whose
# scales are quantized again ("double quantization"); matmuls dequantize to the run's dtype.
FOUR_BIT_QUANT_TYPE = "nf4"
FOUR_BIT_DOUBLE_QUANT = True


def four_bit_config(rt):
    """transformers' bitsandbytes settings for a qlora run's base."""
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type=FOUR_BIT_QUANT_TYPE,
                              bnb_4bit_use_double_quant=FOUR_BIT_DOUBLE_QUANT, bnb_4bit_compute_dtype=torch_dtype(rt))


def four_bit_facts(model) -> dict[str, Any]:
    """What the card says about a qlora run's base as it trained: the storage bitsandbytes used (read back from the
    loaded model, not from the request), how many weights it held in 4-bit, and the bytes the base took."""
    import bitsandbytes

    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    quant = base.config.quantization_config
    quant = quant.to_dict() if hasattr(quant, "to_dict") else dict(quant)
    four_bit = [p for p in base.parameters() if isinstance(p, bitsandbytes.nn.Params4bit)]
    return {"library": "bitsandbytes", "version": bitsandbytes.__version__,
            "quant_type": quant.get("bnb_4bit_quant_type"),
            "double_quant": bool(quant.get("bnb_4bit_use_double_quant")),
            "compute_dtype": str(quant.get("bnb_4bit_compute_dtype")).removeprefix("torch."),
            "four_bit_parameters": sum(p.quant_state.shape.numel() for p in four_bit),
            "base_bytes": int(sum(_nbytes(p) for n, p in base.named_parameters() if "lora_" not in n)
                              + sum(_nbytes(b) for b in base.buffers())
                              + sum(_nbytes(t) for p in four_bit for t in p.quant_state.as_dict(packed=True).values()
                                    if hasattr(t, "element_size")))}  # + the scales, as bitsandbytes saves them


def _nbytes(tensor) -> int:
    return tensor.numel() * tensor.element_size()


def _process_device(rt) -> str:
    """This process's device: under torchrun each process owns the GPU of its local rank."""
    import os

    return f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}" if rt.device == "cuda" else rt.device


def load_model(cfg: SmolforgeConfig, source: str, rt, four_bit: bool = False):
    """The base model for training (or DPO's reference), in the run's dtype and attention. `four_bit`: the
    frozen base of a qlora run, quantized while it loads (bitsandbytes places it on this process's device)."""
    from transformers import AutoModelForCausalLM

    _register_attention(rt.attn_implementation)
    quant = {"quantization_config": four_bit_config(rt), "device_map": {"": _process_device(rt)}} if four_bit else {}
    try:
        model = AutoModelForCausalLM.from_pretrained(
            source, revision=cfg.model.revision, trust_remote_code=cfg.model.trust_remote_code,
            dtype=torch_dtype(rt), attn_implementation=rt.attn_implementation, **quant)
    except OSError as e:
        raise SmolforgeError(f"model.name_or_path: cannot load {source!r}: {first_line(e)}. Check the id or path, "
                             "and that you are online (or the model is cached).") from None
    except (ValueError, RuntimeError, ImportError, NotImplementedError) as e:
        if four_bit:  # the tokenizer loaded from the same source already: this is bitsandbytes on this device
            raise SmolforgeError(f"training.finetune: qlora: bitsandbytes could not load {source!r} in 4-bit on "
                                 f"{rt.device}: {first_line(e)}. Use a bitsandbytes build with a backend for this "
                                 "device, or --finetune lora.") from None
        if isinstance(e, ValueError):
            raise SmolforgeError(f"model.name_or_path: cannot load {source!r}: {first_line(e)}. Check the id or "
                                 "path, and that you are online (or the model is cached).") from None
        raise
    if four_bit:
        keep_four_bit_trainable(model)
    return model


def keep_four_bit_trainable(model) -> None:
    """Keep every 4-bit layer in the layout its backward pass works with.

    On a CPU with AVX512-BF16, bitsandbytes repacks a 4-bit weight in place, for a bf16 inference kernel, the first
    time its layer runs in eval mode without gradients (the trainer's evaluations do). That kernel has no backward:
    training after the first evaluation would get no gradient through the base's layers to the adapters before
    them (torch only warns "an autograd kernel was not registered"). Turning the repacking off keeps training exact.
    """
    import bitsandbytes

    for module in model.modules():
        if isinstance(module, bitsandbytes.nn.Linear4bit):
            module.support_avx512bf16_for_cpu = False


def load_saved(source: Path | str, rt, revision: str | None = None):
    """A saved model (model/, a merged copy, a quantized variant, or a Hub model for inference) on the run's
    device, in the run's dtype; a quantized folder keeps its own dtypes."""
    from transformers import AutoModelForCausalLM

    _register_attention(rt.attn_implementation)
    config = Path(source) / "config.json"
    quantized = config.is_file() and "quantization_config" in config.read_text(encoding="utf-8")
    try:
        return AutoModelForCausalLM.from_pretrained(str(source), revision=revision, device_map=rt.device,
                                                    dtype="auto" if quantized else torch_dtype(rt),
                                                    attn_implementation=rt.attn_implementation)
    except (OSError, ValueError) as e:
        raise SmolforgeError(f"cannot load the model {str(source)!r}: {first_line(e)}. Check the path or id, and "
                             "that it is cached when offline.") from None


def finalize_for_publishing(model, tokenizer) -> Any:
    """What a saved model must say about itself: a standard attention implementation (smolforge's training
    kernel is not installed where the model is used), the KV cache on (training turns it off), and the
    tokenizer's pad/eos ids for generation."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    if getattr(base.config, "_attn_implementation", None) not in PUBLISHED_ATTENTION:
        base.config._attn_implementation = "sdpa"
    base.config.use_cache = True
    if getattr(base, "generation_config", None) is not None:
        base.generation_config.pad_token_id = tokenizer.pad_token_id
        base.generation_config.eos_token_id = tokenizer.eos_token_id
    return model


LOCAL_ONLY_TOKENIZER_KEYS = ("is_local", "local_files_only")  # how this machine loaded it, not how to load it


def save_for_publishing(model, tokenizer, folder: Path, state_dict: dict[str, Any] | None = None) -> dict[str, str]:
    """Save a model folder that loads anywhere: finalized config, safetensors weights, tokenizer without
    local-only loading flags, files readable like the user's other files. Returns {weight file: sha256}.
    `state_dict`: weights to save instead of the model's own (gathered from FSDP shards)."""
    import json

    finalize_for_publishing(model, tokenizer)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(folder), safe_serialization=True, state_dict=state_dict)
    tokenizer.save_pretrained(str(folder))
    config = folder / "tokenizer_config.json"
    if config.is_file():
        data = json.loads(config.read_text(encoding="utf-8"))
        if any(k in data for k in LOCAL_ONLY_TOKENIZER_KEYS):
            clean = {k: v for k, v in data.items() if k not in LOCAL_ONLY_TOKENIZER_KEYS}
            atomic_write_text(config, json.dumps(clean, indent=2, ensure_ascii=False) + "\n")
    share_like_other_files(folder)
    return {f.name: file_sha256(f) for f in sorted(folder.glob("*.safetensors"))}


def architecture(config) -> dict[str, Any]:
    """The facts a reader needs about a model's shape, from its config (absent keys are left out)."""
    keys = {"model_type": "model_type", "layers": "num_hidden_layers", "hidden_size": "hidden_size",
            "intermediate_size": "intermediate_size", "attention_heads": "num_attention_heads",
            "kv_heads": "num_key_value_heads", "vocab_size": "vocab_size",
            "max_position_embeddings": "max_position_embeddings", "tie_word_embeddings": "tie_word_embeddings"}
    out = {name: getattr(config, attr) for name, attr in keys.items() if getattr(config, attr, None) is not None}
    if out.get("hidden_size") and out.get("attention_heads"):
        out["head_dim"] = getattr(config, "head_dim", None) or out["hidden_size"] // out["attention_heads"]
    no_rope = getattr(config, "no_rope_layers", None)
    if isinstance(no_rope, list):  # SmolLM3: 1 = the layer uses RoPE, 0 = no positional encoding (NoPE)
        out["nope_layers"] = [i for i, uses_rope in enumerate(no_rope) if not uses_rope]
    return out


def generation_defaults(model) -> dict[str, Any]:
    """The decoding settings saved in generation_config.json that a caller gets without passing any."""
    gen = getattr(model, "generation_config", None)
    if gen is None:
        return {}
    keys = ("do_sample", "temperature", "top_p", "top_k", "max_new_tokens", "repetition_penalty")
    return {k: getattr(gen, k) for k in keys if getattr(gen, k, None) is not None}


def template_facts(tokenizer) -> dict[str, Any]:
    """What the saved chat template does: whether it has SmolLM3's reasoning switch, its default mode, whether
    it is smolforge's training template instead of the base's, and the raw prompt it builds."""
    if not isinstance(getattr(tokenizer, "chat_template", None), str):
        return {"has_template": False}
    turn = [{"role": "user", "content": "What is the capital of France?"}]

    def render(**kw) -> str:
        return tokenizer.apply_chat_template(turn, tokenize=False, add_generation_prompt=True, **kw)

    default, think, no_think = render(), render(enable_thinking=True), render(enable_thinking=False)
    switch = think != no_think
    facts: dict[str, Any] = {"has_template": True, "reasoning_switch": switch, "prompt_example": default,
                             "replaced_base_template": bool(getattr(tokenizer, "smolforge_replaced_template", False)),
                             "smolforge_template": tokenizer.chat_template == training_chat_template(),
                             "official_with_tool_calls": tokenizer.chat_template == official_with_tool_calls()}
    if switch:
        facts["default_mode"] = "think" if default == think else "no_think" if default == no_think else None
        facts["prompt_example_no_think"] = no_think
    if facts["smolforge_template"] or facts["official_with_tool_calls"]:  # the two that write SmolLM3's call text
        messages, tools = TOOL_EXAMPLE
        facts["tool_example"] = tokenizer.apply_chat_template(messages, tools=tools, tokenize=False,
                                                              add_generation_prompt=True,
                                                              **({"enable_thinking": False} if switch else {}))
    return facts


# Below this many bytes of weights, a dropped model is left to Python's own collection: a full gc.collect() costs
# ~0.3 s with the training libraries loaded, and two copies of such a model fit anyway.
COLLECT_FROM_BYTES = 256 * 2**20


def weight_bytes(model) -> int:
    return sum(p.numel() * p.element_size() for p in model.parameters())


def release(size: int) -> None:
    """Give a dropped model's memory (`size` bytes of weights) back before the next one loads; the caller has
    deleted its references."""
    import gc

    import torch

    if size >= COLLECT_FROM_BYTES or torch.cuda.is_available():
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


def perplexity(loss: float | None) -> float | None:
    """exp(token cross-entropy); None when the loss is absent or too large to exponentiate."""
    if loss is None or not math.isfinite(loss) or loss >= PERPLEXITY_MAX_LOSS:
        return None
    return math.exp(loss)


def merge_adapter(cfg: SmolforgeConfig, rt, adapter_dir: Path):
    """The base in full precision (the run's dtype, never 4-bit: a qlora adapter too is merged into the base's
    own weights, as a user loads it) with the LoRA adapter saved in `adapter_dir` merged into its weights."""
    from peft import PeftModel

    return PeftModel.from_pretrained(load_model(cfg, model_source(cfg), rt), str(adapter_dir)).merge_and_unload()


def parameter_count(model) -> int:
    """Parameters of a model as it was defined: a 4-bit weight counts its weights, not its packed bytes
    (transformers' own count knows bitsandbytes' storage)."""
    return int(model.num_parameters())


def merged_model_folder(run, cfg: SmolforgeConfig, workdir: Path, rt) -> Path:
    """A folder with full weights: model/ itself, or the base with the run's LoRA adapter merged into `workdir`."""
    if (run.model_dir / "config.json").exists():
        return run.model_dir
    if not (run.model_dir / "adapter_config.json").exists():
        raise SmolforgeError(f"{run.model_dir} holds no model (no config.json or adapter_config.json). "
                             "Finish the run with `smolforge run` first.")
    from transformers import AutoTokenizer

    merged = merge_adapter(cfg, rt, run.model_dir)
    out = workdir / "merged"
    save_for_publishing(merged, AutoTokenizer.from_pretrained(str(run.model_dir)), out)
    log.info("merged the LoRA adapter into full weights: %s", out)
    return out
