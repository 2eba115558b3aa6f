"""GRPO through the real CLI, from the shared tiny SFT run: rewards (built-in and a user's function), the held-out
rollouts before and after, the card, the manifest, bad reward functions and a resume."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest

from tests.conftest import run_cli

pytestmark = pytest.mark.slow

FAST_GRPO = ["--set", "training.max_steps=4", "--set", "training.save_steps=2", "--set", "training.logging_steps=1",
             "--set", "training.batch_size=8", "--set", "training.grpo.max_completion_length=12",
             "--set", "training.grpo.eval_prompts=6", "--set", "training.grpo.num_generations=4",
             "--set", "evaluation.tasks=[]"]
USER_REWARD = '''"""A user's reward: shorter answers score higher; the bundled prompts' answers arrive as a column."""


def brevity(completions, answer, **kwargs):
    assert len(answer) == len(completions)
    return [-len(c[0]["content"]) / 100 for c in completions]
'''


def _grpo(tiny_run: Path, cwd: Path, *extra: str, name: str = "g", check: bool = True):
    return run_cli("run", "--preset", "tiny-grpo", "--yes", "--experiment-name", name,
                   "--set", f"model.name_or_path={tiny_run / 'model'}", *FAST_GRPO, *extra, cwd=cwd, check=check)


def test_a_grpo_run_records_every_reward_before_and_after_and_the_card_shows_them(tiny_run, tmp_path):
    reward_file = tmp_path / "my_rewards.py"
    reward_file.write_text(USER_REWARD)
    sha = hashlib.sha256(reward_file.read_bytes()).hexdigest()
    proc = _grpo(tiny_run, tmp_path, "--set", "training.grpo.rewards=[accuracy,think_format,my_rewards.py:brevity]",
                 "--set", "training.grpo.reward_weights=[1,0.5,2]")
    assert "held-out reward " in proc.stdout and "Plan: memory" in proc.stdout
    run = tmp_path / "runs" / "g"
    results = json.loads((run / "results.json").read_text())
    assert (results["method"], results["global_steps"]) == ("grpo", 4)
    g = results["grpo"]
    assert [r["name"] for r in g["rewards"]] == ["accuracy", "think_format", "my_rewards.py:brevity"]
    assert g["rewards"][2] == {"name": "my_rewards.py:brevity", "builtin": False, "file": str(reward_file.resolve()),
                               "function": "brevity", "sha256": sha}
    assert g["weights"] == [1.0, 0.5, 2.0] and g["num_generations"] == 4 and g["mode"] == "no_think"
    names = [r["name"] for r in g["rewards"]]
    for when in ("before", "after"):
        side = g["held_out"][when]
        assert (side["prompts"], side["completions"], side["samples_per_prompt"]) == (6, 24, 4)
        assert set(side["rewards"]) == set(names) and all(side["rewards"][n]["n"] == 24 for n in names)
        means = [side["rewards"][n]["mean"] for n in names]
        assert side["total"]["mean"] == pytest.approx(means[0] + 0.5 * means[1] + 2 * means[2], abs=1e-3)
        assert side["rewards"]["my_rewards.py:brevity"]["mean"] < 0  # the user's function scored every completion
        assert 0 <= side["truncated_share"] <= 1 and side["completion_tokens"]["max"] <= 12
    assert [c["step"] for c in g["training_curve"]] == [1, 2, 3, 4]
    assert "rewards/my_rewards.py:brevity/mean" in g["training_curve"][0]
    assert results["tokens"]["supervised"] > 0 and results["tokens"]["processed"] > results["tokens"]["supervised"]
    # the plan priced the sampling: 8 completions per step of at most 12 tokens (every completion at the cap: the
    # tokens processed are about as many, their padding drawn in the plan's own order of the prompts)
    plan = results["plan"]
    assert plan["predicted"]["rollouts"]["sequences_per_process"] == 8
    assert plan["predicted"]["rollouts"]["completion_tokens"] == 12 and plan["predicted"]["time_s"]["sampling"] > 0
    assert plan["predicted"]["steps"] == plan["measured"]["steps"] == 4
    assert abs(plan["error"]["processed_tokens"]) < 0.1, plan

    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["rewards"]["files"][0]["sha256"] == sha

    card = (run / "model" / "README.md").read_text()
    assert "**Rewards on held-out prompts.** 6 prompts this run held out, 4 completions each" in card
    assert f"`my_rewards.py:brevity` (SHA-256 `{sha}`) × 2" in card
    assert "| Rewards | `accuracy` (built-in) × 1, `think_format` (built-in) × 0.5" in card
    assert "reinforcement learning with reward functions (GRPO" in card
    assert "GRPO sampled every training completion in `/no_think` mode, without reasoning" in card
    after = g["held_out"]["after"]["rewards"]["accuracy"]
    assert f"| {after['mean']:.3f} ± {after['std']:.3f} |" in card
    assert "Validation loss measures" not in card and "perplexity" not in card.lower()

    # seeded sampling on a CPU: the same run again gives every number and every weight bit for bit
    proc = run_cli("reproduce", str(run), cwd=tmp_path, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    again = json.loads((tmp_path / "runs" / "g-reproduced" / "results.json").read_text())
    assert again["reproduction"]["reproduced"]
    for when in ("before", "after"):  # all but the sampling speed
        assert {**again["grpo"]["held_out"][when], "tokens_per_second": 0} == \
            {**g["held_out"][when], "tokens_per_second": 0}

    # later, the held-out prompts as a benchmark: answered greedily through lm-eval, scored by the accuracy reward
    run_cli("evaluate", str(run), "--tasks", "held-out", "--limit", "6", cwd=tmp_path)
    summary = json.loads((run / "evaluation" / "summary.json").read_text())
    [row] = summary["results"]
    assert (row["task"], row["metric"], row["n"], row["mode"]) == ("held_out", "accuracy", 6, "no_think")
    items = [json.loads(line) for line in (run / "evaluation" / "items" / "held_out.no_think.jsonl").open()]
    assert [i["id"] for i in items] == [f"held-out-{n}" for n in range(6)]
    assert row["tuned"] == pytest.approx(sum(i["tuned"]["score"] for i in items) / 6)
    task_dir = run / "evaluation" / "held_out"
    assert sorted(p.name for p in task_dir.iterdir()) == ["held_out.jsonl", "held_out.yaml", "held_out_utils.py"]
    questions = [json.loads(line)["question"] for line in (task_dir / "held_out.jsonl").open()]
    assert len(questions) == 30  # every held-out prompt; --limit 6 scored the first six
    retention = [json.loads(line) for line in (run / "evaluation" / "retention.jsonl").open()]
    assert summary["retention"]["n_prompts"] == 8 and {r["prompt"] for r in retention} <= set(questions)
    card = (run / "model" / "README.md").read_text()
    assert f"| `held_out` | accuracy | {row['base']:.3f} | {row['tuned']:.3f} |" in card
    assert "`held_out` is not a published benchmark: it is 6 of the prompts this run held out from training, " \
           "answered greedily (at most 12 new tokens) and scored by the run's `accuracy` reward" in card


@pytest.mark.parametrize(("body", "expected"), [
    ("def other(completions, **kw):\n    return [0.0] * len(completions)\n", "defines no function 'brevity'"),
    ("def brevity(completions, **kw):\n    return [0.0]\n", "returned 1 values for 2 completions"),
])
def test_a_broken_reward_function_stops_before_any_folder_exists(tiny_run, tmp_path, body, expected):
    (tmp_path / "my_rewards.py").write_text(body)
    proc = _grpo(tiny_run, tmp_path, "--set", "training.grpo.rewards=[accuracy,my_rewards.py:brevity]", check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert expected in proc.stderr and "training.grpo.rewards" in proc.stderr
    assert not (tmp_path / "runs").exists()


def test_the_held_out_benchmark_without_held_out_prompts_stops_before_any_folder_exists(tiny_run, tmp_path):
    proc = run_cli("run", "--preset", "tiny-grpo", "--yes", "--set", f"model.name_or_path={tiny_run / 'model'}",
                   "--set", "data.eval_ratio=0", cwd=tmp_path, check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "evaluation.tasks: `held-out` has no held-out prompt to ask (the run has no held-out split)" in proc.stderr
    assert "data.eval_ratio above 0" in proc.stderr and not (tmp_path / "runs").exists()


def test_a_resumed_grpo_run_finishes_and_keeps_the_first_segments_baseline(tiny_run, tmp_path):
    _grpo(tiny_run, tmp_path, "--set", "tracking.backend=none")
    run = tmp_path / "runs" / "g"
    first = json.loads((run / "results.json").read_text())
    # as if the process had died after checkpoint-2
    (run / "results.json").unlink()
    shutil.rmtree(run / "model")
    shutil.rmtree(run / "checkpoints" / "checkpoint-4")
    run_cli("run", str(run), "--resume", "--yes", cwd=tmp_path)
    results = json.loads((run / "results.json").read_text())
    assert results["global_steps"] == 4 and results["resumed_from"] == "checkpoint-2"
    assert results["grpo"]["held_out"]["before"] == first["grpo"]["held_out"]["before"]
    assert results["grpo"]["held_out"]["after"]["completions"] == 24


def test_plan_prices_the_sampling_of_smollm3_grpo(tmp_path):
    """The KV cache of one process's generation batch: 8 rows x 8 accumulation steps = 64 completions of up to
    1,024 tokens after prompts of up to 2,048 - 1,024 (the data is not read offline), 36 layers x (keys, values) x
    4 key/value heads x 128 x 2 bytes (bf16) per token, + 3 fp32 rows of logits per sequence for sampling."""
    from transformers import SmolLM3Config

    model = tmp_path / "smollm3-3b"
    SmolLM3Config(max_position_embeddings=65536, bos_token_id=None, eos_token_id=128012).save_pretrained(model)
    proc = run_cli("plan", "--preset", "smollm3-grpo", "--set", f"model.name_or_path={model}", "--gpu", "h100",
                   "--json", cwd=tmp_path, env={"HF_HUB_OFFLINE": "1"})
    plan = json.loads(proc.stdout)
    rollouts = plan["rollouts"]
    assert (rollouts["sequences_per_process"], rollouts["prompt_tokens"], rollouts["completion_tokens"]) == \
        (64, 1024, 1024)
    kv = 64 * (2048 * 2 * 36 * 4 * 128 * 2 + 3 * 128256 * 4)
    assert rollouts["kv_cache_mib"] == round(kv / 2**20, 1)
    # generation and the backward pass never coexist: the peak holds what the cache needs beyond the latter
    memory = plan["memory_mib"]
    beyond = kv / 2**20 - (memory["gradients"] + memory["activations"] + memory["loss"])
    assert memory["generation"] == pytest.approx(max(0.0, beyond), abs=0.2)
    assert plan["fits"] is True and rollouts["sampling_s_per_step"] > 0

    table = run_cli("plan", "--preset", "smollm3-grpo", "--set", f"model.name_or_path={model}", "--gpu", "h100",
                    cwd=tmp_path, env={"HF_HUB_OFFLINE": "1"}).stdout
    assert "64 completions per process and step (8 prompts x 8)" in " ".join(table.split())
    refused = run_cli("plan", "--preset", "tiny-grpo", "--calibrate", cwd=tmp_path, check=False)
    assert refused.returncode == 2 and "Drop --calibrate for a GRPO config" in refused.stderr


def test_the_tiny_grpo_preset_trains_its_base_then_raises_the_held_out_accuracy(tmp_path):
    """`smolforge run --preset tiny-grpo --yes` in an empty folder, offline: it trains its base (SFT on the
    bundled questions answered half right, half wrong) as its own run, then GRPO with the accuracy reward makes the
    right answers more likely on prompts it never trained on (seeded: the same numbers on every run on one kind of
    CPU; measured 0.421 -> 0.571 on 30 held-out prompts x 8 samples, with training.seed 1 and 7 +0.20 and +0.18; on
    the machine of an earlier session 0.492 -> 0.725). The same prompts answered greedily through lm-eval are the
    card's `held_out` benchmark row (0.667 -> 0.567 here: not a significant change either way)."""
    proc = run_cli("run", "--preset", "tiny-grpo", "--yes", "--experiment-name", "grpo", cwd=tmp_path)
    assert "training it first with `smolforge run --preset tiny-sft-answers --experiment-name tiny-sft-answers " \
           "--yes`" in proc.stdout and "Base model ready: runs/tiny-sft-answers/model." in proc.stdout
    base = json.loads((tmp_path / "runs" / "tiny-sft-answers" / "results.json").read_text())
    assert base["method"] == "sft" and base["command"] == "smolforge run --preset tiny-sft-answers " \
                                                          "--experiment-name tiny-sft-answers --yes"
    results = json.loads((tmp_path / "runs" / "grpo" / "results.json").read_text())
    held = results["grpo"]["held_out"]
    before, after = (held[w]["rewards"]["accuracy"] for w in ("before", "after"))
    assert before["n"] == after["n"] == 240
    assert 0.3 < before["mean"] < 0.7, before  # the base answers right about half the time, as its data did
    assert after["mean"] >= before["mean"] + 0.1, (before, after)
    # paired by prompt (30 prompts, each its mean over 8 completions): the interval excludes no change
    change = held["change"]["accuracy"]
    assert change["prompts"] == 30 and change["delta"] == pytest.approx(after["mean"] - before["mean"], abs=1e-3)
    assert 0 < change["ci_low"] < change["delta"] < change["ci_high"], change
    assert f"held-out reward {before['mean']:.3f} -> {after['mean']:.3f}" in proc.stdout
    card = (tmp_path / "runs" / "grpo" / "model" / "README.md").read_text()
    assert f"| `accuracy` (built-in) | 1 | {before['mean']:.3f} ± {before['std']:.3f} | " \
           f"{after['mean']:.3f} ± {after['std']:.3f} | {change['delta']:+.3f} ({change['ci_low']:+.3f} to " \
           f"{change['ci_high']:+.3f}) |" in card
    assert "| Change (95% interval) |" in card
    assert "smolforge's bundled verifiable prompts: 120 synthetic questions" in card
    # the preset's benchmark: the same 30 held-out prompts answered greedily by both models, through lm-eval
    [row] = results["evaluation"]["results"]
    assert (row["task"], row["n"]) == ("held_out", 30) and 0 <= row["base"] <= 1 and 0 <= row["tuned"] <= 1
    assert f"| `held_out` | accuracy | {row['base']:.3f} | {row['tuned']:.3f} | {row['delta']:+.3f}" in card
    # the card's first line: the greedy benchmark when its change is significant, else the sampled reward's change
    glance = f"**At a glance:** held-out `accuracy` reward {before['mean']:.3f} → {after['mean']:.3f} sampled as " \
             f"in training ({change['delta']:+.3f}, 95% CI {change['ci_low']:+.3f} to {change['ci_high']:+.3f}, " \
             "30 prompts × 8 completions)"
    if row["p_value"] < 0.05:
        glance = f"**At a glance:** `held_out` accuracy {row['base']:.3f} → {row['tuned']:.3f} against its base"
    assert glance in card
