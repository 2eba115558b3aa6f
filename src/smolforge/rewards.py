"""GRPO's reward functions: the built-ins (accuracy, think_format, length) and user functions.

A reward is named in `training.grpo.rewards` either by a built-in's name or as `path/to/file.py:function`,
a function with TRL's signature: `f(completions, prompts, **columns) -> list[float]` (one number per
completion, None for "does not apply"). `load_rewards` turns the names into the callables TRL's
GRPOTrainer takes; `preflight` calls every one of them on two real rows before the run folder exists,
so a missing file, a syntax error or a wrong return value is one paragraph instead of a traceback
mid-training.
"""

from __future__ import annotations

import hashlib
import importlib.util
import inspect
import math
import numbers
import re
import string
import sys
import threading
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from smolforge.config import SmolforgeConfig
from smolforge.config.training import BUILTIN_REWARDS, split_reward
from smolforge.errors import SmolforgeError

THINK_OPEN, THINK_CLOSE = "<think>", "</think>"
PREFLIGHT_ROWS = 2


def samples_thinking(cfg: SmolforgeConfig) -> bool:
    """GRPO samples in data.reasoning's mode: think (`enable_thinking=True`), else no_think (auto included: the
    prompts carry no reasoning traces to tell it otherwise)."""
    return cfg.data.reasoning == "think"


class RewardError(SmolforgeError):
    """A reward function that cannot be loaded or does not follow TRL's contract."""


@dataclass(frozen=True)
class RewardSpec:
    """One entry of training.grpo.rewards: a built-in, or a function in a Python file (with the file's SHA-256)."""

    name: str  # as the card and the logs name it: "accuracy", or "my_rewards.py:score"
    builtin: bool
    path: Path | None = None
    function: str | None = None
    sha256: str | None = None

    def record(self) -> dict[str, Any]:
        """The spec as results.json and the manifest record it."""
        if self.builtin:
            return {"name": self.name, "builtin": True}
        return {"name": self.name, "builtin": False, "file": str(self.path), "function": self.function,
                "sha256": self.sha256}


def resolve_spec(text: str, base: Path | None = None) -> RewardSpec:
    """A reward name -> its spec: a built-in, or a readable .py file (relative to `base`, else the working
    folder) with its SHA-256. The function itself is looked up by `load_rewards`."""
    parts = split_reward(text)
    if parts is None:
        if text not in BUILTIN_REWARDS:
            raise RewardError(f"training.grpo.rewards: {text!r} is not a built-in reward "
                              f"({', '.join(BUILTIN_REWARDS)}) and not a function in a file. Name a built-in, or "
                              "your own function as path/to/file.py:function_name.")
        return RewardSpec(text, True)
    path_text, function = parts
    path = Path(path_text).expanduser()
    if not path.is_absolute():
        path = (base or Path.cwd()) / path
    if path.suffix != ".py" or not function.isidentifier():
        raise RewardError(f"training.grpo.rewards: {text!r} must be path/to/file.py:function_name (a Python file, "
                          "a colon, the function's name).")
    if not path.is_file():
        raise RewardError(f"training.grpo.rewards: {text!r}: there is no file {path}. Give the path of the Python "
                          "file that defines the reward function (relative to the folder you run smolforge in).")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    return RewardSpec(f"{path.name}:{function}", False, path.resolve(), function, digest)


def _load_user_function(spec: RewardSpec) -> Callable[..., Any]:
    """Import the spec's file as a module of its own and return its function; every failure is a RewardError."""
    module_name = f"smolforge_reward_{spec.sha256[:12]}_{spec.path.stem}"
    module_spec = importlib.util.spec_from_file_location(module_name, spec.path)
    module = importlib.util.module_from_spec(module_spec)
    try:
        module_spec.loader.exec_module(module)
    except SyntaxError as e:
        raise RewardError(f"training.grpo.rewards: {spec.path} has a syntax error at line {e.lineno}: {e.msg}. Fix "
                          f"the file, then run again.") from None
    except Exception as e:  # the user's module-level code: any failure is theirs to fix, named with its line
        raise RewardError(f"training.grpo.rewards: importing {spec.path} failed: {type(e).__name__}: {e}"
                          f"{_where(e, spec.path)}. Fix the file, then run again.") from None
    fn = getattr(module, spec.function, None)
    if not callable(fn):
        defined = sorted(n for n, v in vars(module).items() if inspect.isfunction(v) and not n.startswith("_")
                         and v.__module__ == module_name)
        raise RewardError(f"training.grpo.rewards: {spec.path} defines no function {spec.function!r} (its "
                          f"functions: {', '.join(defined) or 'none'}). Name one of those after the colon.")
    sys.modules.setdefault(module_name, module)  # so checkpoints and worker processes can find it by name
    return fn


def _where(e: BaseException, path: Path) -> str:
    """' (line N of file.py)' for the innermost frame of `e` in the user's file, else ''."""
    frames = [f for f in traceback.extract_tb(e.__traceback__) if Path(f.filename) == path]
    return f" (line {frames[-1].lineno} of {path.name})" if frames else ""


# ------------------------------------------------------------------ the built-ins

def completion_text(completion: Any) -> str:
    """A completion as TRL passes it: text, or a conversational list of assistant turns."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, list):
        return "".join(str(m.get("content") or "") for m in completion if isinstance(m, dict))
    return str(completion)


def final_answer(text: str) -> str:
    """The answer after the reasoning: the text after the last </think> (all of it when there is none)."""
    return text.rsplit(THINK_CLOSE, 1)[-1].strip()


def reference_answer(reference: Any) -> str:
    """The reference a reward checks: GSM8K-style solutions ('... #### 72') are reduced to what follows ####."""
    text = "" if reference is None else str(reference)
    return text.rsplit("####", 1)[-1].strip() if "####" in text else text.strip()


_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCT = str.maketrans("", "", string.punctuation)


def normalize_text(text: str) -> str:
    """Lower case, no punctuation, no articles, single spaces (SQuAD's answer normalisation)."""
    return " ".join(_ARTICLES.sub(" ", text.lower().translate(_PUNCT)).split())


def answer_matches(answer: str, reference: str) -> bool:
    """Whether `answer` gives `reference`: maths by value with math-verify (the last number or expression, \\boxed{}
    first), anything else by normalised text, equal or as the answer's closing words ('... is Santiago.')."""
    from math_verify import parse, verify  # lazy: sympy takes a second to import

    # math-verify bounds each parse with SIGALRM, which only the main thread can use: elsewhere, no bound
    bound = {} if threading.current_thread() is threading.main_thread() else {"parsing_timeout": None}
    gold = parse(reference, **bound)
    if gold:
        guess = parse(answer, **bound)
        return bool(guess) and bool(verify(gold, guess, **({} if not bound else {"timeout_seconds": None})))
    want, got = normalize_text(reference), normalize_text(answer)
    return bool(want) and (got == want or got.endswith(" " + want))


def accuracy(completions: list, answer: list, **_: Any) -> list[float]:
    """1.0 when the final answer (after any </think>) matches the row's reference, else 0.0."""
    return [1.0 if answer_matches(final_answer(completion_text(c)), reference_answer(a)) else 0.0
            for c, a in zip(completions, answer, strict=True)]


def well_formed(text: str, think: bool) -> bool:
    """SmolLM3's two modes: /think: one closed <think>...</think> block first, then a non-empty answer;
    /no_think: no reasoning tags at all and a non-empty answer."""
    if not think:
        return THINK_OPEN not in text and THINK_CLOSE not in text and bool(text.strip())
    body = text.lstrip()
    if not body.startswith(THINK_OPEN) or text.count(THINK_OPEN) != 1 or text.count(THINK_CLOSE) != 1:
        return False
    return bool(body.split(THINK_CLOSE, 1)[1].strip())


def make_think_format(think: bool) -> Callable[..., list[float]]:
    def think_format(completions: list, **_: Any) -> list[float]:
        """1.0 for a completion in the sampling mode's form (see `well_formed`), else 0.0."""
        return [1.0 if well_formed(completion_text(c), think) else 0.0 for c in completions]

    return think_format


def make_length(target: int) -> Callable[..., list[float]]:
    def length(completions: list, completion_ids: list | None = None, **_: Any) -> list[float]:
        """0 up to `target` tokens, then a linear penalty: -1.0 at twice the target (and no lower)."""
        sizes = [len(ids) for ids in completion_ids] if completion_ids is not None else \
            [len(completion_text(c).split()) for c in completions]
        return [-min(1.0, max(0, n - target) / target) for n in sizes]

    return length


def load_rewards(specs: list[RewardSpec], think: bool, length_target: int) -> list[Callable[..., Any]]:
    """The callables for GRPOTrainer(reward_funcs=...), named as the config names them (TRL logs rewards/<name>)."""
    out = []
    for spec in specs:
        if spec.builtin:
            fn = {"accuracy": lambda: accuracy, "think_format": lambda: make_think_format(think),
                  "length": lambda: make_length(length_target)}[spec.name]()
        else:
            fn = _checked(_load_user_function(spec), spec.name)
        fn.__name__ = spec.name
        out.append(fn)
    return out


def _checked(fn: Callable[..., Any], name: str) -> Callable[..., Any]:
    """`fn` with its output checked on every call, so a bad return mid-training is a RewardError naming it."""
    def reward(completions: list, **kwargs: Any) -> list[float | None]:
        try:
            values = fn(completions=completions, **kwargs)
        except Exception as e:  # the user's code: its failure is reported with the function's name and line
            raise RewardError(f"training.grpo.rewards: {name} raised {type(e).__name__}: {e}"
                              f"{_where(e, Path(inspect.getfile(fn)))}. Fix the function, then resume the run "
                              "with --resume.") from None
        return check_values(values, len(completions), name)

    return reward


def check_values(values: Any, expected: int, name: str) -> list[float | None]:
    """TRL's contract for a reward's return value: a list with one number (or None) per completion."""
    if not isinstance(values, (list, tuple)):
        raise RewardError(f"training.grpo.rewards: {name} returned {type(values).__name__}, not a list. It must "
                          f"return a list with one number per completion ({expected} here).")
    if len(values) != expected:
        raise RewardError(f"training.grpo.rewards: {name} returned {len(values)} values for {expected} completions. "
                          "It must return exactly one number per completion, in order.")
    missing = object()
    bad = next((v for v in values if v is not None and (not isinstance(v, numbers.Real)
                                                         or not math.isfinite(float(v)))), missing)
    if bad is not missing:
        raise RewardError(f"training.grpo.rewards: {name} returned {bad!r}, which is not a finite number. Each value "
                          "must be a number, int or float (or None where the reward does not apply).")
    return [None if v is None else float(v) for v in values]


def preflight(funcs: list[Callable[..., Any]], rows: list[dict[str, Any]], ids_of: Callable[[str], list[int]]) -> None:
    """Call every reward on `rows` (their references as the completions) before anything is written: a function
    that fails, or returns the wrong number or kind of values, stops the run here with its name."""
    rows = rows[:PREFLIGHT_ROWS]
    completions = [[{"role": "assistant", "content": reference_answer(r.get("answer"))}] for r in rows]
    prompts = [r["prompt"] for r in rows]
    columns = {k: [r.get(k) for r in rows] for k in rows[0] if k != "prompt"}
    ids = [ids_of(c[0]["content"]) for c in completions]
    for fn in funcs:
        values = fn(prompts=prompts, completions=completions, completion_ids=ids, trainer_state=None,
                    log_extra=_ignore, log_metric=_ignore, **columns)
        check_values(values, len(rows), fn.__name__)


def _ignore(*_: Any, **__: Any) -> None:
    """TRL's log_extra / log_metric callbacks, for the pre-flight call (nothing is logged before training)."""


def reward_specs(cfg: SmolforgeConfig) -> list[RewardSpec]:
    """training.grpo.rewards as specs (a user function's file must exist; its SHA-256 is taken now)."""
    return [resolve_spec(name) for name in cfg.training.grpo.rewards]


def reward_functions(cfg: SmolforgeConfig, specs: list[RewardSpec]) -> list[Callable[..., Any]]:
    """The run's reward callables, in the config's order."""
    g = cfg.training.grpo
    return load_rewards(specs, samples_thinking(cfg), g.length_goal)


def check_rewards(cfg: SmolforgeConfig, rows: list[dict[str, Any]], tokenizer: Any) -> None:
    """GRPO's pre-flight: load every reward function and call it on two training rows, before any folder exists."""
    if cfg.training.method != "grpo":
        return
    funcs = reward_functions(cfg, reward_specs(cfg))
    preflight(funcs, rows, lambda text: tokenizer(text, add_special_tokens=False)["input_ids"])
