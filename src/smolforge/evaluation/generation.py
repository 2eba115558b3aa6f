"""Prompt rendering and greedy generation shared by the sample table and the reasoning check.

Every model is prompted through the same tokenizer and chat template, in the same reasoning mode:
`enable_thinking` is passed only to templates that react to it (SmolLM3's does), so a template
without reasoning modes renders exactly as it always would.
"""

from __future__ import annotations

from typing import Any

THINK_OPEN, THINK_CLOSE = "<think>", "</think>"
_PROBE = [{"role": "user", "content": "Hello"}]


def has_chat_template(tokenizer: Any) -> bool:
    return bool(getattr(tokenizer, "chat_template", None))


def supports_thinking(tokenizer: Any) -> bool:
    """True when the chat template renders differently with `enable_thinking` on and off."""
    if not has_chat_template(tokenizer):
        return False
    try:
        on = tokenizer.apply_chat_template(_PROBE, tokenize=False, add_generation_prompt=True, enable_thinking=True)
        off = tokenizer.apply_chat_template(_PROBE, tokenize=False, add_generation_prompt=True, enable_thinking=False)
    except Exception:  # a template that cannot render a plain user turn has no usable reasoning switch
        return False
    return on != off


def template_kwargs(mode: str, thinking: bool) -> dict[str, Any]:
    return {"enable_thinking": mode == "think"} if thinking else {}


def think_end_token(tokenizer: Any) -> int | str:
    """`</think>` as a token id when it is one token (decoding may drop special tokens), else as text."""
    ids = tokenizer.encode(THINK_CLOSE, add_special_tokens=False)
    return ids[0] if len(ids) == 1 else THINK_CLOSE


def render(tokenizer: Any, messages: list[dict], mode: str, thinking: bool) -> str:
    if not has_chat_template(tokenizer):
        return "\n".join(m["content"] for m in messages) + "\n"
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True,
                                         **template_kwargs(mode, thinking))


def _stop_ids(tokenizer: Any, model: Any) -> list[int]:
    ids = {tokenizer.eos_token_id}
    gen_eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    ids.update(gen_eos if isinstance(gen_eos, list) else [gen_eos])
    im_end = tokenizer.convert_tokens_to_ids("<|im_end|>") if "<|im_end|>" in tokenizer.get_vocab() else None
    ids.add(im_end)
    return sorted(i for i in ids if isinstance(i, int))


def generate(model: Any, tokenizer: Any, conversations: list[list[dict]], mode: str, thinking: bool,
             max_new_tokens: int, batch_size: int) -> list[str]:
    """Greedy completions, decoded with special tokens kept (the think tags must stay visible)."""
    import torch
    from transformers import GenerationConfig

    stop = _stop_ids(tokenizer, model)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else stop[0]
    config = GenerationConfig(max_new_tokens=max_new_tokens, do_sample=False, eos_token_id=stop, pad_token_id=pad)
    device = next(model.parameters()).device
    out: list[str] = []
    for start in range(0, len(conversations), batch_size):
        prompts = [render(tokenizer, c, mode, thinking) for c in conversations[start:start + batch_size]]
        encoded = [tokenizer.encode(p, add_special_tokens=False) for p in prompts]
        width = max(len(e) for e in encoded)
        ids = torch.tensor([[pad] * (width - len(e)) + e for e in encoded], device=device)  # left padding
        mask = torch.tensor([[0] * (width - len(e)) + [1] * len(e) for e in encoded], device=device)
        with torch.no_grad():
            gen = model.generate(input_ids=ids, attention_mask=mask, generation_config=config)
        for row in gen[:, width:].tolist():
            cut = next((i for i, t in enumerate(row) if t in stop), len(row))
            out.append(tokenizer.decode(row[:cut], skip_special_tokens=False))
    return out
