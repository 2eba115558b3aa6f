"""Build a tiny SmolLM3-architecture model and tokenizer locally.

The offline default (`make run`) and the tests cannot download SmolLM3-3B, so they train a
model with the same architecture (`SmolLM3Config`: GQA, NoPE every 4th layer, tied
embeddings) at toy size, with a byte-level BPE tokenizer trained on the bundled chats and the
SmolLM3-style chat template that marks assistant turns for assistant-only loss.

Builds are cached by their spec (`SMOLFORGE_CACHE`, default ~/.cache/smolforge), written to
a temporary folder and renamed into place so concurrent runs never see half a model.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from pathlib import Path

from smolforge.config import TinySpec
from smolforge.modelio import training_chat_template
from smolforge.paths import cache_root

SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|pad|>", "<think>", "</think>"]
TINY_BUILD_VERSION = 1  # bump when the build recipe changes, so caches are not reused


def _spec_key(spec: TinySpec) -> str:
    blob = json.dumps({"v": TINY_BUILD_VERSION, **spec.model_dump()}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def _tokenizer_corpus() -> list[str]:
    from smolforge.builtin_data import BUILTIN_PATH

    texts = ["Reasoning Mode: /think", "Reasoning Mode: /no_think", "system", "user", "assistant"]
    with open(BUILTIN_PATH, encoding="utf-8") as f:
        for line in f:
            texts.extend(m["content"] for m in json.loads(line)["messages"])
    return texts


def build_tokenizer(vocab_size: int):
    """Train a byte-level BPE on the bundled chats and wrap it as a transformers tokenizer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        min_frequency=2,
        show_progress=False,
    )
    tok.train_from_iterator(_tokenizer_corpus(), trainer)
    hf_tok = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token="<|im_end|>",
        pad_token="<|pad|>",
        unk_token=None,
        model_max_length=4096,
    )
    hf_tok.chat_template = training_chat_template()
    return hf_tok


def build_model(spec: TinySpec, tokenizer):
    """A randomly initialised SmolLM3ForCausalLM whose special-token ids match `tokenizer`."""
    import torch
    from transformers import SmolLM3Config, SmolLM3ForCausalLM

    vocab = -(-len(tokenizer) // 64) * 64  # round up: matmul-friendly embedding size
    config = SmolLM3Config(
        vocab_size=vocab,
        hidden_size=spec.hidden_size,
        intermediate_size=spec.intermediate_size,
        num_hidden_layers=spec.num_layers,
        num_attention_heads=spec.num_heads,
        num_key_value_heads=spec.num_kv_heads,
        max_position_embeddings=spec.max_position_embeddings,
        tie_word_embeddings=True,
        # SmolLM3Config defaults these to Llama-3 ids; they must match our tokenizer.
        bos_token_id=None,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(spec.seed)
    model = SmolLM3ForCausalLM(config)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.bos_token_id = None
    return model


def build_tiny(spec: TinySpec, out_dir: Path) -> Path:
    """Build the tiny model + tokenizer into `out_dir` (safetensors, tokenizer, chat template)."""
    tokenizer = build_tokenizer(spec.vocab_size)
    model = build_model(spec, tokenizer)
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    (out_dir / "smolforge_tiny.json").write_text(json.dumps(spec.model_dump(), indent=2) + "\n")
    return out_dir


def ensure_tiny(spec: TinySpec) -> Path:
    """Return the cached build for `spec`, building it first when missing."""
    target = cache_root() / f"tiny-{_spec_key(spec)}"
    if (target / "smolforge_tiny.json").exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tiny-", dir=target.parent))
    try:
        build_tiny(spec, tmp)
        try:
            tmp.rename(target)
        except OSError:  # another process finished first: use its build
            if not (target / "smolforge_tiny.json").exists():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target
