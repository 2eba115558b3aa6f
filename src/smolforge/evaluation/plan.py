"""What an evaluation will run, decided before any model loads, so its cost can be shown first."""

from __future__ import annotations

from dataclasses import dataclass

from smolforge.config import EvaluationSection
from smolforge.evaluation.tasks import EvalTask


@dataclass(frozen=True)
class Step:
    model: str
    mode: str
    task: EvalTask


@dataclass
class Plan:
    models: list[str]
    modes: list[str]
    steps: list[Step]
    skipped: list[dict]
    generations: int  # smolforge's own greedy generations (samples, reasoning check)

    @property
    def scored_items(self) -> int:
        return sum(s.task.n_items for s in self.steps)

    def describe(self, tasks: list[EvalTask]) -> dict:
        return {"tasks": len(tasks), "items": sum(t.n_items for t in tasks), "models": self.models,
                "modes": self.modes, "scored_items": self.scored_items, "generations": self.generations}

    def headline(self, tasks: list[EvalTask]) -> str:
        items = sum(t.n_items for t in tasks)
        mc = sum(t.n_items for t in tasks if t.loglikelihood)
        lines = [f"Evaluation plan: {len(tasks)} task{'s' if len(tasks) != 1 else ''} ({items} items; {mc} scored by "
                 f"log-likelihood, {items - mc} by generation) x {len(self.models)} models "
                 f"({', '.join(self.models)}) x {len(self.modes)} mode{'s' if len(self.modes) != 1 else ''} "
                 f"({', '.join(self.modes)}) = {self.scored_items} scored items"]
        if self.generations:
            lines.append(f"  plus {self.generations} greedy generations (sample answers, reasoning check)")
        lines += [f"  skipped: {s['task']} in {s['mode']} mode: {s['reason']}" for s in self.skipped]
        return "\n".join(lines)


def active_modes(settings: EvaluationSection, thinking: bool, notes: list[str]) -> list[str]:
    modes = [m for m in settings.modes if m != "think" or thinking]
    if len(modes) < len(settings.modes):
        notes.append("`think` mode skipped: the chat template has no reasoning switch (enable_thinking)")
    return modes or ["no_think"]


def make_plan(models: list[str], modes: list[str], tasks: list[EvalTask], generations: int) -> Plan:
    steps, skipped = [], []
    for mode in modes:
        for et in tasks:
            if mode == "think" and et.loglikelihood:
                skipped.append({"task": et.name, "mode": mode,
                                "reason": "log-likelihood scoring leaves no room for reasoning (lm-eval refuses it)"})
                continue
            steps += [Step(model, mode, et) for model in models]
    steps.sort(key=lambda s: models.index(s.model))  # one model at a time: each is loaded once
    return Plan(models=models, modes=modes, steps=steps, skipped=skipped, generations=generations)
