"""GRPO without training: the built-in rewards, user reward functions and their checks, the settings, the data."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from smolforge.config.loading import load_config
from smolforge.data import prepare
from smolforge.errors import ConfigError, DataError
from smolforge.rewards import (
    RewardError,
    accuracy,
    check_values,
    load_rewards,
    make_length,
    make_think_format,
    preflight,
    resolve_spec,
)


def _c(text: str) -> list[dict]:
    return [{"role": "assistant", "content": text}]


@pytest.mark.parametrize(("completion", "reference", "right"), [
    ("16 plus 2 is 18.", "18", True),  # the last number, by value
    ("16 plus 2 is 19.", "18", False),
    ("So the answer is \\boxed{\\frac{1}{2}}.", "0.5", True),  # LaTeX, by value
    ("Natalia sold 72 clips.", "She sold 48 in April and 24 in May. 48 + 24 = 72\n#### 72", True),  # GSM8K's ####
    ("The capital of Chile is Santiago.", "Santiago", True),  # text: the answer's closing words
    ("santiago", "Santiago", True),
    ("Santiago is a city in Chile, not the capital.", "Santiago", False),
    ("<think>Is it Lima? No.</think>Santiago", "Santiago", True),  # the answer after the reasoning
    ("<think>It is Santiago.</think>Lima", "Santiago", False),
    ("", "Santiago", False),
])
def test_accuracy_checks_the_final_answer(completion, reference, right):
    assert accuracy([_c(completion)], [reference]) == [1.0 if right else 0.0]


@pytest.mark.parametrize(("completion", "think", "ok"), [
    ("<think>2 + 2 is 4.</think>\nIt is 4.", True, True),
    ("<think>2 + 2 is 4.</think>", True, False),  # no answer after the reasoning
    ("It is 4.", True, False),  # no reasoning in /think mode
    ("<think>a</think><think>b</think>4", True, False),  # two blocks
    ("<think>unclosed 4", True, False),
    ("It is 4.", False, True),
    ("<think>2 + 2</think>4", False, False),  # reasoning in /no_think mode
    ("   ", False, False),
])
def test_think_format_follows_the_sampling_mode(completion, think, ok):
    assert make_think_format(think)([_c(completion)]) == [1.0 if ok else 0.0]


def test_length_is_free_up_to_the_target_then_a_linear_penalty():
    length = make_length(10)
    assert length([_c("x")] * 4, completion_ids=[[1] * 5, [1] * 10, [1] * 15, [1] * 40]) == [0.0, 0.0, -0.5, -1.0]


def _reward_file(tmp_path: Path, body: str) -> Path:
    f = tmp_path / "my_rewards.py"
    f.write_text(body)
    return f


def test_a_user_function_gets_completions_and_columns_and_its_file_is_hashed(tmp_path):
    f = _reward_file(tmp_path, "def score(completions, answer, level, **kw):\n"
                               "    return [float(len(c[0]['content']) > 0) + v for c, v in zip(completions, level)]\n")
    spec = resolve_spec(f"{f}:score")
    assert spec.sha256 == hashlib.sha256(f.read_bytes()).hexdigest()
    assert spec.record() == {"name": "my_rewards.py:score", "builtin": False, "file": str(f.resolve()),
                             "function": "score", "sha256": spec.sha256}
    (fn,) = load_rewards([spec], think=False, length_target=10)
    assert fn.__name__ == "my_rewards.py:score"
    assert fn(prompts=[[]] * 2, completions=[_c("a"), _c("")], answer=["1", "2"], level=[0, 2]) == [1.0, 2.0]


@pytest.mark.parametrize(("body", "spec", "expected"), [
    (None, "missing.py:score", "there is no file"),
    ("def other(completions, **kw):\n    return [1.0] * len(completions)\n", "my_rewards.py:score",
     "defines no function 'score' (its functions: other)"),
    ("def score(completions, **kw)\n    return []\n", "my_rewards.py:score", "syntax error at line 1"),
    ("import not_a_module_anywhere\n", "my_rewards.py:score", "importing"),
    ("def score(completions, **kw):\n    return [1.0]\n", "my_rewards.py:score", "returned 1 values for 2"),
    ("def score(completions, **kw):\n    return ['good'] * len(completions)\n", "my_rewards.py:score",
     "returned 'good', which is not a finite number"),
    ("def score(completions, **kw):\n    return [float('nan')] * len(completions)\n", "my_rewards.py:score",
     "not a finite number"),
    ("def score(completions, **kw):\n    return 1.0\n", "my_rewards.py:score", "returned float, not a list"),
    ("def score(completions, **kw):\n    return [1 / 0 for _ in completions]\n", "my_rewards.py:score",
     "raised ZeroDivisionError: division by zero (line 2 of my_rewards.py)"),
])
def test_a_broken_user_function_is_one_clear_error_naming_it(tmp_path, monkeypatch, body, spec, expected):
    monkeypatch.chdir(tmp_path)
    if body is not None:
        _reward_file(tmp_path, body)
    rows = [{"prompt": [{"role": "user", "content": "1 + 1?"}], "answer": "2"},
            {"prompt": [{"role": "user", "content": "2 + 2?"}], "answer": "4"}]
    with pytest.raises(RewardError) as e:
        preflight(load_rewards([resolve_spec(spec)], think=False, length_target=10), rows, lambda t: [1] * len(t))
    assert expected in str(e.value) and "training.grpo.rewards" in str(e.value)
    assert "Traceback" not in str(e.value)


def test_check_values_accepts_numbers_and_none():
    assert check_values([1, 0.5, None, True is False], 4, "f") == [1.0, 0.5, None, 0.0]


def test_rewards_from_set_and_their_rules():
    cfg = load_config(preset="tiny-grpo", sets=["training.grpo.rewards=[accuracy,think_format,my_rewards.py:score]",
                                                "training.grpo.reward_weights=[1,0.5,2]"])
    rewards = cfg.training.grpo.rewards
    assert rewards[:2] == ["accuracy", "think_format"] and rewards[2] == f"{Path.cwd() / 'my_rewards.py'}:score"
    assert cfg.training.grpo.weights == [1.0, 0.5, 2.0]
    for sets, message in (
            (["training.grpo.rewards=[acuracy]"], "'acuracy' is not a built-in reward"),
            (["training.grpo.rewards=[rewards.txt:score]"], "must be path/to/file.py:function_name"),
            (["training.grpo.rewards=[accuracy,accuracy]"], "names a reward twice"),
            (["training.grpo.reward_weights=[1,2]"], "reward_weights has 2 values for 1 rewards"),
            (["training.batch_size=6"], "is not a multiple of grpo.num_generations 8"),
            (["data.format=messages"], "training.method 'grpo' needs data.format 'prompt_answer'")):
        with pytest.raises(ConfigError, match=message):
            load_config(preset="tiny-grpo", sets=sets)
    with pytest.raises(ConfigError, match="is GRPO's data"):
        load_config(preset="tiny", sets=["data.format=prompt_answer"])


def _write(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _data(path: Path, *sets: str):
    cfg = load_config(preset="tiny-grpo", sets=[f"data.name={path}", "data.eval_ratio=0", *sets])
    return prepare(cfg.data, "grpo")


def test_grpo_data_prompts_as_text_or_turns_answers_checked_and_other_columns_kept(tmp_path):
    rows = [{"question": "What is 2 plus 2?", "answer": "#### 4", "level": 1},
            {"question": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "3 plus 3?"}],
             "answer": 6, "level": 2},
            {"question": "No answer here", "answer": None, "level": 3},
            {"question": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}],
             "answer": "x", "level": 4},
            {"question": "", "answer": "1", "level": 5}]
    data = _data(_write(tmp_path / "gsm.jsonl", rows))
    assert (data.detected.format, data.detected.fields) == ("prompt_answer", {"prompt": "question", "answer": "answer"})
    assert data.stats["drop_reasons"] == {"no answer to check": 1, "prompt does not end with a user turn": 1,
                                         "empty prompt": 1}
    kept = [dict(r) for r in data.train]
    assert [r["answer"] for r in kept] == ["#### 4", "6"] and [r["level"] for r in kept] == [1, 2]
    assert kept[0]["prompt"] == [{"role": "user", "content": "What is 2 plus 2?", "tool_calls": None}]
    assert kept[1]["prompt"][0]["role"] == "system"


def test_grpo_data_without_a_prompt_or_answer_column_names_the_mapping(tmp_path):
    f = _write(tmp_path / "d.jsonl", [{"text": "hello", "label": "x"}])
    with pytest.raises(DataError, match="data.fields.prompt=<column> --set data.fields.answer=<column>"):
        _data(f)
    data = _data(f, "data.fields.prompt=text", "data.fields.answer=label")
    assert len(data.train) == 1
    with pytest.raises(DataError, match="every one of the 1 rows"):
        _data(_write(tmp_path / "e.jsonl", [{"prompt": "q", "answer": ""}]))


def test_sft_refuses_grpo_data_and_grpo_reads_the_bundled_prompts():
    data = prepare(load_config(preset="tiny-grpo").data, "grpo")
    assert data.stats["name"] == "smolforge built-in verifiable prompts"
    assert data.stats["rows_read"] == 120 and data.stats["rows_dropped"] == 0
    assert (len(data.train), len(data.eval)) == (90, 30)


def test_the_bundled_prompts_and_answers_files_are_their_generators_output():
    from smolforge.builtin_data import ANSWERS_PATH, PHRASINGS, PROMPTS_PATH, generate_answers, generate_prompts
    from smolforge.rewards import answer_matches

    prompts = [json.loads(line) for line in PROMPTS_PATH.read_text().splitlines()]
    assert prompts == generate_prompts() and len({r["prompt"] for r in prompts}) == len(prompts) == 120
    assert len({r["answer"] for r in prompts if not r["answer"].lstrip("-").isdigit()}) == 20  # each capital
    answers = [json.loads(line) for line in ANSWERS_PATH.read_text().splitlines()]
    assert answers == generate_answers() and len(answers) == 2 * len(prompts)
    # every question answered twice, once right and once wrong (as the rewards judge right)
    right = {r["prompt"]: r["answer"] for r in prompts}
    verdicts: dict[str, list[bool]] = {}
    for row in answers:
        verdicts.setdefault(row["question"], []).append(answer_matches(row["answer"], right[row["question"]]))
    assert set(verdicts) == set(right) and all(sorted(v) == [False, True] for v in verdicts.values())
    assert PHRASINGS == 4


def test_a_preset_that_starts_from_another_presets_model_names_that_runs_folder(tmp_path, monkeypatch):
    """tiny-grpo starts from tiny-sft-answers' model: `run` trains that first only when the folder is missing and
    the config still names it."""
    from smolforge import presets
    from smolforge.commands import run

    base, model = presets.base_run("tiny-grpo")
    assert (base, model) == ("tiny-sft-answers", "runs/tiny-sft-answers/model") and base in presets.names()
    assert load_config(preset="tiny-grpo").model.name_or_path == model
    assert load_config(preset=base).training.method == "sft" and presets.base_run("tiny") is None

    started = []
    monkeypatch.setattr(run.subprocess, "run", lambda argv, **kw: started.append(argv) or
                        type("Done", (), {"returncode": 0})())
    monkeypatch.chdir(tmp_path)
    console = type("Console", (), {"print": lambda self, *a, **k: None})()
    req = run.RunRequest(config=None, preset=None, yes=True)  # the preset may be named in the config file
    run._train_base_first(req, "tiny-grpo", "elsewhere/model", console)  # the user's own base: nothing to train
    (tmp_path / model).mkdir(parents=True)
    run._train_base_first(req, "tiny-grpo", model, console)  # already trained
    assert started == []
    (tmp_path / model).rmdir()
    run._train_base_first(req, "tiny-grpo", model, console)
    assert started[0][1:] == ["run", "--preset", base, "--experiment-name", base, "--yes"]


def test_a_reward_file_that_changed_since_the_run_is_an_input_difference(tmp_path, monkeypatch):
    from smolforge.reproduce.identity import identity_differences, reward_identity

    monkeypatch.chdir(tmp_path)
    f = _reward_file(tmp_path, "def score(completions, **kw):\n    return [1.0] * len(completions)\n")
    cfg = load_config(preset="tiny-grpo", sets=["training.grpo.rewards=[accuracy,my_rewards.py:score]"])
    recorded = reward_identity(cfg)
    assert recorded["files"][0]["sha256"] == hashlib.sha256(f.read_bytes()).hexdigest()
    assert identity_differences("reward function", recorded, reward_identity(cfg)) == []
    f.write_text("def score(completions, **kw):\n    return [0.0] * len(completions)\n")
    (line,) = identity_differences("reward function", recorded, reward_identity(cfg))
    assert line.startswith(f"reward function file {f} changed: sha256 ")
    f.unlink()
    (line,) = identity_differences("reward function", recorded, reward_identity(cfg))
    assert line.startswith(f"reward function file {f} is missing")


def test_vllm_samples_where_it_can_run_and_is_refused_with_the_fix_elsewhere(monkeypatch):
    import importlib.util

    from smolforge import runtime
    from smolforge.errors import SmolforgeError
    from smolforge.trainers import grpo_arguments

    cfg = load_config(preset="tiny-grpo")
    assert runtime.resolve(cfg, cuda=(False, False)).generation == "transformers"  # auto, on a CPU
    vllm = load_config(preset="tiny-grpo", sets=["training.grpo.generation=vllm"])
    with pytest.raises(SmolforgeError, match="vllm needs a CUDA GPU and none was found"):
        runtime.resolve(vllm, cuda=(False, False))
    real = importlib.util.find_spec
    monkeypatch.setattr(runtime.importlib.util, "find_spec", lambda name, *a: None if name == "vllm"
                        else real(name, *a))
    with pytest.raises(SmolforgeError, match=r"pip install 'smolforge\[vllm\]'"):
        runtime.resolve(vllm, cuda=(True, True))
    assert runtime.resolve(cfg, cuda=(True, True)).generation == "transformers"  # auto: not installed

    monkeypatch.setattr(runtime.importlib.util, "find_spec", lambda name, *a: object() if name == "vllm"
                        else real(name, *a))
    rt = runtime.resolve(cfg, cuda=(True, True))
    assert rt.generation == "vllm"
    args = grpo_arguments(cfg, rt)
    assert (args["use_vllm"], args["vllm_mode"], args["vllm_gpu_memory_utilization"]) == (True, "colocate", 0.3)
    assert args["num_generations"] == 8 and "use_vllm" not in grpo_arguments(cfg, runtime.resolve(cfg, (False, False)))


def test_the_plan_reserves_vllms_share_of_the_gpu(monkeypatch):
    import importlib.util

    from smolforge import runtime
    from smolforge.plan.estimate import PlanInputs, estimate
    from smolforge.plan.target import named

    cfg = load_config(preset="tiny-grpo", sets=["model.name_or_path=tiny", "training.grpo.vllm_gpu_memory=0.4"])
    real = importlib.util.find_spec
    monkeypatch.setattr(runtime.importlib.util, "find_spec", lambda name, *a: object() if name == "vllm"
                        else real(name, *a))
    target = named(cfg, "h100")
    est = estimate(PlanInputs(cfg=cfg, train_lengths=[40] * 90, eval_lengths=[40] * 30), target)
    assert est.rollouts.generation == "vllm" and est.memory.generation == pytest.approx(0.4 * target.capacity)
    assert est.peak >= 0.4 * target.capacity
