"""Build a tiny SmolLM3-architecture model and tokenizer locally.

The offline default (`make run`) and the tests cannot download SmolLM3-3B, so they train a
model with the same architecture (`SmolLM3Config`: GQA, NoPE every 4th layer, tied
embeddings) at toy size, with a BPE tokenizer trained on the bundled chats and the
SmolLM3-style chat template that marks assistant turns for assistant-only loss.

The tokenizer is a SentencePiece BPE with byte fallback (`tokenizer.model` next to the
`tokenizer.json` transformers reads), because that is a tokenizer llama.cpp's GGUF converter
accepts for a locally trained vocabulary: a byte-level BPE is accepted only when its encoding
of a fixed probe text hashes to a pre-tokenizer the converter knows, which a new vocabulary never
does. No dummy prefix and no whitespace normalisation, so transformers and llama.cpp split text
identically.

Builds are cached by their spec (`SMOLFORGE_CACHE`, default ~/.cache/smolforge), written to
a temporary folder and renamed into place so concurrent runs never see half a model.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from pathlib import Path

from smolforge.builtin_data import BUILTIN_PATH
from smolforge.chat_templates import training_chat_template
from smolforge.config import TinySpec
from smolforge.paths import cache_root

CONTROL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|pad|>"]  # special: never produced from text
TEXT_TOKENS = ["<think>", "</think>"]  # always one token, in text as in the chat template
SPECIAL_TOKENS = CONTROL_TOKENS + TEXT_TOKENS
SPM_FILE = "tokenizer.model"
TINY_BUILD_VERSION = 2  # bump when the build recipe changes, so caches are not reused


def _spec_key(spec: TinySpec) -> str:
    template = hashlib.sha256(training_chat_template().encode()).hexdigest()  # a new template, a new build
    blob = json.dumps({"v": TINY_BUILD_VERSION, "template": template, **spec.model_dump()}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def _tokenizer_corpus() -> list[str]:
    texts = ["Reasoning Mode: /think", "Reasoning Mode: /no_think", "system", "user", "assistant"]
    with open(BUILTIN_PATH, encoding="utf-8") as f:
        for line in f:
            texts.extend(m["content"] for m in json.loads(line)["messages"])
    return texts


def train_sentencepiece(vocab_size: int) -> bytes:
    """A SentencePiece BPE model (serialized) trained on the bundled chats, with byte fallback."""
    import io

    import sentencepiece as spm

    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(_tokenizer_corpus()), model_writer=model, model_type="bpe", vocab_size=vocab_size,
        byte_fallback=True, character_coverage=1.0, add_dummy_prefix=False, normalization_rule_name="identity",
        remove_extra_whitespaces=False, split_digits=True, allow_whitespace_only_pieces=True,
        unk_id=0, bos_id=-1, eos_id=-1, pad_id=-1, control_symbols=CONTROL_TOKENS,
        user_defined_symbols=TEXT_TOKENS, max_sentence_length=1 << 20, num_threads=1, minloglevel=2)
    return model.getvalue()


def build_tokenizer(vocab_size: int, spm_path: Path | None = None):
    """Train the SentencePiece model (kept in `spm_path` when given) and wrap it as a transformers
    (tokenizers-backed) tokenizer with the same vocabulary, merges (ranked by the pieces' scores) and special
    tokens."""
    import sentencepiece as spm
    from tokenizers import AddedToken
    from transformers import LlamaTokenizer
    from transformers.tokenization_utils_base import generate_merges

    proto = train_sentencepiece(vocab_size)
    if spm_path is not None:
        spm_path.write_bytes(proto)
    sp = spm.SentencePieceProcessor(model_proto=proto)
    pieces = [sp.id_to_piece(i) for i in range(sp.get_piece_size())]
    vocab = {p: i for i, p in enumerate(pieces)}
    merges = generate_merges(vocab, {p: sp.get_score(i) for i, p in enumerate(pieces)})
    hf_tok = LlamaTokenizer(vocab=vocab, merges=merges, add_prefix_space=False, legacy=False, unk_token="<unk>",
                            bos_token=None, eos_token="<|im_end|>", pad_token="<|pad|>", add_bos_token=False,
                            add_eos_token=False, model_max_length=4096)
    hf_tok.add_special_tokens({"additional_special_tokens": [
        AddedToken(t, special=True, normalized=False) for t in CONTROL_TOKENS]})
    hf_tok.add_tokens([AddedToken(t, special=False, normalized=False) for t in TEXT_TOKENS])
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
    out_dir.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer(spec.vocab_size, out_dir / SPM_FILE)
    model = build_model(spec, tokenizer)
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
