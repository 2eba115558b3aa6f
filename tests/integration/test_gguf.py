"""GGUF export through the real CLI: llama.cpp's converter and quantizer, every file verified, the gate, the repo.

The run trains the FAST_TINY model with an MLP width of 256 (so the down projection is a multiple of
llama.cpp's 256-weight super-blocks and Q4_K_M really stores Q4_K and Q6_K tensors) long enough that the
model is sharp and 4-bit quantization costs it measurable quality.
"""

from __future__ import annotations

import json
import math
import re
import shutil
from pathlib import Path

import pytest
import yaml

from smolforge.card.facts import signed_percent
from tests.conftest import FAST_TINY, run_cli

pytestmark = pytest.mark.slow
METHODS = ("gguf-f16", "gguf-q8_0", "gguf-q4_k_m")
TRAIN = ["--set", "model.tiny.intermediate_size=256", "--set", "training.max_steps=150",
         "--set", "training.eval_steps=50", "--set", "training.save_steps=150", "--set", "training.logging_steps=25",
         "--set", "training.learning_rate=3e-3", "--set", "tracking.backend=none"]


def _results(run: Path) -> dict:
    return json.loads((run / "results.json").read_text())


@pytest.fixture(scope="module")
def gguf_run(tmp_path_factory) -> Path:
    work = tmp_path_factory.mktemp("gguf-run")
    run_cli("run", "--preset", "tiny", "--yes", "--experiment-name", "gg", *FAST_TINY, *TRAIN, cwd=work)
    run = work / "runs" / "gg"
    args = [a for m in METHODS for a in ("--method", m)]
    proc = run_cli("quantize", str(run), *args, cwd=work)
    (work / "quantize.txt").write_text(proc.stdout + proc.stderr)
    return run


@pytest.fixture
def gguf_copy(gguf_run, tmp_path) -> Path:
    dest = tmp_path / "gg"
    shutil.copytree(gguf_run, dest, ignore=shutil.ignore_patterns("checkpoints"))
    return dest


def test_every_file_is_written_and_passes_every_check(gguf_run):
    results = _results(gguf_run)
    for m in METHODS:
        e = results["quantized"][m]
        folder = gguf_run / e["path"]
        assert sorted(p.name for p in folder.iterdir()) == sorted([e["file"], "Modelfile", "verification.json"])
        assert e["file"] == f"gg-{e['file_type']}.gguf" and e["size_bytes"] == (folder / e["file"]).stat().st_size
        assert e["verified"] is True and e["failed_checks"] == [], (m, e["failed_checks"])
        checks = json.loads((folder / "verification.json").read_text())
        for name in ("structure", "tensors", "template", "tokenizer", "special_tokens"):
            assert checks[name]["passed"] is True, (m, name, checks[name])
        assert checks["structure"]["architecture"] == "smollm3"
        assert checks["structure"]["tensors"] == checks["structure"]["model_tensors"] == 2 + 2 * 9  # tied output
        assert checks["template"]["renderings"] >= 2 * 5 and checks["template"]["modes"] == ["think", "no_think"]
        assert checks["special_tokens"]["llama_cpp"]["end_of_turn_id"] == e["special_tokens"]["end_of_turn_id"]
        assert e["special_tokens"]["end_of_turn"] == "<|im_end|>" and checks["special_tokens"]["llama_cpp"][
            "adds_bos"] is False
        loss = checks["loss"]
        assert loss["rows"] == e["scored_rows"] == min(64, results["dataset"]["eval_size"])
        assert e["quality_drop"] == pytest.approx(math.exp(loss["loss_llama_cpp"] - loss["loss_transformers"]) - 1)
    q = results["quantized"]
    # f16 is the reference: same loss as transformers to f16 rounding, identical greedy generations
    assert abs(q["gguf-f16"]["quality_drop"]) < 1e-3
    greedy = json.loads((gguf_run / q["gguf-f16"]["path"] / "verification.json").read_text())["greedy"]
    assert greedy["passed"] and greedy["prompts"] == 4 and q["gguf-f16"]["greedy_identical"] == \
        f"{greedy['identical']}/4"
    # the storage types are the ones asked for, and 4 bits cost a trained model more than 8 bits
    assert set(q["gguf-f16"]["tensor_types"]) == {"F16", "F32"}
    assert set(q["gguf-q8_0"]["tensor_types"]) == {"Q8_0", "F32"}
    assert {"Q4_K", "Q6_K"} <= set(q["gguf-q4_k_m"]["tensor_types"])
    assert q["gguf-q4_k_m"]["size_bytes"] < q["gguf-q8_0"]["size_bytes"] < q["gguf-f16"]["size_bytes"]
    assert 0 < q["gguf-q4_k_m"]["quality_drop"] and abs(q["gguf-q8_0"]["quality_drop"]) < q["gguf-q4_k_m"][
        "quality_drop"]


def test_the_file_reads_back_with_the_trained_tokens_and_weights(gguf_run):
    """Independent of smolforge's checks: gguf-py and llama.cpp read the file; the numbers recorded are real."""
    import gguf
    import numpy as np
    from gguf.quants import dequantize
    from llama_cpp import Llama
    from safetensors.numpy import load_file
    from transformers import AutoTokenizer

    e = _results(gguf_run)["quantized"]["gguf-q8_0"]
    path = gguf_run / e["path"] / e["file"]
    reader = gguf.GGUFReader(str(path))
    tok = AutoTokenizer.from_pretrained(gguf_run / "model")
    template = reader.fields["tokenizer.chat_template"].contents()
    assert not re.search(r"\{%-?\s*(end)?generation", template) and "Reasoning Mode" in template
    assert reader.fields["tokenizer.ggml.eot_token_id"].contents() == tok.convert_tokens_to_ids("<|im_end|>")
    assert reader.fields["tokenizer.ggml.eos_token_id"].contents() == tok.eos_token_id
    emb = next(t for t in reader.tensors if t.name == "token_embd.weight")
    want = load_file(str(gguf_run / "model" / "model.safetensors"))["model.embed_tokens.weight"]
    err = np.abs(dequantize(emb.data, emb.tensor_type) - want)
    row = next(r for r in json.loads((path.parent / "verification.json").read_text())["tensors"]["per_tensor"]
               if r["tensor"] == "token_embd.weight")
    assert row["type"] == "Q8_0" and row["max_error"] == pytest.approx(float(err.max()), rel=1e-6)
    assert 0 < err.max() <= np.abs(want).max() / 127  # a Q8_0 step

    llm = Llama(model_path=str(path), n_ctx=512, verbose=False)
    chat = [{"role": "system", "content": "/no_think"}, {"role": "user", "content": "Tell me about <think> tags."}]
    text = tok.apply_chat_template(chat, tokenize=False, add_generation_prompt=True)
    assert llm.tokenize(text.encode(), add_bos=False, special=True) == tok(text, add_special_tokens=False)["input_ids"]
    llm.close()


def test_modelfile_has_the_chat_format_stops_and_context(gguf_run):
    e = _results(gguf_run)["quantized"]["gguf-q4_k_m"]
    text = (gguf_run / e["path"] / "Modelfile").read_text()
    assert f"FROM ./{e['file']}\n" in text
    assert 'PARAMETER stop "<|im_end|>"' in text and "PARAMETER num_ctx 512" in text
    assert 'Reasoning Mode: {{ $mode }}' in text and "<think>\n\n</think>" in text
    # trained only in /no_think (the tiny data has no reasoning traces): that is the mode unless Ollama's think is set
    assert '{{- $mode := "/no_think" }}' in text and "{{- if .IsThinkSet }}" in text


def test_card_rows_and_the_gguf_repo_come_from_the_results(gguf_copy, tmp_path):
    from huggingface_hub import ModelCard

    results = _results(gguf_copy)
    card = ModelCard.load(gguf_copy / "model" / "README.md").text
    for m in METHODS:
        e = results["quantized"][m]
        row = next(line for line in card.splitlines() if line.startswith(f"| `{e['file']}` |"))
        assert f"| {signed_percent(e['quality_drop'])} | all passed |" in row  # a drop rounding to 0 is +0.00%
    assert "| int8 |" not in card  # GGUF files are not torchao variants

    dest = tmp_path / "export"
    proc = run_cli("publish", str(gguf_copy), "--export", str(dest), "--repo-id", "ada/gg", cwd=tmp_path)
    repo = tmp_path / "export-GGUF"
    assert f"Exported {repo}" in proc.stdout
    files = {p.relative_to(repo).as_posix() for p in repo.rglob("*") if p.is_file()}
    assert files == {"README.md", *(results["quantized"][m]["file"] for m in METHODS),
                     *(f"Modelfile.{results['quantized'][m]['file_type']}" for m in METHODS),
                     *(f"verification/{results['quantized'][m]['file_type']}.json" for m in METHODS)}
    assert not any(p.suffix == ".gguf" for p in dest.rglob("*"))  # the model repo has none
    gcard = ModelCard.load(repo / "README.md")
    assert gcard.data.base_model == "ada/gg" and gcard.data.base_model_relation == "quantized"
    assert gcard.data.library_name == "gguf" and "gguf" in gcard.data.tags
    q4 = results["quantized"]["gguf-q4_k_m"]
    line = next(x for x in gcard.text.splitlines() if x.startswith(f"| [`{q4['file']}`]"))
    assert f"| {q4['size_bytes'] / 1000:.2f} KB | {q4['memory_bytes'] / 1000:.2f} KB | " \
           f"{100 * q4['quality_drop']:+.2f}% |" in line and "**Recommended.**" in line
    for command in ("llama-cli -hf ada/gg-GGUF:Q4_K_M --jinja -sys /no_think", "ollama run hf.co/ada/gg-GGUF:Q4_K_M",
                    "ollama create gg-gguf -f Modelfile.Q4_K_M", "lms get ada/gg-GGUF"):
        assert command in gcard.text
    assert f"FROM ./{q4['file']}" in gcard.text
    # the run trained only /no_think rows: the card says so, shows the prompt in that mode, and the Modelfile
    # defaults to it; its metadata lists nothing measured on the full-precision model
    assert "This model was trained only in `/no_think` mode" in gcard.text
    assert "## Prompt format" in gcard.text and "Reasoning Mode: /no_think" in gcard.text.split("## llama.cpp")[0]
    assert '{{- $mode := "/no_think" }}' in (repo / "Modelfile.Q4_K_M").read_text()
    assert not gcard.data.eval_results


def test_a_file_above_the_gate_is_kept_but_not_published_unless_forced(gguf_copy, tmp_path):
    drop = _results(gguf_copy)["quantized"]["gguf-q4_k_m"]["quality_drop"]
    assert drop > 0
    config = yaml.safe_load((gguf_copy / "config.yaml").read_text())
    config["quantize"]["max_quality_drop"] = drop / 2  # a stricter run: Q4_K_M's measured drop is above it
    (gguf_copy / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    proc = run_cli("quantize", str(gguf_copy), "--method", "gguf-q4_k_m", cwd=tmp_path)
    assert "kept, not published without --force" in proc.stdout
    e = _results(gguf_copy)["quantized"]["gguf-q4_k_m"]
    assert (e["gate"], e["publishable"], e["verified"]) == ("failed", False, True)
    assert (gguf_copy / e["path"] / e["file"]).is_file()  # kept locally

    proc = run_cli("publish", str(gguf_copy), "--export", str(tmp_path / "a"), "--repo-id", "ada/gg", cwd=tmp_path)
    assert f"{e['file']} is not published (quality drop" in proc.stdout and "--force" in proc.stdout
    assert not (tmp_path / "a-GGUF" / e["file"]).exists() and (tmp_path / "a-GGUF" / "gg-Q8_0.gguf").is_file()
    run_cli("publish", str(gguf_copy), "--export", str(tmp_path / "b"), "--repo-id", "ada/gg", "--force",
            cwd=tmp_path)
    assert (tmp_path / "b-GGUF" / e["file"]).is_file()
    assert "(published with --force)" in (tmp_path / "b-GGUF" / "README.md").read_text()


def _byte_level_base(folder: Path) -> Path:
    """A SmolLM3 base whose tokenizer is a freshly trained byte-level BPE: llama.cpp's converter cannot identify
    its pre-tokenizer (only its config and tokenizer are needed: the check runs before any weight is read)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast, SmolLM3Config

    from smolforge.chat_templates import training_chat_template
    from smolforge.tiny import SPECIAL_TOKENS, _tokenizer_corpus

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(_tokenizer_corpus(), trainers.BpeTrainer(
        vocab_size=512, special_tokens=SPECIAL_TOKENS, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False))
    hf = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|pad|>")
    hf.chat_template = training_chat_template()
    hf.save_pretrained(folder)
    SmolLM3Config(vocab_size=512, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=2,
                  num_key_value_heads=1, bos_token_id=None, eos_token_id=hf.eos_token_id,
                  pad_token_id=hf.pad_token_id).save_pretrained(folder)
    return folder


def test_a_tokenizer_the_converter_rejects_fails_before_training(tmp_path):
    base = _byte_level_base(tmp_path / "bytebpe")
    proc = run_cli("run", "--preset", "tiny", "--yes", "--experiment-name", "rej", "--set",
                   f"model.name_or_path={base}", "--set", "card.license=mit", "--set", "quantize=[gguf-q8_0]",
                   "--set", "tracking.backend=none", cwd=tmp_path, check=False)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "does not know the tokenizer of" in proc.stderr and str(base) in proc.stderr
    assert "convert_hf_to_gguf_update.py" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "runs" / "rej").exists()  # nothing trained, nothing written


def test_a_lora_run_that_kept_only_the_adapter_is_exported_from_merged_weights(tmp_path):
    from tests.conftest import SHORT_RUN

    run_cli("run", "--preset", "tiny", "--yes", "--experiment-name", "lora", *FAST_TINY, *SHORT_RUN,
            "--set", "training.finetune=lora", "--set", "training.learning_rate=1e-2", "--set",
            "tracking.backend=none", cwd=tmp_path)
    run = tmp_path / "runs" / "lora"
    assert (run / "model" / "adapter_config.json").is_file() and not (run / "model" / "config.json").exists()
    run_cli("quantize", str(run), "--method", "gguf-q8_0", cwd=tmp_path)
    e = _results(run)["quantized"]["gguf-q8_0"]
    assert e["verified"] is True and e["reference"]["note"] == "base model with the LoRA adapter merged in"
    assert abs(e["quality_drop"]) < 0.01  # against the merged model, in transformers, on the same tokens
    assert not (run / "model" / "config.json").exists()  # the merge was temporary: model/ still holds the adapter
    assert sorted(p.name for p in (run / "quantized").iterdir()) == ["gguf-q8_0"]


def test_publish_pushes_the_gguf_repo_in_its_own_commit(gguf_copy):
    """Through the real huggingface_hub client against the loopback Hub server: the model repo and the GGUF repo,
    one commit each; the GGUF files go over LFS; results.json records both pushes."""
    from tests.hubserver import HubServer
    from tests.integration.test_publish import TOKEN, USER, hub_env, publish

    with HubServer(token=TOKEN, user=USER) as hub:
        proc = publish(gguf_copy, hub.url, "--repo-id", f"{USER}/gg", env=hub_env())
        assert "Published:" in proc.stdout
        results = _results(gguf_copy)
        main, gguf_repo = hub.repos[f"{USER}/gg"], hub.repos[f"{USER}/gg-GGUF"]
        assert len(main.commits) == 1 and len(gguf_repo.commits) == 1
        assert not any(f.endswith(".gguf") for f in main.files)
        for m in METHODS:
            e = results["quantized"][m]
            stored = gguf_repo.files[e["file"]]
            assert stored.lfs and stored.data == (gguf_copy / e["path"] / e["file"]).read_bytes()
            assert f"Modelfile.{e['file_type']}" in gguf_repo.files
        card = hub.file(f"{USER}/gg-GGUF", "README.md").decode()
        assert "base_model: alice/gg" in card and "base_model_relation: quantized" in card
        pushed = results["publish"]["quantized_repos"]["gguf"]
        assert pushed["repo_id"] == f"{USER}/gg-GGUF" and pushed["commit"]
        main_card = hub.file(f"{USER}/gg", "README.md").decode()
        assert f"[`{USER}/gg-GGUF`]({hub.url}/{USER}/gg-GGUF)" in main_card
