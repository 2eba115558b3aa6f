"""Does a GGUF file hold the model that was trained? Structure and numbers, each check with its evidence.

Structure: the file reads back with gguf-py's reader; its architecture is the model's; every weight of the
safetensors folder is in it (names mapped with gguf-py's own tensor map) with the same shape, and nothing
else; its chat template renders the same text as the trained tokenizer's for a set of conversations (one with
a tool call, a tool result and tools) in both reasoning modes; llama.cpp's tokenizer gives the same ids for those
texts; and the BOS/EOS/end-of-turn/PAD tokens llama.cpp loads are the trained tokenizer's.

Numbers: each tensor dequantized (gguf-py) against the safetensors weight: max and mean absolute error, and
the max error must stay within what the tensor's storage type can cause, as a fraction of the tensor's
max |w| (a bound on every block's range): half a quantization step where values round to the nearest
level (Q8_0 and the asymmetric Q4_1/Q5_1); one whole step for Q4_0/Q5_0, which map the block's largest
magnitude to the lowest level and clamp the other end; one whole step for K-quants, whose scales are
themselves quantized and fitted by least squares; each with room (x1.05 to x1.25) for scales stored in f16.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from smolforge.chat_templates import TOOL_EXAMPLE

# Largest |dequantized - original| as a fraction of the tensor's max |w|, per GGUF storage type.
MAX_ERROR = {
    "F32": 1e-6, "F16": 2.0 ** -11 * 1.01, "BF16": 2.0 ** -8 * 1.01,
    "Q8_0": 1.25 / 254, "Q5_0": 1.05 / 16, "Q5_1": 1.25 / 62, "Q4_0": 1.05 / 8, "Q4_1": 1.25 / 30,
    "Q6_K": 1.25 / 32, "Q5_K": 1.05 * 2 / 31, "Q4_K": 1.05 * 2 / 15,
}
TEMPLATE_CONVERSATIONS: list[list[dict[str, str]]] = [
    [{"role": "user", "content": "What is 2 plus 2?"}],
    [{"role": "system", "content": "Answer in one short sentence."}, {"role": "user", "content": "Name a colour."}],
    [{"role": "system", "content": "/no_think"}, {"role": "user", "content": "Say hello."}],
    [{"role": "system", "content": "Be friendly. /think"}, {"role": "user", "content": "Hi!"},
     {"role": "assistant", "content": "Hello! How can I help?"}, {"role": "user", "content": "Count to three."}],
    [{"role": "user", "content": "Spell cat."}, {"role": "assistant", "content": "C, A, T."}],
]


def conversations_for_checks(eval_rows: list[list[dict[str, str]]]) -> list[list[dict[str, str]]]:
    return TEMPLATE_CONVERSATIONS + [m for m in eval_rows if m][:3]


def _render_gguf_template(template: str, messages, *, enable_thinking: bool, add_generation_prompt: bool,
                          bos: str | None, eos: str | None, tools: list | None = None) -> str:
    """Render a template as llama.cpp's Python runtimes do: Jinja2's immutable sandbox, trim/lstrip blocks."""
    from jinja2.exceptions import TemplateError
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def raise_exception(message):
        raise TemplateError(message)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    env.globals["raise_exception"] = raise_exception
    return env.from_string(template).render(messages=messages, add_generation_prompt=add_generation_prompt,
                                            enable_thinking=enable_thinking, bos_token=bos or "", eos_token=eos or "",
                                            tools=tools)


def rendering_cases(conversations) -> list[tuple[list[dict[str, Any]], bool, bool, list | None]]:
    """(messages, enable_thinking, add_generation_prompt, tools): both reasoning modes for every conversation, and
    the tool conversation."""
    cases = [(m, None) for m in conversations] + [TOOL_EXAMPLE]
    return [(m, think, m[-1]["role"] == "user", tools) for m, tools in cases for think in (True, False)]


def check_template(reader_fields: dict[str, Any], tokenizer, conversations) -> dict[str, Any]:
    template = reader_fields.get("tokenizer.chat_template")
    if not isinstance(template, str):
        return {"passed": False, "why": "the GGUF has no tokenizer.chat_template"}
    cases = rendering_cases(conversations)
    mismatches = []
    for messages, think, gen, tools in cases:
        want = tokenizer.apply_chat_template(messages, tokenize=False, enable_thinking=think,
                                             add_generation_prompt=gen, tools=tools)
        got = _render_gguf_template(template, messages, enable_thinking=think, add_generation_prompt=gen,
                                    bos=tokenizer.bos_token, eos=tokenizer.eos_token, tools=tools)
        if got != want:
            mismatches.append({"messages": len(messages), "enable_thinking": think, "expected": want[:400],
                               "got": got[:400]})
    return {"passed": not mismatches, "renderings": len(cases), "mismatches": mismatches[:3],
            "modes": ["think", "no_think"]}


def check_tokenizer(llama, tokenizer, conversations) -> dict[str, Any]:
    cases = rendering_cases(conversations)
    differing = []
    for messages, think, gen, tools in cases:
        text = tokenizer.apply_chat_template(messages, tokenize=False, enable_thinking=think,
                                             add_generation_prompt=gen, tools=tools)
        want = tokenizer(text, add_special_tokens=False)["input_ids"]
        got = llama.tokenize(text)
        if got != want:
            at = next((i for i, (a, b) in enumerate(zip(want, got, strict=False)) if a != b), min(len(want), len(got)))
            differing.append({"text": text[:200], "first_difference_at": at, "transformers": want[at:at + 5],
                              "llama_cpp": got[at:at + 5]})
    return {"passed": not differing, "texts": len(cases), "differing": differing[:3]}


def check_special_tokens(llama, facts) -> dict[str, Any]:
    loaded = llama.special_tokens()
    expected = {"eos_id": facts.eos_id, "end_of_turn_id": facts.end_of_turn_id, "pad_id": facts.pad_id,
                "adds_bos": facts.adds_bos, "adds_eos": facts.adds_eos}
    if facts.adds_bos:
        expected["bos_id"] = facts.bos_id
    wrong = {k: {"expected": v, "llama_cpp": loaded[k]} for k, v in expected.items() if loaded[k] != v}
    return {"passed": not wrong, "expected": expected, "llama_cpp": loaded, "wrong": wrong}


def _arch_enum(arch: str):
    import gguf

    return next(a for a, name in gguf.MODEL_ARCH_NAMES.items() if name == arch)


class _Weights:
    """The safetensors weights of a folder, one tensor at a time as float32 (bf16 included; a 3B model is never
    held whole in memory)."""

    def __init__(self, model_dir: Path):
        from safetensors import safe_open

        self.files = {}
        for f in sorted(model_dir.glob("*.safetensors")):
            with safe_open(str(f), framework="pt") as fh:
                for key in fh.keys():
                    self.files[key] = f

    def __iter__(self):
        return iter(self.files)

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, key: str) -> np.ndarray:
        from safetensors import safe_open

        with safe_open(str(self.files[key]), framework="pt") as fh:
            return fh.get_tensor(key).float().numpy()


def _rope_permuted(w: np.ndarray, heads: int) -> np.ndarray:
    """llama.cpp's layout of a Llama-family q/k projection (its converter's `LlamaModel.permute`): within each
    head, the two rotary halves are interleaved."""
    return w.reshape(heads, 2, w.shape[0] // heads // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def _errors(got: np.ndarray, want: np.ndarray) -> tuple[float, float, float]:
    diff = np.abs(got.astype(np.float64) - want.astype(np.float64))
    return float(diff.max()), float(diff.mean()), float(np.abs(want).max())


def check_tensors(reader, model_dir: Path, config: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(structure of the tensor set, numbers per tensor) for a GGUF reader against the safetensors folder."""
    import gguf
    from gguf.quants import dequantize

    arch = reader.fields["general.architecture"].contents()
    n_layers = int(config.get("num_hidden_layers", 0))
    names = gguf.get_tensor_name_map(_arch_enum(arch), n_layers)
    hf = _Weights(model_dir)
    expected: dict[str, str] = {}
    unmapped = []
    for key in hf:
        mapped = names.get_name(key, try_suffixes=(".weight", ".bias"))
        if mapped is None:
            unmapped.append(key)
        else:
            expected[mapped] = key
    tensors = {t.name: t for t in reader.tensors}
    missing = sorted(set(expected) - set(tensors))
    extra = sorted(set(tensors) - set(expected))
    shape_errors = []
    rows: list[dict[str, Any]] = []
    heads = {"attn_q": int(config.get("num_attention_heads", 1)),
             "attn_k": int(config.get("num_key_value_heads") or config.get("num_attention_heads", 1))}
    for name in sorted(set(expected) & set(tensors)):
        t, want = tensors[name], hf[expected[name]]
        shape = tuple(int(d) for d in reversed(t.shape.tolist()))
        if shape != tuple(want.shape):
            shape_errors.append({"tensor": name, "gguf": list(shape), "model": list(want.shape)})
            continue
        qtype = gguf.GGMLQuantizationType(t.tensor_type).name
        got = dequantize(t.data, t.tensor_type).reshape(want.shape)
        max_err, mean_err, max_abs = _errors(got, want)
        layout = "as trained"
        kind = name.split(".")[-2] if name.count(".") >= 2 else ""
        bound = MAX_ERROR.get(qtype)
        if kind in heads and bound is not None and max_err > bound * max_abs:
            p_max, p_mean, _ = _errors(got, _rope_permuted(want, heads[kind]))
            if p_max < max_err:
                max_err, mean_err, layout = p_max, p_mean, "rotary halves interleaved (llama.cpp's layout)"
        rows.append({"tensor": name, "type": qtype, "max_error": max_err, "mean_error": mean_err,
                     "max_abs_weight": max_abs,
                     "allowed_max_error": None if bound is None else bound * max_abs, "layout": layout,
                     "passed": bound is not None and max_err <= bound * max_abs})
    structure = {"passed": not (missing or extra or shape_errors or unmapped), "architecture": arch,
                 "tensors": len(tensors), "model_tensors": len(hf), "missing": missing, "extra": extra,
                 "unmapped_model_tensors": unmapped, "shape_mismatches": shape_errors}
    failed = [r["tensor"] for r in rows if not r["passed"]]
    types: dict[str, int] = {}
    for r in rows:
        types[r["type"]] = types.get(r["type"], 0) + 1
    numbers = {"passed": bool(rows) and not failed, "tensor_types": types, "failed": failed,
               "worst_relative_error": max((r["max_error"] / r["max_abs_weight"] for r in rows
                                            if r["max_abs_weight"]), default=None),
               "per_tensor": rows}
    return structure, numbers


def read_fields(reader) -> dict[str, Any]:
    """The file's metadata as plain values (token lists left out: they are checked through llama.cpp)."""
    out = {}
    for name, field in reader.fields.items():
        if name.startswith("GGUF.") or name in ("tokenizer.ggml.tokens", "tokenizer.ggml.scores",
                                                 "tokenizer.ggml.token_type", "tokenizer.ggml.merges"):
            continue
        out[name] = field.contents()
    return out
