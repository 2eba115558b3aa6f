"""Does a GGUF file behave like the trained model when llama.cpp runs it?

The reference is the full-precision fine-tune in transformers. Both models score the same token ids: the
first `quantize.gguf_eval_rows` rows of the run's eval split, tokenized and masked by the very trainer
that measured training's eval loss (its eval dataloader), so only the supervised tokens count, as in
training. Each side gives a token-weighted mean negative log-likelihood; the quality drop is the relative
perplexity increase, exp(loss_gguf - loss_transformers) - 1, the number the fidelity gate compares with
`quantize.max_quality_drop`.

For f16 files, greedy generations on a few eval prompts are also compared token by token. A difference is
accepted only where the transformers model itself nearly ties between its two best tokens (a margin below
`NEAR_TIE` in logits), since f16 rounding can flip a near tie and nothing else.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

NEAR_TIE = 0.05
GREEDY_PROMPTS = 4
GREEDY_TOKENS = 24


@dataclass
class EvalSequences:
    """Token ids with the positions training's loss counted, and chat prompts for generation."""

    sequences: list[tuple[list[int], list[bool]]] = field(default_factory=list)
    prompts: list[list[dict[str, str]]] = field(default_factory=list)
    conversations: list[list[dict[str, str]]] = field(default_factory=list)

    @property
    def tokens(self) -> int:
        return sum(sum(m[1:]) for _, m in self.sequences)


def _split_batch(batch) -> list[tuple[list[int], list[bool]]]:
    """One eval batch (padded, padding-free, or DPO pairs) -> (ids, scored) per row."""
    out = []
    if "input_ids" in batch:
        ids, labels = batch["input_ids"], batch["labels"]
        if "position_ids" in batch and ids.shape[0] == 1:  # padding-free: rows concatenated, positions restart
            pos = batch["position_ids"][0].tolist()
            starts = [i for i, p in enumerate(pos) if p == 0] + [len(pos)]
            row_ids, row_labels = ids[0].tolist(), labels[0].tolist()
            for s, e in zip(starts, starts[1:], strict=False):
                out.append((row_ids[s:e], [lab != -100 for lab in row_labels[s:e]]))
            return out
        mask = batch.get("attention_mask")
        for r in range(ids.shape[0]):
            keep = mask[r].bool() if mask is not None else slice(None)
            out.append((ids[r][keep].tolist(), [lab != -100 for lab in labels[r][keep].tolist()]))
        return out
    # DPO: the prompt followed by the chosen answer; the answer's tokens are scored
    for r in range(batch["prompt_input_ids"].shape[0]):
        p = batch["prompt_input_ids"][r][batch["prompt_attention_mask"][r].bool()].tolist()
        c = batch["chosen_input_ids"][r][batch["chosen_attention_mask"][r].bool()].tolist()
        out.append((p + c, [False] * len(p) + [True] * len(c)))
    return out


def eval_sequences(evaluator, model, limit: int) -> EvalSequences:
    """The first `limit` eval rows as training's own eval dataloader builds them, and their chats."""
    from unittest import mock

    got = EvalSequences()
    if not evaluator.available:
        return got
    with mock.patch("transformers.trainer.validate_quantization_for_training"):
        trainer = evaluator._build(model)
    for batch in trainer.get_eval_dataloader():
        got.sequences.extend(_split_batch(batch))
        if len(got.sequences) >= limit:
            break
    got.sequences = got.sequences[:limit]
    for row in evaluator.data.eval.select(range(min(limit, len(evaluator.data.eval)))):
        messages = row.get("messages") or row.get("prompt")
        if isinstance(messages, list) and messages and isinstance(messages[0], dict):
            got.conversations.append(messages)
            user_end = max((i for i, m in enumerate(messages) if m["role"] == "user"), default=None)
            if user_end is not None and len(got.prompts) < GREEDY_PROMPTS:
                got.prompts.append(messages[: user_end + 1])
    return got


def transformers_nll(model, seqs: EvalSequences) -> tuple[float, int]:
    import torch

    total, n = 0.0, 0
    with torch.no_grad():
        for ids, scored in seqs.sequences:
            x = torch.tensor([ids], device=model.device)
            logp = torch.log_softmax(model(input_ids=x).logits[0].double(), dim=-1)
            for t in range(1, len(ids)):
                if scored[t]:
                    total -= float(logp[t - 1, ids[t]])
                    n += 1
    return total, n


def compare_loss(llama, reference: tuple[float, int], seqs: EvalSequences) -> dict[str, Any]:
    """llama.cpp's loss on the same tokens as the transformers reference, and the quality drop."""
    total, n = 0.0, 0
    for ids, scored in seqs.sequences:
        s, c = llama.nll(ids, scored)
        total, n = total + s, n + c
    ref_loss = reference[0] / reference[1]
    loss = total / n
    return {"rows": len(seqs.sequences), "tokens": n, "loss_transformers": ref_loss, "loss_llama_cpp": loss,
            "perplexity_transformers": math.exp(ref_loss), "perplexity_llama_cpp": math.exp(loss),
            "quality_drop": math.exp(loss - ref_loss) - 1.0}


def prompt_ids(tokenizer, messages) -> list[int]:
    return tokenizer.apply_chat_template(messages, tokenize=True, add_generation_prompt=True,
                                         enable_thinking=False, return_dict=True)["input_ids"]


def compare_greedy(llama, model, tokenizer, prompts, stop: set[int]) -> dict[str, Any]:
    """Greedy continuations from transformers and llama.cpp, token by token."""
    import torch

    rows, passed = [], True
    for messages in prompts:
        prompt = prompt_ids(tokenizer, messages)
        with torch.no_grad():
            out = model.generate(torch.tensor([prompt], device=model.device), max_new_tokens=GREEDY_TOKENS,
                                 do_sample=False, eos_token_id=sorted(stop), pad_token_id=tokenizer.pad_token_id)
        want = out[0, len(prompt):].tolist()
        got = llama.greedy(prompt, GREEDY_TOKENS, stop)
        row: dict[str, Any] = {"tokens": len(want), "identical": got == want}
        if got != want:
            at = next((i for i, (a, b) in enumerate(zip(want, got, strict=False)) if a != b), min(len(want), len(got)))
            with torch.no_grad():
                logits = model(torch.tensor([prompt + want[:at]], device=model.device)).logits[0, -1].double()
            top = torch.topk(logits, 2).values.tolist()
            row.update(first_difference_at=at, transformers_margin=top[0] - top[1],
                       near_tie=top[0] - top[1] < NEAR_TIE)
            passed = passed and row["near_tie"]
        rows.append(row)
    return {"passed": passed, "prompts": len(rows), "identical": sum(r["identical"] for r in rows),
            "near_tie_margin": NEAR_TIE, "generations": rows}
