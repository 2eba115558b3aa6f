"""A GGUF file run by llama.cpp itself (llama-cpp-python's bindings), for the behaviour checks.

Only what the checks need: the token ids llama.cpp's tokenizer gives, the special tokens llama.cpp uses
(read back from its loaded vocabulary, not from the file's keys), the log-probability of given token ids
(the same ids the transformers model is scored on), and greedy decoding.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np


def log_softmax(rows: np.ndarray) -> np.ndarray:
    rows = rows.astype(np.float64)
    top = rows.max(axis=-1, keepdims=True)
    return rows - top - np.log(np.exp(rows - top).sum(axis=-1, keepdims=True))


class LlamaCppModel:
    """One GGUF file loaded by llama.cpp on the CPU, with logits for every position."""

    def __init__(self, path: Path, n_ctx: int, threads: int | None = None, vocab_only: bool = False):
        import os

        from llama_cpp import Llama

        self.path = path
        self.llm = Llama(model_path=str(path), n_ctx=max(n_ctx, 8), n_batch=max(8, min(n_ctx, 512)),
                         logits_all=True, vocab_only=vocab_only, verbose=False, seed=0,
                         n_threads=threads or os.cpu_count() or 1)

    def close(self) -> None:
        self.llm.close()

    # ------------------------------------------------------------ tokenizer
    def tokenize(self, text: str) -> list[int]:
        """llama.cpp's token ids for a rendered chat (special tokens parsed, no BOS added here)."""
        return list(self.llm.tokenize(text.encode("utf-8"), add_bos=False, special=True))

    def special_tokens(self) -> dict[str, int | bool | None]:
        import llama_cpp as lc

        vocab = self.llm._model.vocab

        def tok(i: int) -> int | None:
            return None if i < 0 else int(i)

        return {"bos_id": tok(lc.llama_vocab_bos(vocab)), "eos_id": tok(lc.llama_vocab_eos(vocab)),
                "end_of_turn_id": tok(lc.llama_vocab_eot(vocab)), "pad_id": tok(lc.llama_vocab_pad(vocab)),
                "adds_bos": bool(lc.llama_vocab_get_add_bos(vocab)),
                "adds_eos": bool(lc.llama_vocab_get_add_eos(vocab))}

    # ------------------------------------------------------------ scoring
    def logits(self, ids: list[int]) -> np.ndarray:
        self.llm.reset()
        self.llm.eval(ids)
        return np.array(self.llm.scores[: len(ids)], dtype=np.float32)

    def nll(self, ids: list[int], scored: list[bool]) -> tuple[float, int]:
        """(sum of -log p(token | earlier tokens), tokens counted) over positions with `scored` set."""
        logp = log_softmax(self.logits(ids))
        total, n = 0.0, 0
        for t in range(1, len(ids)):
            if scored[t]:
                total -= float(logp[t - 1, ids[t]])
                n += 1
        return total, n

    def greedy(self, prompt: list[int], max_new: int, stop: set[int]) -> list[int]:
        """Greedy continuation: argmax of llama.cpp's logits each step, until a stop token or `max_new`."""
        self.llm.reset()
        self.llm.eval(prompt)
        out: list[int] = []
        while len(out) < max_new:
            nxt = int(np.argmax(self.llm.scores[self.llm.n_tokens - 1]))
            out.append(nxt)
            if nxt in stop:
                break
            self.llm.eval([nxt])
        return out


def perplexity(nll_sum: float, n: int) -> float | None:
    return math.exp(nll_sum / n) if n else None
