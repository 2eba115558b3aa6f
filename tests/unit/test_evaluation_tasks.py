"""Task entries resolve to loaded lm-eval tasks, and bad entries fail with one actionable paragraph."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from smolforge.errors import SmolforgeError
from smolforge.evaluation.tasks import TaskResolver, benchmark_items, item_ids

GOOD = """\
task: my_quiz
dataset_path: json
dataset_kwargs:
  data_files:
    test: quiz.jsonl
test_split: test
output_type: multiple_choice
doc_to_text: "{{question}}"
doc_to_choice: "{{choices}}"
doc_to_target: label
metric_list:
  - metric: acc
"""


def write_task(folder: Path, yaml_text: str = GOOD, rows: int = 5) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "quiz.jsonl", "w", encoding="utf-8") as f:
        for i in range(rows):
            f.write(json.dumps({"question": f"Pick {i}?", "choices": [str(i), "x", "y"], "label": 0}) + "\n")
    (folder / "quiz.yaml").write_text(yaml_text, encoding="utf-8")
    return folder / "quiz.yaml"


class FakeRegistry:
    all_tasks = ["arc_easy", "arc_challenge", "hellaswag", "gsm8k"]

    def load(self, specs):
        raise ConnectionError("Couldn't reach 'allenai/ai2_arc' on the Hub (OfflineModeIsEnabled)")


def never_built():
    raise AssertionError("the registry index must not be built for builtin or file tasks")


def test_builtin_and_a_user_file_with_relative_data_files_load_without_the_registry(tmp_path, monkeypatch):
    path = write_task(tmp_path / "tasks")
    monkeypatch.chdir(tmp_path)  # relative data_files resolve against the YAML's folder, not here
    tasks = TaskResolver(registry=never_built).resolve(["builtin", str(path)], limit=None)
    assert [t.name for t in tasks] == ["smolforge_chat_facts_mc", "smolforge_chat_facts_gen", "my_quiz"]
    quiz = tasks[2]
    assert (quiz.kind, quiz.n_items, quiz.metric, quiz.note) == ("file", 5, "acc", None)
    assert len(quiz.ids) == 5 and len(set(quiz.ids)) == 5
    items = benchmark_items(tasks)
    assert [i.text for i in items if i.task == "my_quiz"][:2] == ["Pick 0? 0", "Pick 1? 1"]


def test_limit_above_the_task_size_uses_all_items_and_says_so(tmp_path):
    tasks = TaskResolver(registry=never_built).resolve([str(write_task(tmp_path))], limit=50)
    assert tasks[0].n_items == 5 and "limit 50 is more than the 5 items of my_quiz" in tasks[0].note


def test_fingerprint_follows_the_data_bytes(tmp_path):
    path = write_task(tmp_path)
    first = TaskResolver(registry=never_built).resolve([str(path)], limit=None)[0].fingerprint
    with open(tmp_path / "quiz.jsonl", "a", encoding="utf-8") as f:
        f.write(json.dumps({"question": "More?", "choices": ["a", "b", "c"], "label": 1}) + "\n")
    assert TaskResolver(registry=never_built).resolve([str(path)], limit=None)[0].fingerprint != first


def test_item_ids_use_distinct_own_ids_else_position_and_hash():
    assert item_ids([{"id": "a"}, {"id": 7}]) == ["a", "7"]
    fallback = item_ids([{"id": "a"}, {"id": "a"}])
    assert fallback[0].startswith("0-") and fallback[1].startswith("1-") and fallback[0] != fallback[1]


def test_unknown_registry_name_lists_the_closest_names():
    with pytest.raises(SmolforgeError) as e:
        TaskResolver(registry=FakeRegistry).resolve(["arc_esay"], limit=None)
    assert "`arc_esay`" in str(e.value) and "arc_easy" in str(e.value)


def test_registry_task_without_cached_data_offline_names_the_task_and_the_way_out(monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    with pytest.raises(SmolforgeError) as e:
        TaskResolver(registry=FakeRegistry).resolve(["arc_easy"], limit=None)
    msg = str(e.value)
    assert "`arc_easy`" in msg and "not in the Hugging Face cache" in msg and "dataset_path: json" in msg


@pytest.mark.parametrize(("edit", "expected"), [
    (lambda t: t.replace("doc_to_choice", "doc_to_choise"), "key `doc_to_choise` (did you mean `doc_to_choice`"),
    (lambda t: t.replace('doc_to_choice: "{{choices}}"\n', ""), "no `doc_to_choice`"),
    (lambda t: t.replace("test_split: test\n", ""), "neither `test_split` nor `validation_split`"),
    (lambda t: t.replace("quiz.jsonl", "missing.jsonl"), "data file `missing.jsonl`"),
    (lambda t: t.replace("metric: acc", "metric: rouge"), "metric `rouge` is not built into lm-eval"),
    (lambda t: t.replace("output_type: multiple_choice", "output_type: choices"), "`output_type: choices`"),
    (lambda t: t + "  - [unclosed\n", "is not valid YAML at line"),
    (lambda t: t.replace("task: my_quiz\n", ""), "has no `task:` name"),
])
def test_malformed_task_files_name_the_key(tmp_path, edit, expected):
    path = write_task(tmp_path, edit(GOOD))
    with pytest.raises(SmolforgeError) as e:
        TaskResolver(registry=never_built).resolve([str(path)], limit=None)
    assert expected in str(e.value) and str(path) in str(e.value)


def test_a_template_naming_a_missing_column_is_a_clear_error(tmp_path):
    path = write_task(tmp_path, GOOD.replace("{{question}}", "{{prompt}}"))
    with pytest.raises(SmolforgeError, match="lm-eval could not build the task"):
        TaskResolver(registry=never_built).resolve([str(path)], limit=None)


def test_missing_task_file_and_duplicate_tasks(tmp_path):
    with pytest.raises(SmolforgeError, match="no such task file"):
        TaskResolver(registry=never_built).resolve([str(tmp_path / "nope.yaml")], limit=None)
    path = write_task(tmp_path)
    copy = tmp_path / "again.yaml"
    copy.write_text(path.read_text())
    with pytest.raises(SmolforgeError, match="listed twice"):
        TaskResolver(registry=never_built).resolve([str(path), str(copy)], limit=None)
