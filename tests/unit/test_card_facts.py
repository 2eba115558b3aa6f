"""Card v2: every sentence follows the run's facts, the fixtures' numbers agree with each other, nothing local
or made-up reaches a published card."""

from __future__ import annotations

import math
import re

import pytest
from huggingface_hub import ModelCard

from smolforge.card import facts
from smolforge.card.plot import loss_points, write_loss_plot
from smolforge.card.render import render_card
from smolforge.localpaths import has_local_path, public_text
from tests.unit.test_card import FIXTURES, GOLDEN, card_text, cfg_of, make_run


def golden(name: str) -> str:
    return (FIXTURES / name / "expected_README.md").read_text(encoding="utf-8")


def with_results(run, **changes) -> str:
    results = {**run.read_results(), **changes}
    return str(render_card(run, cfg_of(run), results))


@pytest.mark.parametrize("name", GOLDEN)
def test_fixture_numbers_agree_with_each_other(tmp_path, name):
    """Steps x batch against rows and epochs, tokens against time, segments against totals, logged losses against
    the recorded finals: the goldens describe runs that could have happened."""
    r = make_run(tmp_path, name).read_results()
    cfg = cfg_of(make_run(tmp_path / "cfg", name))
    t, d = cfg.training, r["dataset"]
    steps_per_epoch = math.ceil(d["train_size"] / (t.batch_size * t.gradient_accumulation_steps * t.nproc))
    assert r["epochs"] == pytest.approx(r["global_steps"] / steps_per_epoch, abs=1e-9)
    assert r["global_steps"] == (t.max_steps if t.max_steps > 0 else round(t.epochs * steps_per_epoch))
    assert r["tokens_per_second"] == pytest.approx(r["tokens"]["supervised"] / r["train_runtime_s"], rel=0.01)
    segments = r["segments"]
    assert sum(s["runtime_s"] for s in segments) == pytest.approx(r["train_runtime_s"], rel=1e-6)
    for key in ("real", "supervised"):
        assert sum(s["tokens"][key] for s in segments) == r["tokens"][key]
    assert (segments[0]["from_step"], segments[-1]["to_step"]) == (0, r["global_steps"])
    logged = [h for h in r["log_history"] if "loss" in h]
    assert (logged[-1]["step"], logged[-1]["loss"]) == (r["final_train_loss_step"], r["final_train_loss"])
    assert r["eval_history"][-1]["eval_loss"] == r["eval_loss"] and r["eval_history"][0]["step"] == 0
    assert d["train_size"] + d["eval_size"] == d["rows_read"] - d["rows_dropped"]
    if r["method"] == "sft":  # perplexity is exp(token cross-entropy): an SFT run's, never DPO's preference loss
        assert r["perplexity"] == pytest.approx(math.exp(r["eval_loss"]))
    else:
        assert "perplexity" not in r


@pytest.mark.parametrize("name", GOLDEN)
def test_published_cards_hold_no_local_hint_or_path(name):
    text = golden(name)
    for hint in ("trackio show", "RUN_DIR", "--author-name", "smolforge dashboard", "not set", "path/to"):
        assert hint not in text, hint
    assert "/home/ada" not in text and not has_local_path(text)


def test_the_run_average_and_the_last_window_are_both_labelled(tmp_path):
    run = make_run(tmp_path, "tiny")
    r = run.read_results()
    window = facts.train_loss_window(r)
    assert (window["first_step"], window["last_step"]) == (21, 24)
    assert window["value"] == r["final_train_loss"]
    assert window["mean"] == pytest.approx(r["train_loss"], abs=1e-6)  # the trainer's own run average
    text = golden("tiny")
    assert f"| Training loss, last logged (steps 21–24) | {r['final_train_loss']:.4f} |" in text
    assert f"| Training loss, mean over steps 1–24 | {r['train_loss']:.4f} |" in text


def test_the_resumed_run_average_covers_both_segments(tmp_path):
    r = make_run(tmp_path, "resumed").read_results()
    window = facts.train_loss_window(r)
    assert window["mean_to_step"] == r["global_steps"] == 40
    text = golden("resumed")
    assert "over 2 sessions (the run was resumed at step" in text


def test_from_scratch_is_never_called_a_fine_tune_of_a_base(tmp_path):
    tiny, tuned = golden("tiny"), golden("smollm3_reasoning")
    assert "trained from random initial weights" in tiny
    assert "Trained from scratch (random initial weights, seed" in tiny
    limitations = tiny.split("## Bias, risks and limitations")[1].split("## Training details")[0]
    assert "base model" not in limitations and "trained from random weights" in limitations
    assert "fine-tuned version" not in tiny.lower() and "Before training" in tiny
    assert "inherits the limitations and biases of its base model" in tuned
    assert "Fine-tuned (all weights) from [`HuggingFaceTB/SmolLM3-3B`]" in tuned


def test_reasoning_sentences_follow_what_was_trained(tmp_path):
    assert "All 451 training conversations were in `/no_think` mode" in golden("tiny")
    assert "pass `enable_thinking=False`" in golden("tiny")
    assert "trained in both modes (220 conversations with a reasoning trace, 231 without)" in \
        golden("smollm3_reasoning")
    run = make_run(tmp_path, "tiny")
    r = run.read_results()
    think_only = {**r["model_files"], "trained_modes": {"think": 451}}
    assert "All 451 training conversations carried a reasoning trace" in with_results(run, model_files=think_only)
    no_switch = {**r["model_files"], "chat_template": {"has_template": True, "reasoning_switch": False,
                                                       "prompt_example": "<s>user: hi</s>"}}
    usage = with_results(run, model_files=no_switch).split("## How to use")[1].split("## Evaluation")[0]
    assert "Reasoning modes." not in usage and "enable_thinking" not in usage and "/no_think" not in usage
    assert "<s>user: hi</s>" in usage


def test_the_smolforge_template_is_shown_and_said_to_differ_from_the_base(tmp_path):
    tuned = golden("smollm3_reasoning")
    assert "it differs from the base's shipped template" in tuned
    assert "Reasoning Mode: /no_think" in tuned  # the raw prompt, as trained
    assert "differs from the base" not in golden("tiny")  # the tiny model has no other template


def test_determinism_is_claimed_only_for_single_process_cpu_runs():
    assert "reproduces these weights bit for bit" in golden("tiny")
    tuned = golden("smollm3_reasoning")
    assert "bit for bit" not in tuned and "expect close but not identical" in tuned


def test_serving_and_adapter_code_only_where_they_apply():
    assert "vllm serve ada/smollm3-reasoning" in golden("smollm3_reasoning")
    for name in ("tiny", "lora_adapter", "dpo"):
        assert "vllm" not in golden(name)
    adapter = golden("lora_adapter")
    assert "AutoPeftModelForCausalLM" in adapter and "peft" in adapter.split("```bash")[1].split("```")[0]
    assert "AutoPeftModelForCausalLM" not in golden("tiny")


def test_headline_prefers_a_significant_benchmark_then_the_loss(tmp_path):
    run = make_run(tmp_path, "tiny")
    r = run.read_results()
    assert "**At a glance:** held-out loss 6." in golden("tiny")  # no benchmark change is significant there
    significant = [{"task": "t", "metric": "acc", "base": 0.2, "tuned": 0.6, "delta": 0.4, "ci_low": 0.2,
                    "ci_high": 0.6, "p_value": 0.001, "n": 50, "mode": "no_think", "shots": 0, "status": "ok"}]
    text = with_results(run, evaluation={**r["evaluation"], "results": significant})
    assert "**At a glance:** `t` acc 0.200 → 0.600 against the random-init model" in text


def test_metadata_values_have_four_significant_digits():
    meta = ModelCard(golden("tiny")).data.to_dict()
    for result in meta["model-index"][0]["results"]:
        for metric in result["metrics"]:
            value = metric["value"]
            assert value == float(f"{value:.4g}")


def test_user_text_in_table_cells_cannot_break_the_table(tmp_path):
    run = make_run(tmp_path, "tiny")
    r = run.read_results()
    text = with_results(run, dataset={**r["dataset"], "system_prompt": "a | b\nc `d`"})
    row = next(line for line in text.splitlines() if line.startswith("| **System prompt**"))
    assert len(re.split(r"(?<!\\)\|", row)) == 4 and "\\|" in row  # | label | value |: the user's bar escaped


def test_loss_plot_draws_each_point_once_with_chance_and_epochs(tmp_path):
    r = make_run(tmp_path, "tiny").read_results()
    history = {**r, "eval_history": [*r["eval_history"], r["eval_history"][-1]]}  # a final eval at the last step
    train, evals = loss_points(history)
    assert len(evals) == len(r["eval_history"]) and len({s for s, _ in train}) == len(train)
    path = write_loss_plot(r, tmp_path / "plot.png", title="my model")
    assert path.stat().st_size > 1000


def test_public_text_reduces_paths_to_names_and_leaves_the_rest():
    assert public_text("smolforge run /home/ada/cfg.yaml --set data.name=/srv/d/f.csv") == \
        "smolforge run cfg.yaml --set data.name=f.csv"
    for keep in ("https://huggingface.co/a/b", "Reasoning Mode: /no_think", "1/2", "runs/shared/model", "/think"):
        assert public_text(keep) == keep
    assert public_text('{"dir": "/root/.cache/trackio"}') == '{"dir": "trackio"}'
    assert public_text("~/data/x.jsonl") == "x.jsonl"


def test_card_inputs_for_uses_and_training_data(tmp_path):
    run = make_run(tmp_path, "tiny")
    text = card_text(run, intended_use="Classroom demos.", out_of_scope="Production.", training_data="My chats.")
    assert "## Uses\n\nClassroom demos.\n\n**Out of scope:** Production." in text
    assert re.search(r"<summary>Training data</summary>\n\nMy chats\.", text)
    default = card_text(run)
    assert "smolforge's bundled offline chats" in default and "seed 1234" in default


def test_the_plan_line_is_its_own_list_item_with_the_measured_numbers(tmp_path):
    """The prediction `smolforge plan` made, next to what the run measured, one compute bullet of its own."""
    run = make_run(tmp_path, "tiny")
    plan = {"predicted": {"calibrated": True, "memory_kind": "cpu_rss", "peak_memory_mib": 636.0,
                          "tokens_per_second": 228.0, "train_runtime_s": 778.1},
            "measured": {"peak_memory_mib": 849.0, "tokens_per_second": 199.0, "train_runtime_s": 891.7}}
    text = with_results(run, plan=plan)
    line = ("- Predicted before training by `smolforge plan` (calibrated with a few real steps on this machine): peak "
            "RSS 636 MiB (measured 849 MiB), 228 tokens/s (measured 199), training time 778.1 s (measured 891.7 s)\n")
    assert line in text
    assert text.split(line)[1].startswith("- ")  # the next bullet starts on its own line
    assert "Predicted before training" not in with_results(run, plan={"predicted": plan["predicted"]})
