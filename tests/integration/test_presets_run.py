"""Every preset trains: 2 real steps through the `smolforge` CLI's main() (in-process, so torch and TRL
are imported once for all presets), with the model overridden to the tiny
SmolLM3 and the data to local fixture files whose split names match the preset's (`train`/`test`,
`train_prefs`/`test_prefs` for DPO). Everything else (method, LoRA, batch, accumulation, lr,
schedule, max length, checkpointing) is the preset's own.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from smolforge import presets
from smolforge.config.loading import load_config
from tests.conftest import FAST_TINY, run_main
from tests.datafiles import chats, preference_rows, write_rows

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def fixtures(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("preset-data")
    short = [{"messages": c["messages"]} for c in chats() if len(c["messages"]) == 2][:72]
    write_rows(root / "sft" / "train.jsonl", short[:64])
    write_rows(root / "sft" / "test.jsonl", short[64:])
    pairs = [p for p in preference_rows() if len(p["chosen"]) < 80][:72]
    write_rows(root / "dpo" / "train_prefs.jsonl", pairs[:64])
    write_rows(root / "dpo" / "test_prefs.jsonl", pairs[64:])
    questions = [{"question": f"What is {a} plus {b}?", "answer": f"{a} + {b} = {a + b}\n#### {a + b}"}
                 for a in range(2, 11) for b in range(2, 10)][:72]  # GSM8K's columns and answer form
    write_rows(root / "grpo" / "train.jsonl", questions[:64])
    write_rows(root / "grpo" / "test.jsonl", questions[64:])
    return {"sft": root / "sft", "dpo": root / "dpo", "grpo": root / "grpo"}


@pytest.mark.parametrize("name", presets.names())
def test_preset_runs_two_steps_on_the_tiny_model(name, fixtures, tmp_path):
    preset = load_config(preset=name)
    t = preset.training
    data = fixtures[t.method if t.method in ("dpo", "grpo") else "sft"]
    # GRPO samples its completions: a short cap keeps two steps quick (the rest is the preset's own)
    short = ["--set", "training.grpo.max_completion_length=8", "--set", "training.grpo.eval_prompts=2"] \
        if t.method == "grpo" else []
    code = run_main("run", "--preset", name, "--yes", "--experiment-name", "p", "--set", "model.name_or_path=tiny",
                    *FAST_TINY, "--set", f"model.tiny.max_position_embeddings={max(2048, t.max_length)}",
                    "--set", f"data.name={data}", "--set", "training.max_steps=2", *short,
                    "--set", "tracking.backend=none", "--license", "apache-2.0", cwd=tmp_path)
    assert code == 0
    run = tmp_path / "runs" / "p"
    results = json.loads((run / "results.json").read_text())
    assert results["global_steps"] == 2
    assert (results["method"], results["finetune"]) == (t.method, t.finetune)
    if t.method == "grpo":  # no loss to evaluate: the held-out prompts are sampled and scored before and after
        g = results["grpo"]
        assert [r["name"] for r in g["rewards"]] == t.grpo.rewards and g["num_generations"] == t.grpo.num_generations
        assert g["held_out"]["after"]["completions"] == 2 * t.grpo.num_generations
        assert g["mode"] == ("think" if preset.data.reasoning == "think" else "no_think")
    else:
        assert results["train_loss"] > 0 and results["eval_loss"] > 0

    cfg = yaml.safe_load((run / "config.yaml").read_text())
    trained = cfg["training"]
    assert cfg["preset"] == name
    assert (trained["batch_size"], trained["gradient_accumulation_steps"], trained["learning_rate"],
            trained["max_length"], trained["lr_scheduler"]) == (
        t.batch_size, t.gradient_accumulation_steps, t.learning_rate, t.max_length, t.lr_scheduler)
    assert trained["lora"] == t.lora.model_dump() and trained["dpo"] == t.dpo.model_dump()
    assert cfg["data"]["reasoning"] == preset.data.reasoning

    d = results["dataset"]
    # the fixture's held-out file is used as the eval split (tiny's eval_ratio is not needed then)
    assert d["eval_split_name"] == ("test_prefs" if t.method == "dpo" else "test")
    assert (d["train_size"], d["eval_size"], d["source"], d["config"]) == (64, 8, "local", None)
    assert results["tokens"]["supervised"] > 0

    files = {p.name for p in (run / "model").iterdir()}
    weights = "adapter_model.safetensors" if t.adapters and not t.lora.merge else "model.safetensors"
    assert {weights, "README.md", "tokenizer.json", "chat_template.jinja"} <= files
    card = (run / "model" / "README.md").read_text()
    assert f"| Preset | `{name}` |" in card
    if t.method == "dpo":  # the card names the preference loss the run used (SmolLM3's recipe: APO-zero)
        assert f"(beta {t.dpo.beta:g}, {t.dpo.loss_type} loss)" in card
        if t.dpo.loss_type == "apo_zero":
            assert "anchored preference optimisation (APO-zero, DPO's trainer with the apo_zero loss)" in card
    if t.method == "grpo" and all(c["frac_reward_zero_std"] == 1 for c in results["grpo"]["training_curve"]):
        # a random tiny model never answers right: every group scored the same, so GRPO had nothing to learn from
        assert "so GRPO had no differences to learn from" in card
    else:
        assert_weights_moved(run, t.adapters and not t.lora.merge)
    if t.four_bit_base:
        assert results["four_bit_base"]["quant_type"] == "nf4"


def assert_weights_moved(run: Path, adapter: bool) -> None:
    """Two real optimizer steps changed the weights (LoRA: B starts at zero; full: every tensor moved)."""
    from safetensors.torch import load_file

    from smolforge.config.loading import validate
    from smolforge.tiny import ensure_tiny

    if adapter:
        tensors = load_file(run / "model" / "adapter_model.safetensors")
        assert [k for k, v in tensors.items() if "lora_B" in k and not v.any()] == []
        return
    cfg = validate(yaml.safe_load((run / "config.yaml").read_text()), "config.yaml")
    before, after = load_file(ensure_tiny(cfg.model.tiny) / "model.safetensors"), load_file(run / "model" /
                                                                                            "model.safetensors")
    assert [k for k in before if (before[k] == after[k]).all()] == []
