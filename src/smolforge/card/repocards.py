"""The cards of the repos published beside the main one: a quantized variant's repo
(`publish.quantized_as: repos`) and the GGUF repo (`<repo>-GGUF`).

Both follow one recipe: the model card's context with the main repo as the base
(`base_model_relation: quantized`), a few facts of their own, and a short template rendered like the
model card (sandboxed, metadata through ModelCardData). The variant card says what the variant is, its
measured size and quality next to the full-precision model, and how to load it; the GGUF card follows
the usual layout of GGUF repos: a "provided files" table, how to run the files with llama.cpp, Ollama
and LM Studio, and the Ollama Modelfile.
"""

from __future__ import annotations

from collections.abc import Callable
from importlib import resources
from typing import Any

from smolforge.card.context import build_context
from smolforge.card.render import card_class, card_data, render_body
from smolforge.config import SmolforgeConfig
from smolforge.runfolder import RunFolder


def _repo_card(run: RunFolder, cfg: SmolforgeConfig, main_repo: str, username: str | None, kind: str,
               own: Callable[[dict[str, Any]], dict[str, Any]], library_name: str | None = None) -> str:
    """The card of a repo derived from the main one: `own(ctx)` gives the variables that differ."""
    results = run.read_results()
    cfg = cfg.model_copy(update={"publish": cfg.publish.model_copy(update={"repo_id": main_repo})})
    ctx = build_context(run, cfg, results, username=username)
    ctx.update(own(ctx), base_model_id=main_repo, main_repo=main_repo, is_adapter=False)
    data = card_data(ctx, results, relation="quantized")
    if library_name:
        data.library_name = library_name
    text = resources.files("smolforge.card").joinpath(f"templates/{kind.lower()}_card.md.j2").read_text("utf-8")
    body = render_body(text, ctx, source=f"The {kind} card template")
    return str(card_class()(f"---\n{data.to_yaml()}\n---\n\n{body.lstrip()}"))


def variant_card(run: RunFolder, cfg: SmolforgeConfig, name: str, main_repo: str, variant_repo: str,
                 username: str | None) -> str:
    """The README.md of the repo holding the torchao variant `name`."""

    def own(ctx: dict[str, Any]) -> dict[str, Any]:
        variant: dict[str, Any] = next(q for q in ctx["quantized"] if q["name"] == name)
        return dict(model_name=variant_repo.split("/")[-1], repo_name=variant_repo,
                    validation_loss=variant.get("eval_loss"), perplexity=variant.get("perplexity"),
                    benchmarks=[],  # scored on the full-precision fine-tune, not on this variant
                    tags=list(dict.fromkeys([*ctx["tags"], "torchao", name, "quantized"])), variant=variant,
                    reference=ctx["quantized_reference"] or {})

    return _repo_card(run, cfg, main_repo, username, "variant", own)


def gguf_card(run: RunFolder, cfg: SmolforgeConfig, main_repo: str, gguf_repo: str, methods: list[str],
              username: str | None) -> str:
    """The README.md of the GGUF repo holding `methods`."""

    def own(ctx: dict[str, Any]) -> dict[str, Any]:
        rows = [r for r in ctx["gguf"] if r["name"] in methods]
        shown = next((r for r in rows if r["recommended"]), rows[0])
        modelfile = (run.root / shown["path"] / shown["modelfile"]).read_text(encoding="utf-8")
        # the metadata lists only what these files were scored on: the fine-tune's losses and benchmark scores
        # were measured on its full-precision weights (the files' quality drop against them is in the table)
        return dict(model_name=gguf_repo.split("/")[-1], repo_name=gguf_repo, validation_loss=None, perplexity=None,
                    benchmarks=[], files=rows, shown=shown, modelfile=modelfile,
                    tags=list(dict.fromkeys([*ctx["tags"], "gguf", "llama.cpp", "ollama", "quantized"])))

    return _repo_card(run, cfg, main_repo, username, "GGUF", own, library_name="gguf")
