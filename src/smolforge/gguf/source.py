"""The folder llama.cpp's converter reads: the fine-tune's files, plus what transformers 5 no longer writes.

The converter was written against transformers 4 folders. A folder saved by transformers 5 lacks two
things it reads, so a staging folder (hard links to the weights, nothing copied) adds them:

- `tokenizer_config.json` with `added_tokens_decoder` (which tokens are special: control tokens such as
  `<|im_end|>` vs text tokens such as `<think>`) and `add_bos_token` / `add_eos_token` as the tokenizer
  really behaves; without them llama.cpp adds a BOS the model never saw and splits `<think>` into pieces.
- `tokenizer.model` (a SentencePiece vocabulary with its scores) when the base model has one: transformers 5
  keeps only `tokenizer.json`, and without the scores llama.cpp would merge pieces in another order.

The chat template is written as `chat_template.jinja` without transformers' `{% generation %}` markers
(they only mark the assistant tokens for training's loss; llama.cpp, Ollama and LM Studio do not know
them). Each marker becomes an empty expression with the same whitespace control, so the rendered text
is unchanged: the structure check renders both templates and compares them.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from smolforge.errors import SmolforgeError

SPM_FILE = "tokenizer.model"
GENERATION_TAG = re.compile(r"\{%(-?)\s*(?:end)?generation\s*(-?)%\}")
TURN_PROBE = "SMOLFORGE-TURN-END-PROBE"


def export_chat_template(template: str) -> str:
    """The training template without `{% generation %}` / `{% endgeneration %}`, rendering the same text."""
    return GENERATION_TAG.sub(lambda m: "{{" + m.group(1) + ' "" ' + m.group(2) + "}}", template)


@dataclass(frozen=True)
class TokenFacts:
    """What the trained tokenizer says about its special tokens, for the GGUF and its checks."""

    bos_id: int | None
    eos_id: int | None
    pad_id: int | None
    end_of_turn_id: int | None
    end_of_turn: str | None
    adds_bos: bool
    adds_eos: bool
    stop_tokens: list[str]

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def token_facts(tokenizer) -> TokenFacts:
    """BOS/EOS/PAD ids, whether encoding adds BOS/EOS, and the end-of-turn token: the token the chat template puts
    right after an assistant message (found by rendering one, so any chat format works)."""
    probe = tokenizer("a", add_special_tokens=True)["input_ids"]
    plain = tokenizer("a", add_special_tokens=False)["input_ids"]
    adds_bos = tokenizer.bos_token_id is not None and len(probe) > len(plain) and probe[0] == tokenizer.bos_token_id
    adds_eos = tokenizer.eos_token_id is not None and len(probe) > len(plain) and probe[-1] == tokenizer.eos_token_id
    eot_id, eot = None, None
    if tokenizer.chat_template:
        text = tokenizer.apply_chat_template([{"role": "user", "content": "a"},
                                              {"role": "assistant", "content": TURN_PROBE}], tokenize=False)
        after = text.split(TURN_PROBE, 1)[-1]
        ids = tokenizer(after, add_special_tokens=False)["input_ids"]
        specials = set(tokenizer.all_special_ids)
        if ids and ids[0] in specials:
            eot_id, eot = ids[0], tokenizer.convert_ids_to_tokens(ids[0])
    stops = list(dict.fromkeys(t for t in (eot, tokenizer.eos_token) if t))
    return TokenFacts(tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id, eot_id, eot,
                      adds_bos, adds_eos, stops)


def _base_spm(base_source: str | None) -> Path | None:
    """The base model's SentencePiece file, from a local folder or the Hugging Face cache (never downloaded)."""
    if not base_source:
        return None
    if Path(base_source).is_dir():
        local = Path(base_source) / SPM_FILE
        return local if local.is_file() else None
    from huggingface_hub import try_to_load_from_cache
    from huggingface_hub.errors import HFValidationError

    try:
        cached = try_to_load_from_cache(base_source, SPM_FILE)
    except HFValidationError:  # neither a folder nor a Hub id: nothing to look up
        return None
    return Path(cached) if isinstance(cached, str) else None


def _same_vocabulary(spm_file: Path, tokenizer) -> bool:
    import sentencepiece as spm

    sp = spm.SentencePieceProcessor(model_file=str(spm_file))
    vocab = tokenizer.get_vocab()
    return all(vocab.get(sp.id_to_piece(i)) == i for i in range(sp.get_piece_size()))


def _link(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def stage_source(model_dir: Path, dest: Path, base_source: str | None) -> tuple[Path, TokenFacts]:
    """Lay out `dest` for the converter from the full-weight folder `model_dir`; returns it and the token facts."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    dest.mkdir(parents=True, exist_ok=True)
    for f in model_dir.iterdir():
        if f.is_file() and f.name not in ("README.md", "chat_template.jinja", "tokenizer_config.json"):
            _link(f, dest / f.name)
    config_path = model_dir / "tokenizer_config.json"
    config = json.loads(config_path.read_text(encoding="utf-8")) if config_path.is_file() else {}
    config.pop("chat_template", None)
    config.setdefault("added_tokens_decoder", {
        str(i): {"content": t.content, "special": t.special, "lstrip": t.lstrip, "rstrip": t.rstrip,
                 "normalized": t.normalized, "single_word": t.single_word}
        for i, t in sorted(tokenizer.added_tokens_decoder.items())})
    facts = token_facts(tokenizer)
    config["add_bos_token"], config["add_eos_token"] = facts.adds_bos, facts.adds_eos
    (dest / "tokenizer_config.json").write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n",
                                                encoding="utf-8")
    if isinstance(tokenizer.chat_template, str):
        (dest / "chat_template.jinja").write_text(export_chat_template(tokenizer.chat_template), encoding="utf-8")
    if not (dest / SPM_FILE).exists():
        spm_file = _base_spm(base_source)
        if spm_file is not None:
            if not _same_vocabulary(spm_file, tokenizer):
                raise SmolforgeError(f"The base model's {SPM_FILE} ({spm_file}) does not hold the fine-tune's "
                                     f"vocabulary, so llama.cpp's converter cannot be given its scores. Put the "
                                     f"matching {SPM_FILE} into {model_dir} and run the export again.")
            _link(spm_file, dest / SPM_FILE)
    return dest, facts
