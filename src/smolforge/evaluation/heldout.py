"""A GRPO run's held-out prompts as an lm-eval generative task (`evaluation.tasks: [held-out]`).

GRPO's own before/after numbers sample completions the way training does. The evaluation stage
asks a different, standard question: answered greedily, through lm-eval like every other
benchmark, does the fine-tune get more held-out answers right than its base? So the held-out rows
are written as a task folder (YAML, JSONL, and a `process_results` that calls the run's `accuracy`
reward, the one rule that decides a right answer) which lm-eval loads like any task file. The
folder is copied into `evaluation/held_out/`, where `lm_eval --include_path .` can run it again.

lm-eval asks one user question per item, after an optional system message (the task's
`description`, read per item here); a held-out prompt with earlier turns cannot be put that way,
so it is left out and counted in a note.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from smolforge.config.outputs import HELD_OUT_TASK
from smolforge.errors import SmolforgeError

TASK_NAME = "held_out"
FOLDER = TASK_NAME  # in the evaluation folder: the task as it was scored (the card names the folder by the task)
METRIC = "accuracy"

UTILS = '''\
"""Scores an answer with smolforge's `accuracy` reward: the rule the GRPO run was trained with."""

from smolforge.rewards import accuracy


def process_results(doc, results):
    return {"accuracy": accuracy([results[0]], [doc["answer"]])[0]}
'''


@dataclass
class HeldOutTask:
    """The task's files (name -> text) and what could not be put into it."""

    files: dict[str, str]
    items: int
    dropped: dict[str, int] = field(default_factory=dict)

    def notes(self) -> list[str]:
        return [f"{TASK_NAME}: {n} held-out prompt{'s' if n != 1 else ''} left out ({why})"
                for why, n in self.dropped.items()]

    def write(self, folder: Path) -> Path:
        """Write the files into `folder`; returns the YAML's path, for the task resolver."""
        folder.mkdir(parents=True, exist_ok=True)
        for name, text in self.files.items():
            (folder / name).write_text(text, encoding="utf-8")
        return folder / f"{TASK_NAME}.yaml"


def _doc(row: dict, index: int) -> tuple[dict | None, str]:
    """One item (system text, question, answer) from a normalised GRPO row, or why it cannot be one."""
    turns = row.get("prompt")
    if not isinstance(turns, list) or not turns:
        return None, "no prompt"
    system = turns[0]["content"] if turns[0].get("role") == "system" else ""
    rest = turns[1:] if system else turns
    if len(rest) != 1 or rest[0].get("role") != "user":
        return None, "earlier turns before the question: lm-eval asks one question per item"
    answer = row.get("answer")
    if answer is None or not str(answer).strip():
        return None, "no answer to check"
    return {"id": f"held-out-{index}", "system": system or "", "question": str(rest[0]["content"]),
            "answer": str(answer)}, ""


def _yaml(max_gen_tokens: int) -> str:
    return f"""\
# smolforge: a GRPO run's held-out prompts, answered greedily and scored by the run's `accuracy` reward.
# Score a model on it again from this folder (lm-eval reads data_files from the working folder, and
# held_out_utils.py imports smolforge), in /no_think mode as smolforge does:
#   lm_eval --model hf --model_args pretrained=MODEL,enable_thinking=False --include_path . \\
#     --tasks {TASK_NAME} --apply_chat_template
# (/think mode: enable_thinking=True,think_end_token=</think>, and room to reason: --gen_kwargs max_gen_toks=N)
task: {TASK_NAME}
dataset_path: json
dataset_kwargs:
  data_files:
    test: {TASK_NAME}.jsonl
test_split: test
output_type: generate_until
description: system
doc_to_text: question
doc_to_target: answer
process_results: !function {TASK_NAME}_utils.process_results
generation_kwargs:
  until: []
  max_gen_toks: {max_gen_tokens}
  do_sample: false
metric_list:
  - metric: {METRIC}
    aggregation: mean
    higher_is_better: true
metadata:
  version: 1
"""


def build(rows: Sequence[dict], max_gen_tokens: int) -> HeldOutTask:
    """The task over the held-out rows, in their order; a row that cannot be an item is counted by reason."""
    docs, dropped = [], {}
    for i, row in enumerate(rows):
        doc, why = _doc(row, i)
        if doc is None:
            dropped[why] = dropped.get(why, 0) + 1
        else:
            docs.append(doc)
    if not docs:
        reasons = "; ".join(f"{n}: {why}" for why, n in dropped.items()) or "the run has no held-out split"
        raise SmolforgeError(f"evaluation.tasks: `{HELD_OUT_TASK}` has no held-out prompt to ask ({reasons}). Give "
                             "the run held-out prompts (data.eval_ratio above 0, or data.eval_split), or remove "
                             f"`{HELD_OUT_TASK}` from evaluation.tasks.")
    jsonl = "".join(json.dumps(d, ensure_ascii=False) + "\n" for d in docs)
    files = {f"{TASK_NAME}.yaml": _yaml(max_gen_tokens), f"{TASK_NAME}.jsonl": jsonl, f"{TASK_NAME}_utils.py": UTILS}
    return HeldOutTask(files=files, items=len(docs), dropped=dropped)
