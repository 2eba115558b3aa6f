"""HF folder -> GGUF files, with llama.cpp's own tools only.

1. llama.cpp's converter (`convert_hf_to_gguf.py`, run in its own process) writes an f16 GGUF from the
   staged folder: architecture (for SmolLM3 its NoPE layers), tensors, vocabulary, special tokens,
   chat template, and the sampling defaults of `generation_config.json`.
2. gguf-py's `gguf-new-metadata` routine copies it with the end-of-turn token added (the converter
   writes BOS/EOS/PAD but not EOT; Ollama and llama.cpp's chat stop on it).
3. llama.cpp's `llama_model_quantize` (through llama-cpp-python) turns that f16 file into Q8_0 and
   Q4_K_M, keeping the metadata.

Disk is checked before step 1: the f16 intermediate, the final f16 and every requested file at once.
"""

from __future__ import annotations

import ctypes
import logging
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from smolforge.errors import SmolforgeError
from smolforge.gguf.source import TokenFacts
from smolforge.gguf.toolchain import Toolchain
from smolforge.weightfiles import parameter_count

log = logging.getLogger("smolforge.gguf")

# llama.cpp file types (llama_ftype) and the bytes per parameter each needs, for the disk check (Q4_K_M mixes
# Q4_K with Q6_K for some tensors: 4.9 bits per weight on Llama-class models, llama.cpp's own figure).
FILE_TYPES = {"gguf-f16": ("F16", 1, 2.0), "gguf-q8_0": ("Q8_0", 7, 8.5 / 8), "gguf-q4_k_m": ("Q4_K_M", 15, 4.9 / 8)}
DISK_MARGIN = 1.05
UNKNOWN_PRE_TOKENIZER = "BPE pre-tokenizer was not recognized"
CHKHSH = re.compile(r"chkhsh:\s*([0-9a-f]{64})")


def file_name(stem: str, method: str) -> str:
    """`<model>-<TYPE>.gguf`, the name llama.cpp and the Hub's GGUF tooling expect."""
    return f"{stem}-{FILE_TYPES[method][0]}.gguf"


def check_disk(model_dir: Path, work: Path, out_dir: Path, methods: list[str]) -> dict[str, int]:
    """Bytes needed (the f16 intermediate and final f16 in `work`, each requested file in `out_dir`) against
    the free space; SmolforgeError before anything is written when it does not fit."""
    params = parameter_count(model_dir)
    need = {"f16 intermediate": int(2 * params * 2)}  # converter output + the copy with the end-of-turn token
    for m in methods:
        need[m] = int(params * FILE_TYPES[m][2])
    same_disk = os.stat(work).st_dev == os.stat(out_dir).st_dev
    free_work, free_out = shutil.disk_usage(work).free, shutil.disk_usage(out_dir).free
    total = sum(need.values()) if same_disk else need["f16 intermediate"]
    if total * DISK_MARGIN > free_work or (not same_disk and sum(need.values()) - total > free_out):
        parts = ", ".join(f"{k} {v / 1e9:.2f} GB" for k, v in need.items())
        raise SmolforgeError(f"Not enough disk for the GGUF export of {model_dir} ({params:,} parameters): it needs "
                             f"{sum(need.values()) * DISK_MARGIN / 1e9:.2f} GB ({parts}, plus 5%) and {work} has "
                             f"{free_work / 1e9:.2f} GB free. Free some space (or set TMPDIR to a larger disk) and "
                             "run `smolforge quantize` again; nothing was written.")
    return need


def _converter_error(stderr: str, staged: Path, tokenizer_name: str) -> SmolforgeError:
    if UNKNOWN_PRE_TOKENIZER in stderr:
        h = CHKHSH.search(stderr)
        return SmolforgeError(
            f"llama.cpp's GGUF converter does not know the tokenizer of {tokenizer_name}: it is a byte-level BPE "
            f"whose pre-tokenizer it cannot identify (probe hash {h.group(1) if h else 'unknown'}), and a GGUF with a "
            "guessed pre-tokenizer would split text differently from the trained model. Use a base model whose "
            "tokenizer llama.cpp supports (SmolLM3, Llama 3, Qwen and others), or have the tokenizer added to "
            "llama.cpp's convert_hf_to_gguf_update.py upstream; drop the gguf-* methods from `quantize` to train "
            "without the export.")
    lines = [ln for ln in stderr.strip().splitlines() if ln.strip()]
    last = lines[-1] if lines else "no output"
    return SmolforgeError(f"llama.cpp's GGUF converter failed on {staged}: {last}. Its full output is in smolforge's "
                          "log (the run's logs/quantize.log when converting a run).")


def run_converter(tc: Toolchain, staged: Path, out: Path, name: str, tokenizer_name: str,
                  vocab_only: bool = False) -> None:
    """llama.cpp's converter on `staged` -> `out` (f16), in its own process, offline."""
    cmd = [sys.executable, str(tc.converter), str(staged), "--outfile", str(out), "--outtype", "f16",
           "--model-name", name]
    if vocab_only:
        cmd.append("--vocab-only")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    env.pop("NO_LOCAL_GGUF", None)  # the converter must use the gguf-py it was written against, shipped beside it
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    log.info("llama.cpp converter: %s\n%s", " ".join(cmd), proc.stderr[-20000:])
    if proc.returncode != 0 or not out.is_file():
        raise _converter_error(proc.stderr, staged, tokenizer_name)


def add_turn_metadata(src: Path, dst: Path, facts: TokenFacts) -> None:
    """Copy `src` to `dst` with `tokenizer.ggml.eot_token_id` set to the chat template's end-of-turn token."""
    import gguf
    from gguf.scripts.gguf_new_metadata import MetadataDetails, copy_with_new_metadata

    reader = gguf.GGUFReader(str(src), "r")
    arch = reader.get_field(gguf.Keys.General.ARCHITECTURE).contents()
    writer = gguf.GGUFWriter(str(dst), arch=arch, endianess=reader.endianess)
    alignment = reader.get_field(gguf.Keys.General.ALIGNMENT)
    if alignment is not None:
        writer.data_alignment = alignment.contents()
    new = {}
    if facts.end_of_turn_id is not None:
        new[gguf.Keys.Tokenizer.EOT_ID] = MetadataDetails(gguf.GGUFValueType.UINT32, facts.end_of_turn_id)
    logging.getLogger("gguf-new-metadata").setLevel(logging.WARNING)
    from functools import partial
    from unittest import mock

    from tqdm import tqdm

    # gguf-py draws a progress bar while copying; smolforge reports progress itself
    with mock.patch("gguf.scripts.gguf_new_metadata.tqdm", partial(tqdm, disable=True)):
        copy_with_new_metadata(reader, writer, new, [])


def quantize_file(src: Path, dst: Path, method: str, threads: int | None = None) -> None:
    """llama.cpp's `llama_model_quantize`: f16 GGUF -> `method`'s file type (metadata copied)."""
    import llama_cpp
    from llama_cpp import _logger

    _logger.set_verbose(False)
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = FILE_TYPES[method][1]
    params.nthread = threads or os.cpu_count() or 1
    from llama_cpp._utils import suppress_stdout_stderr

    with suppress_stdout_stderr(disable=False):  # per-tensor lines; the file's tensor types are recorded instead
        rc = llama_cpp.llama_model_quantize(str(src).encode(), str(dst).encode(), ctypes.byref(params))
    if rc != 0 or not dst.is_file():
        raise SmolforgeError(f"llama.cpp could not quantize {src.name} to {FILE_TYPES[method][0]} "
                             f"(llama_model_quantize returned {rc}). The log is in the run's logs/quantize.log.")
