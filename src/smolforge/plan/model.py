"""The model's size and activation footprint from its config.json alone: no weights are read or downloaded.

accelerate's `init_empty_weights` builds the model on the meta device (shapes, no memory), so the
parameters are counted as `smolforge run` will load them: tied embeddings once, LoRA adapters from PEFT
itself, and accelerate's `calculate_maximum_sizes` gives the bytes and the largest layer. For qlora, the
weights transformers' bitsandbytes quantizer would store in 4 bits are listed by transformers' own rule
(`_four_bit_weights`); memory.py prices them.

Activation bytes per token are what autograd keeps for the backward pass in this architecture, dtype,
LoRA and dropout: `torch.autograd.graph.saved_tensors_hooks` count the tensors a meta-device forward of the
decoder (embeddings, layers, final norm) saves for a short sequence, split into the decoder layers and the
rest. The output head is not run: TRL 1.16 scores tokens with its chunked log-probability kernel, which never
holds the full logits (memory.py counts what it keeps and allocates). The meta device computes attention
as plain math, which saves the s x s probabilities the fused kernels smolforge trains with do not; two
sequence lengths separate that quadratic term.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from smolforge import processenv
from smolforge.config import SmolforgeConfig
from smolforge.errors import SmolforgeError, first_line
from smolforge.modelio import model_source
from smolforge.plan.nf4 import four_bit_bytes
from smolforge.trainers import check_lora_targets, lora_config

PROBE_LENGTHS = (8, 16)


@dataclass(frozen=True)
class ModelFacts:
    """What the estimate needs to know about the model, all from its config.json."""

    source: str
    model_type: str
    params: int             # base model parameters, tied embeddings counted once
    adapter_params: int     # LoRA parameters (0 for a full fine-tune)
    embedding_params: int   # the input embedding (a lookup: no matmul FLOPs unless tied to the output head)
    tied: bool
    layers: int
    hidden: int
    intermediate: int
    heads: int
    kv_heads: int
    head_dim: int
    vocab: int
    max_positions: int | None
    weight_bytes: int       # every parameter as loaded (base dtype, adapters in theirs)
    largest_layer_bytes: int
    param_bytes: int        # bytes per base parameter as loaded
    adapter_bytes: int      # bytes per LoRA parameter (PEFT keeps adapters in fp32 over a bf16 base)
    layer_saved: float      # bytes saved for backward per token by one decoder layer
    outside_saved: float    # bytes saved per token outside the decoder layers
    layer_input: float      # bytes per token of a layer's input: all that activation checkpointing keeps
    quadratic: float        # bytes per token per attended position when attention probabilities are kept
    head_tile: tuple[int, int]  # TRL's chunked log-prob kernel: tokens x vocabulary columns of one logits tile
    quantized: tuple[int, ...] = ()  # qlora: the size of each base weight held in 4-bit NF4 (else none)

    @property
    def trainable(self) -> int:
        return self.adapter_params or self.params

    @property
    def quantized_params(self) -> int:
        """Base parameters held in 4 bits (qlora); the others are in the run's dtype."""
        return sum(self.quantized)

    @property
    def matmul_params(self) -> int:
        """Parameters a token multiplies through: an untied input embedding is a lookup, not a matmul."""
        return self.params - (0 if self.tied else self.embedding_params)

    @property
    def attention_width(self) -> int:
        return self.heads * self.head_dim


def read_config(cfg: SmolforgeConfig):
    """(source, transformers config) of the base model; an uncached model offline is one clear paragraph."""
    from transformers import AutoConfig

    source = model_source(cfg)
    try:
        return source, AutoConfig.from_pretrained(source, revision=cfg.model.revision,
                                                  trust_remote_code=cfg.model.trust_remote_code)
    except (OSError, ValueError) as e:
        name = cfg.model.name_or_path
        if not Path(source).expanduser().exists() and processenv.offline_by_env():
            raise SmolforgeError(
                f"model.name_or_path: {name} has no config.json in the Hugging Face cache, and smolforge is working "
                "offline, so its size cannot be read. Connect once (only config.json, a few KB, is fetched), copy "
                f"it into the cache with `hf download {name} config.json`, or point model.name_or_path at a local "
                "model folder.") from None
        raise SmolforgeError(f"model.name_or_path: cannot read the config.json of {name!r}: {first_line(e)}. Check "
                             "the id or path.") from None


def _meta_model(config, dtype, trust_remote_code: bool):
    import torch
    from accelerate import init_empty_weights
    from transformers import AutoModelForCausalLM

    from smolforge.attention import register  # lazy: attention.py imports torch and transformers

    # smolforge's attention: transformers builds no mask for it (mask code cannot run on the meta device), and
    # without document boundaries it is plain causal SDPA
    with init_empty_weights(), torch.random.fork_rng():
        model = AutoModelForCausalLM.from_config(config, dtype=dtype, attn_implementation=register(),
                                                 trust_remote_code=trust_remote_code)
    model.tie_weights()  # from_config leaves tied embeddings as two tensors (and cannot tie them inside the context)
    return model


def _four_bit_weights(model) -> tuple[int, ...]:
    """The size of each weight a qlora run holds in 4 bits, found as transformers 5.24 finds them when it loads
    the base with a BitsAndBytesConfig: `replace_with_bnb_linear` swaps every nn.Linear (and GPT-2's Conv1D) for
    bitsandbytes' Linear4bit except the modules `get_modules_to_not_convert` skips (the output head, both sides
    of tied weights, the module of the model's last parameter, and `_keep_in_fp32_modules`; modelio's
    BitsAndBytesConfig names no llm_int8_skip_modules). Only the weight is quantized, never the bias. Calling
    transformers' own functions keeps the plan on the loader's rule."""
    from torch import nn
    from transformers.pytorch_utils import Conv1D
    from transformers.quantizers.base import HfQuantizer
    from transformers.quantizers.quantizers_utils import should_convert_module

    skip = HfQuantizer.get_modules_to_not_convert(model, None, getattr(model, "_keep_in_fp32_modules", None))
    return tuple(module.weight.numel() for name, module in model.named_modules()
                 if (type(module) is nn.Linear or isinstance(module, Conv1D)) and should_convert_module(name, skip))


def _add_lora(model, cfg: SmolforgeConfig, dtype):
    import torch
    from accelerate import init_empty_weights
    from peft import get_peft_model

    check_lora_targets(model, cfg.training.lora.target_modules)  # a typo fails here, before any download
    with init_empty_weights(), torch.random.fork_rng():
        model = get_peft_model(model, lora_config(cfg))
    if cfg.training.four_bit_base:
        # PEFT makes the adapters fp32; over a 4-bit base TRL casts them to bf16 and train.py then to the run's
        # dtype (`_adapters_in_run_dtype`): their bytes, and what the activation probe saves, follow that dtype
        for param in model.parameters():
            if param.requires_grad:
                param.data = param.data.to(dtype)
    return model


def _decoder_layers(model) -> list:
    """The repeated blocks (transformers names their classes in `_no_split_modules`)."""
    names = set(getattr(model, "_no_split_modules", None) or [])
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    names |= set(getattr(base, "_no_split_modules", None) or [])
    return [m for m in model.modules() if type(m).__name__ in names]


def _saved_per_region(model, length: int) -> tuple[float, float, float]:
    """(bytes saved inside decoder layers, outside them, a layer's input) for one forward of `length` tokens."""
    import torch

    layers = _decoder_layers(model)
    inside: list[int] = []
    seen: dict[int, tuple[bool, int]] = {}
    params = {p.untyped_storage()._cdata for p in model.parameters()}  # _cdata: the storage's identity on meta
    layer_input: list[int] = []

    def enter(module, args, kwargs):
        inside.append(1)
        hidden = args[0] if args else kwargs.get("hidden_states")
        if hidden is not None and not layer_input:
            layer_input.append(hidden.numel() * hidden.element_size())

    def leave(module, args, output):
        inside.pop()

    def pack(t):
        key = t.untyped_storage()._cdata
        if key not in params and key not in seen:
            seen[key] = (bool(inside), t.untyped_storage().nbytes())
        return t

    handles = [m.register_forward_pre_hook(enter, with_kwargs=True) for m in layers]
    handles += [m.register_forward_hook(leave) for m in layers]
    ids = torch.zeros((1, length), dtype=torch.long, device="meta")
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    try:
        with torch.random.fork_rng(), torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            model.train()
            base.base_model(input_ids=ids, use_cache=False)  # the decoder: TRL's kernel replaces the output head
    finally:
        for h in handles:
            h.remove()
    in_layers = sum(n for is_in, n in seen.values() if is_in)
    outside = sum(n for is_in, n in seen.values() if not is_in)
    return in_layers / max(1, len(layers)), outside, layer_input[0] if layer_input else 0


def _per_token(model) -> tuple[float, float, float, float]:
    """Saved bytes per token (layer, outside, layer input) with the quadratic attention term taken out."""
    (t1, t2) = PROBE_LENGTHS
    (l1, o1, i1), (l2, o2, _) = (_saved_per_region(model, n) for n in PROBE_LENGTHS)
    # saved(T) = a*T + c*T^2 per region: two lengths give a (per token) and c (per token per position)
    quad = (l2 / t2 - l1 / t1) / (t2 - t1)
    layer = l1 / t1 - quad * t1
    outside_quad = (o2 / t2 - o1 / t1) / (t2 - t1)
    outside = o1 / t1 - outside_quad * t1
    return layer, outside, i1 / t1, quad


_READ: dict[str, ModelFacts] = {}  # this process's probes: a plan's suggestions re-plan the same model many times


def read_model(cfg: SmolforgeConfig, dtype_name: str) -> ModelFacts:
    """Count and probe the base model (with the run's LoRA adapters; qlora: which weights are 4-bit) on the meta
    device, in `dtype_name`. What it reads is the model section, which weights train, the LoRA settings and the
    dtype; a plan that tries other batch sizes, checkpointing or process counts probes each model once."""
    key = json.dumps([cfg.model.model_dump(mode="json"), cfg.training.finetune,
                      cfg.training.lora.model_dump(mode="json"), dtype_name], sort_keys=True)
    if key not in _READ:
        _READ[key] = _probe(cfg, dtype_name)
    return _READ[key]


def _probe(cfg: SmolforgeConfig, dtype_name: str) -> ModelFacts:
    import torch
    from accelerate.utils import calculate_maximum_sizes

    source, config = read_config(cfg)
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(dtype_name, torch.float32)
    model = _meta_model(config, dtype, cfg.model.trust_remote_code)
    params = model.num_parameters()
    embedding = model.get_input_embeddings().weight
    tied = model.get_output_embeddings() is not None and model.get_output_embeddings().weight is embedding
    quantized = _four_bit_weights(model) if cfg.training.four_bit_base else ()  # before PEFT adds its own Linears
    adapter = 0
    if cfg.training.adapters:
        model = _add_lora(model, cfg, dtype)
        adapter = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total_bytes, (largest, _) = calculate_maximum_sizes(model)
    total_bytes += sum(four_bit_bytes(n) - n * dtype.itemsize for n in quantized)  # the 4-bit base as loaded
    from trl.kernels.chunked_logprob import TOKEN_CHUNK_SIZE
    from trl.trainer.utils import _CHUNKED_LOGPROB_CHUNK_SIZE  # the vocabulary width of a tile TRL uses
    adapter_dtypes = {p.element_size() for p in model.parameters() if p.requires_grad} if adapter else set()
    layer, outside, layer_input, quad = _per_token(model)
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    heads = int(getattr(text, "num_attention_heads", 1) or 1)
    hidden = int(getattr(text, "hidden_size", 0) or 0)
    return ModelFacts(
        source=source, model_type=str(getattr(config, "model_type", "?")), params=params, adapter_params=adapter,
        embedding_params=embedding.numel(), tied=tied,
        layers=int(getattr(text, "num_hidden_layers", 0) or len(_decoder_layers(model))), hidden=hidden,
        intermediate=int(getattr(text, "intermediate_size", 0) or 4 * hidden),
        heads=heads, kv_heads=int(getattr(text, "num_key_value_heads", None) or heads),
        head_dim=int(getattr(text, "head_dim", None) or (hidden // heads if heads else 0)),
        vocab=int(getattr(text, "vocab_size", 0) or embedding.shape[0]),
        max_positions=getattr(text, "max_position_embeddings", None), weight_bytes=int(total_bytes),
        largest_layer_bytes=int(largest), param_bytes=dtype.itemsize,
        adapter_bytes=max(adapter_dtypes) if adapter_dtypes else dtype.itemsize,
        layer_saved=layer, outside_saved=outside, layer_input=layer_input, quadratic=quad,
        head_tile=(TOKEN_CHUNK_SIZE, _CHUNKED_LOGPROB_CHUNK_SIZE), quantized=quantized)
