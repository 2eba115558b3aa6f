"""SFT on each data kind, DPO, and LoRA (adapter and merged) on tiny models, through smolforge's pipeline.

The runs go through `pipeline.execute` in this process (the same call `smolforge run` makes after
parsing its flags) so the libraries are imported once; test_presets_run.py drives the real CLI.
LoRA and DPO start from the conversational SFT run: a randomly initialised (or barely trained)
base leaves LoRA almost nothing to adapt, and DPO needs a model that already ranks answers.
"""

from __future__ import annotations

import io
import json
import math
from pathlib import Path

import pytest

from smolforge.config import DataSection
from smolforge.config.loading import load_config
from smolforge.data import prepare, token_length
from tests.conftest import FAST_TINY
from tests.datafiles import chats, preference_rows, prompt_completion_rows, text_rows, write_rows

pytestmark = pytest.mark.slow

STEPS = ["training.logging_steps=4", "training.save_steps=1000", "training.eval_steps=12",
         "training.lr_scheduler=constant_with_warmup", "training.warmup_ratio=0.05"]
BAD_ROWS = [{"messages": [{"role": "user", "content": "Unanswered?"}]}] * 3  # dropped: no assistant turn


def run_pipeline(out: Path, *sets: str) -> Path:
    """Train through smolforge's pipeline (no tracking, no prompts); return the run folder."""
    from rich.console import Console

    from smolforge.config.loading import load_config
    from smolforge.pipeline import RunOptions, execute

    cfg = load_config(preset="tiny", sets=[*FAST_TINY[1::2], "tracking.backend=none", f"output_dir={out}",
                                           f"experiment_name={out.name}", *STEPS, *sets])
    return execute(cfg, RunOptions(yes=True), Console(file=io.StringIO()), confirm=lambda rows: True).root


def results(run: Path) -> dict:
    return json.loads((run / "results.json").read_text())


def logged(run: Path, key: str = "loss") -> list[float]:
    return [h[key] for h in results(run)["log_history"] if key in h and "train_loss" not in h]


def weights(path: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(path)


def assert_loss_went_down(run: Path, factor: float) -> tuple[float, float]:
    losses = logged(run)
    first, last = sum(losses[:2]) / 2, sum(losses[-2:]) / 2
    print(f"\n{run.parent.name}: loss {losses[0]:.4f} -> {losses[-1]:.4f} (first two {first:.4f}, last two {last:.4f})")
    assert all(math.isfinite(x) for x in losses)
    assert last < factor * first, losses
    return first, last


def initial_tiny() -> Path:
    from smolforge.config.loading import load_config
    from smolforge.tiny import ensure_tiny

    return ensure_tiny(load_config(preset="tiny", sets=FAST_TINY[1::2]).model.tiny)


def eval_batch(model_dir: Path, n: int = 8):
    """A padded batch of bundled chats, tokenised with the run's own tokenizer and chat template."""
    import torch
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    enc = [tok.apply_chat_template(c["messages"], tokenize=True, return_dict=True, enable_thinking=False)["input_ids"]
           for c in chats(n)]
    ids = torch.full((len(enc), max(map(len, enc))), tok.pad_token_id)
    mask = torch.zeros_like(ids)
    for i, e in enumerate(enc):
        ids[i, : len(e)], mask[i, : len(e)] = torch.tensor(e), 1
    return {"input_ids": ids, "attention_mask": mask}


# ---------------------------------------------------------------- SFT, one run per data kind

@pytest.fixture(scope="module")
def sft_chat(tmp_path_factory) -> Path:
    """Conversations (with rows to drop), trained long enough to serve as the LoRA and DPO base."""
    d = tmp_path_factory.mktemp("sft-chat")
    data = write_rows(d / "chats.jsonl", [{"messages": c["messages"]} for c in chats(400)] + BAD_ROWS)
    return run_pipeline(d / "run", f"data.name={data}", "training.max_steps=80")


@pytest.fixture(scope="module")
def sft_pc(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("sft-pc")
    data = write_rows(d / "pc.csv", prompt_completion_rows(300))
    return run_pipeline(d / "run", f"data.name={data}", "training.max_steps=24")


@pytest.fixture(scope="module")
def sft_text(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("sft-text")
    data = write_rows(d / "text.parquet", text_rows(300))
    return run_pipeline(d / "run", f"data.name={data}", "training.max_steps=24")


@pytest.mark.parametrize(("fixture", "fmt", "loss_on"), [
    ("sft_chat", "messages", "assistant"), ("sft_pc", "prompt_completion", "completion"), ("sft_text", "text", "all"),
])
def test_sft_on_each_data_kind_lowers_the_loss_and_changes_every_weight(request, fixture, fmt, loss_on):
    run = request.getfixturevalue(fixture)
    r = results(run)
    assert (r["method"], r["finetune"], r["dataset"]["format"], r["loss_on"]) == ("sft", "full", fmt, loss_on)
    assert_loss_went_down(run, 0.9)
    before, after = weights(initial_tiny() / "model.safetensors"), weights(run / "model" / "model.safetensors")
    assert before.keys() == after.keys()
    assert [k for k in before if (before[k] == after[k]).all()] == []
    assert math.isfinite(r["eval_loss"]) and r["perplexity"] == pytest.approx(math.exp(r["eval_loss"]))
    tokens = r["tokens"]
    if loss_on == "all":  # every token but the first of each sequence is a target
        assert tokens["supervised"] >= tokens["real"] - 24 * 8
    else:  # prompts (and system/user turns) carry no loss
        assert tokens["supervised"] < 0.8 * tokens["real"]


def test_results_and_card_report_the_dataset_numbers(sft_chat):
    """rows read, dropped (+ reasons), train/eval sizes and token-length stats, in results.json and the card."""
    from transformers import AutoTokenizer

    d = results(sft_chat)["dataset"]
    assert (d["rows_read"], d["rows_dropped"], d["drop_reasons"]) == (403, 3, {"no non-empty assistant turn": 3})
    assert (d["train_size"], d["eval_size"]) == (360, 40)
    assert d["eval_source"] == "10% of `train` held out with seed 42"
    # token lengths, measured independently with the run's tokenizer on the 400 valid chats
    tok = AutoTokenizer.from_pretrained(sft_chat / "model")
    lengths = sorted(len(tok.apply_chat_template(c["messages"], tokenize=True, return_dict=True,
                                                 enable_thinking=False)["input_ids"]) for c in chats(400))
    train, evals = d["train_token_lengths"], d["eval_token_lengths"]
    assert train["total"] + evals["total"] == sum(lengths)
    assert min(train["min"], evals["min"]) == lengths[0] and max(train["max"], evals["max"]) == lengths[-1]
    again = prepare(DataSection(name=d["name"]))
    train_lengths = sorted(token_length(r, tok, "conversational") for r in again.train)
    assert (train["p50"], train["p90"], train["mean"]) == (
        train_lengths[round(0.5 * 359)], train_lengths[round(0.9 * 359)], round(sum(train_lengths) / 360, 1))

    card = (sft_chat / "model" / "README.md").read_text()
    assert "| **Rows read** | 403 from split `train`; 3 dropped (no non-empty assistant turn: 3) |" in card
    assert "| **Rows used** | 360 training, 40 evaluation |" in card
    cut = d.get("train_truncated_rows")
    limit = load_config(sft_chat / "config.yaml").training.max_length
    truncated = f" ({cut} row{'s' if cut != 1 else ''} truncated to {limit} tokens)" if cut else ""
    assert f"| **Tokens per training row** | median {train['p50']}, 90th percentile {train['p90']}, " \
           f"max {train['max']}{truncated} |" in card
    assert "| **Format** | messages |" in card


# ---------------------------------------------------------------- DPO

def _dpo_run(sft_chat: Path, out: Path, *sets: str) -> Path:
    short = [p for p in preference_rows() if len(p["chosen"]) < 60 and len(p["rejected"]) < 60][:40]
    data = write_rows(out.parent / "pairs.jsonl", short)
    return run_pipeline(out, f"model.name_or_path={sft_chat / 'model'}", "training.method=dpo",
                        f"data.name={data}", "data.eval_ratio=0.2", "training.max_steps=24",
                        "training.learning_rate=5e-4", "training.dpo.beta=0.1", *sets)


@pytest.fixture(scope="module")
def dpo_run(sft_chat, tmp_path_factory) -> Path:
    return _dpo_run(sft_chat, tmp_path_factory.mktemp("dpo") / "run")


def test_dpo_learns_the_preferences_and_changes_the_weights(dpo_run, sft_chat):
    r = results(dpo_run)
    assert (r["method"], r["finetune"], r["global_steps"]) == ("dpo", "full", 24)
    assert logged(dpo_run)[0] == pytest.approx(math.log(2), abs=1e-3)  # policy == reference at step 1
    assert_loss_went_down(dpo_run, 0.9)
    accuracies, margins = logged(dpo_run, "rewards/accuracies"), logged(dpo_run, "rewards/margins")
    print(f"reward accuracy {accuracies[0]:.2f} -> {accuracies[-1]:.2f}, margin {margins[0]:.3f} -> {margins[-1]:.3f}")
    assert accuracies[-1] > 0.6 and margins[-1] > margins[0]
    before, after = weights(sft_chat / "model" / "model.safetensors"), weights(dpo_run / "model" / "model.safetensors")
    assert [k for k in before if not (before[k] == after[k]).all()]
    # the DPO loss is not a token cross-entropy: no perplexity is derived from it
    assert "perplexity" not in r and math.isfinite(r["eval_loss"])
    # smolforge's token accounting agrees with TRL's own count of the (chosen + rejected) tokens it trained on
    assert r["tokens"]["real"] == logged(dpo_run, "num_tokens")[-1]
    assert 0 < r["tokens"]["supervised"] < r["tokens"]["real"] < r["tokens"]["processed"]  # prompts; padding
    card = (dpo_run / "model" / "README.md").read_text()
    assert "| Method | DPO (beta 0.1, sigmoid loss); all weights trained |" in card and "Perplexity" not in card
    assert f"| Validation DPO loss | {r['eval_loss']:.4f} |" in card
    assert f"| Validation reward accuracy | {100 * r['eval_log']['eval_rewards/accuracies']:.2f}% |" in card


# ---------------------------------------------------------------- LoRA

def _lora_run(sft_chat: Path, out: Path, merge: bool, finetune: str = "lora") -> Path:
    data = write_rows(out.parent / "few.jsonl", [c for c in chats() if len(c["messages"]) == 2][:40])
    return run_pipeline(out, f"model.name_or_path={sft_chat / 'model'}", f"training.finetune={finetune}",
                        f"training.lora.merge={str(merge).lower()}", "training.lora.r=8", "training.lora.alpha=16",
                        f"data.name={data}", "data.eval_ratio=0.2", "training.max_steps=24",
                        "training.learning_rate=5e-3")


@pytest.fixture(scope="module")
def lora_adapter(sft_chat, tmp_path_factory) -> Path:
    return _lora_run(sft_chat, tmp_path_factory.mktemp("lora") / "run", merge=False)


@pytest.fixture(scope="module")
def lora_merged(sft_chat, tmp_path_factory) -> Path:
    return _lora_run(sft_chat, tmp_path_factory.mktemp("lora-merged") / "run", merge=True)


def test_lora_saves_an_adapter_that_peft_loads(lora_adapter, sft_chat):
    import torch
    from peft import AutoPeftModelForCausalLM
    from transformers import AutoModelForCausalLM

    r = results(lora_adapter)
    assert (r["method"], r["finetune"]) == ("sft", "lora")
    assert 0 < r["parameters"]["trainable"] < r["parameters"]["total"] / 5
    assert_loss_went_down(lora_adapter, 0.9)
    files = {p.name for p in (lora_adapter / "model").iterdir()}
    assert {"adapter_config.json", "adapter_model.safetensors", "tokenizer.json", "chat_template.jinja"} <= files
    assert "model.safetensors" not in files
    config = json.loads((lora_adapter / "model" / "adapter_config.json").read_text())
    assert (config["r"], config["lora_alpha"], config["base_model_name_or_path"]) == (8, 16, str(sft_chat / "model"))
    adapter = weights(lora_adapter / "model" / "adapter_model.safetensors")
    assert adapter and all(".lora_" in k for k in adapter)
    assert all(v.abs().sum() > 0 for k, v in adapter.items() if "lora_B" in k)  # B starts at zero: it trained

    batch = eval_batch(lora_adapter / "model")
    with torch.no_grad():
        tuned = AutoPeftModelForCausalLM.from_pretrained(lora_adapter / "model")(**batch).logits
        base = AutoModelForCausalLM.from_pretrained(sft_chat / "model")(**batch).logits
    assert not torch.allclose(tuned, base, atol=1e-4)
    card = (lora_adapter / "model" / "README.md").read_text()
    assert "library_name: peft" in card and "| LoRA | r=8, alpha=16," in card and "AutoPeftModelForCausalLM" in card


def test_adapter_card_snippets_run(lora_adapter):
    from tests.integration.test_card_snippets import check_card_snippets

    check_card_snippets(lora_adapter)


def test_published_files_hold_no_absolute_path(lora_adapter, tmp_path):
    """A run on local data with a local base: every exported file names them by file name, never by path (the
    dataset, the command line), while the run folder keeps its full paths. The adapter's base must be one a reader
    can download: refused while the base run is unpublished, named by its repo id once it is."""
    from smolforge.config.loading import load_config
    from smolforge.runfolder import RunFolder
    from tests.conftest import run_cli

    dest = tmp_path / "export"
    refused = run_cli("publish", str(lora_adapter), "--export", str(dest), "--repo-id", "someone/adapter",
                      cwd=lora_adapter.parent, check=False)
    assert refused.returncode == 2 and "is not on the Hub, so nobody who downloads the adapter" in refused.stderr
    assert not dest.exists()
    base = RunFolder(Path(load_config(lora_adapter / "config.yaml").model.name_or_path).parent)
    record = base.results_path.read_text()
    try:
        base.update_results(publish={"repo_id": "someone/chat-base"})  # as `smolforge publish` records it
        run_cli("publish", str(lora_adapter), "--export", str(dest), "--repo-id", "someone/adapter",
                cwd=lora_adapter.parent)
    finally:
        base.results_path.write_text(record)  # the base run is shared with other tests
    local = [str(lora_adapter.parent.parent), str(Path.home()), "/tmp/"]
    assert any(local[0] in p.read_text(errors="ignore") for p in lora_adapter.rglob("*.json"))  # kept locally
    checked = 0
    for path in dest.rglob("*"):
        if path.is_file() and path.suffix != ".safetensors":
            text = path.read_bytes().decode("utf-8", errors="ignore")
            found = [d for d in local if d in text]
            assert not found, f"{path.relative_to(dest)} holds {found}"
            checked += 1
    assert checked >= 6
    config = json.loads((dest / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == "someone/chat-base"  # what PEFT's loader downloads
    assert "few.jsonl" in (dest / "config.yaml").read_text() and "few.jsonl" in (dest / "README.md").read_text()


def assert_merged_equals_adapter(merged, adapter_run: Path):
    """`merged` holds the weights PEFT gets by merging `adapter_run`'s adapter into its (full-precision) base;
    returns that reference model."""
    from peft import AutoPeftModelForCausalLM

    reference = AutoPeftModelForCausalLM.from_pretrained(adapter_run / "model").merge_and_unload()
    ref_state, state = reference.state_dict(), merged.state_dict()
    assert ref_state.keys() == state.keys()
    assert max((ref_state[k] - state[k]).abs().max().item() for k in state) < 1e-6
    return reference


def assert_merged_card(run: Path, method: str) -> None:
    """A merged run's card presents full transformers weights made with `method`."""
    card = (run / "model" / "README.md").read_text()
    assert "library_name: transformers" in card and f"| Method | SFT; {method}, merged into the weights |" in card


def _dpo_adapter_run(sft_chat: Path, out: Path, finetune: str, *sets: str) -> tuple[Path, dict]:
    """DPO with adapters (lora or qlora): TRL's reference is the base with the adapter switched off, so the first
    loss is ln 2 (a zero-initialised adapter equals the reference), and model/ holds only the adapter."""
    run = _dpo_run(sft_chat, out, f"training.finetune={finetune}", "training.learning_rate=5e-3", *sets)
    r = results(run)
    assert (r["method"], r["finetune"]) == ("dpo", finetune)
    assert logged(run)[0] == pytest.approx(math.log(2), abs=1e-3)
    files = {p.name for p in (run / "model").iterdir()}
    assert "adapter_model.safetensors" in files and "model.safetensors" not in files
    return run, r


def test_lora_merge_writes_full_weights_equal_to_base_plus_adapter(lora_merged, lora_adapter):
    """Same seed, same data: the merged run's weights are the adapter run's adapter merged into its base."""
    import torch
    from transformers import AutoModelForCausalLM

    files = {p.name for p in (lora_merged / "model").iterdir()}
    assert {"model.safetensors", "config.json"} <= files and "adapter_config.json" not in files
    merged = AutoModelForCausalLM.from_pretrained(lora_merged / "model")
    assert merged.config._attn_implementation == "sdpa"
    assert not any("lora" in k for k in merged.state_dict())
    assert logged(lora_merged) == logged(lora_adapter)  # the same training

    reference = assert_merged_equals_adapter(merged, lora_adapter)
    batch = eval_batch(lora_merged / "model")
    with torch.no_grad():
        assert torch.allclose(merged(**batch).logits, reference(**batch).logits, atol=1e-5)
    assert_merged_card(lora_merged, "LoRA")


def test_dpo_with_lora_uses_the_base_as_reference_and_saves_an_adapter(sft_chat, tmp_path):
    """With LoRA, TRL's reference model is the base with the adapter switched off (no second copy)."""
    run, _ = _dpo_adapter_run(sft_chat, tmp_path / "run", "lora",
                              "training.lora.target_modules=[q_proj, v_proj, up_proj, down_proj]")
    assert_loss_went_down(run, 0.9)
    assert logged(run, "rewards/accuracies")[-1] > 0.6
    config = json.loads((run / "model" / "adapter_config.json").read_text())
    assert sorted(config["target_modules"]) == ["down_proj", "q_proj", "up_proj", "v_proj"]
    assert {k.split(".")[-3] for k in weights(run / "model" / "adapter_model.safetensors")} == {
        "q_proj", "v_proj", "up_proj", "down_proj"}


# ---------------------------------------------------------------- QLoRA: the same LoRA runs over a 4-bit base

@pytest.fixture(scope="module")
def qlora_adapter(sft_chat, tmp_path_factory) -> Path:
    return _lora_run(sft_chat, tmp_path_factory.mktemp("qlora") / "run", merge=False, finetune="qlora")


@pytest.fixture(scope="module")
def qlora_merged(sft_chat, tmp_path_factory) -> Path:
    return _lora_run(sft_chat, tmp_path_factory.mktemp("qlora-merged") / "run", merge=True, finetune="qlora")


def test_qlora_trains_an_adapter_over_a_4bit_base(qlora_adapter, lora_adapter, sft_chat):
    import torch
    from peft import AutoPeftModelForCausalLM
    from transformers import AutoModelForCausalLM

    r, lora = results(qlora_adapter), results(lora_adapter)
    assert (r["method"], r["finetune"]) == ("sft", "qlora")
    base = AutoModelForCausalLM.from_pretrained(sft_chat / "model")
    layers = [m for name, m in base.named_modules() if isinstance(m, torch.nn.Linear) and name != "lm_head"]
    linear = sum(m.weight.numel() for m in layers)  # transformers keeps the output head unquantized
    other = sum(p.numel() for p in base.parameters()) - linear
    fb = r["four_bit_base"]
    assert (fb["quant_type"], fb["double_quant"], fb["compute_dtype"]) == ("nf4", True, "float32")
    assert fb["four_bit_parameters"] == linear
    # half a byte per 4-bit weight, its scales (under 0.02 byte per weight with double quantization) and each
    # layer's fixed tables (the 16 NF4 levels and the 256 levels of the scales' own 8-bit code: ~1.2 KB)
    assert linear / 2 + other * 4 < fb["base_bytes"] < linear * 0.52 + other * 4 + 1536 * len(layers)
    # counts are of the model as defined, not of bitsandbytes' packed bytes; the same adapter as LoRA's
    assert r["parameters"] == lora["parameters"] == {"total": base.num_parameters(),
                                                      "trainable": lora["parameters"]["trainable"]}
    # the step-0 evaluation is the 4-bit base: close to the full-precision base LoRA started from, not equal
    assert r["baseline_eval_loss"] != lora["baseline_eval_loss"]
    assert r["baseline_eval_loss"] == pytest.approx(lora["baseline_eval_loss"], rel=0.05)
    assert_loss_went_down(qlora_adapter, 0.9)

    adapter = weights(qlora_adapter / "model" / "adapter_model.safetensors")
    assert {v.dtype for v in adapter.values()} == {torch.float32}  # the run's dtype, not TRL's bf16 default
    assert all(v.abs().sum() > 0 for k, v in adapter.items() if "lora_B" in k)
    batch = eval_batch(qlora_adapter / "model")
    with torch.no_grad():  # the adapter loads onto the base's own full-precision weights, as the card says
        tuned = AutoPeftModelForCausalLM.from_pretrained(qlora_adapter / "model")(**batch).logits
        assert not torch.allclose(tuned, base(**batch).logits, atol=1e-4)
    card = (qlora_adapter / "model" / "README.md").read_text()
    assert "- qlora" in card and "| Method | SFT; QLoRA adapter |" in card and "dettmers2023qlora" in card
    assert f"| Base during training | 4-bit NF4 with double quantization (bitsandbytes {fb['version']}): " \
           f"{linear:,} weights in 4-bit" in card
    assert "the validation losses on this card were measured during training, with the base held in 4-bit" in card


def test_qlora_merges_into_the_full_precision_base(qlora_merged, qlora_adapter):
    """Same seed and data as the adapter run: its merged weights are that adapter merged into the base's own
    fp32 weights (not into 4-bit weights rounded again), saved without any quantization config."""
    from transformers import AutoModelForCausalLM

    assert logged(qlora_merged) == logged(qlora_adapter)
    config = json.loads((qlora_merged / "model" / "config.json").read_text())
    assert "quantization_config" not in config and config["dtype"] == "float32"
    assert_merged_equals_adapter(AutoModelForCausalLM.from_pretrained(qlora_merged / "model"), qlora_adapter)
    assert_merged_card(qlora_merged, "QLoRA")


def test_dpo_with_qlora_uses_the_4bit_base_as_reference(sft_chat, tmp_path):
    _, r = _dpo_adapter_run(sft_chat, tmp_path / "run", "qlora", "training.max_steps=12")
    assert r["four_bit_base"]["quant_type"] == "nf4"


def test_a_lora_target_module_that_matches_no_layer_is_an_error():
    """PEFT accepts a list where only some names match; smolforge refuses the typo."""
    from smolforge.config import TinySpec
    from smolforge.errors import SmolforgeError
    from smolforge.tiny import build_model, build_tokenizer
    from smolforge.trainers import check_lora_targets

    model = build_model(TinySpec(hidden_size=32, intermediate_size=64, num_layers=1, num_heads=2, num_kv_heads=1,
                                 vocab_size=512), build_tokenizer(512))
    check_lora_targets(model, ["q_proj", "model.layers.0.mlp.down_proj"])
    check_lora_targets(model, "all-linear")
    with pytest.raises(SmolforgeError) as e:
        check_lora_targets(model, ["q_prj", "v_proj", "dense"])
    assert str(e.value) == (
        "training.lora.target_modules: 'q_prj', 'dense' matches no linear layer of the model. Its linear layers "
        "are: down_proj, gate_proj, k_proj, lm_head, o_proj, q_proj, up_proj, v_proj. Use those names, or all-linear.")
