"""The card of a quantized variant published as a repo of its own (`publish.quantized_as: repos`).

Short by design: what the variant is, its measured size and quality next to the full-precision
model, how to load it, and a link to the main repo for everything else. Its metadata points at the
main repo with `base_model_relation: quantized`. Rendered like the model card (sandboxed template,
metadata through ModelCardData).
"""

from __future__ import annotations

from importlib import resources
from typing import Any

from smolforge.config import SmolforgeConfig
from smolforge.runfolder import RunFolder


def variant_card(run: RunFolder, cfg: SmolforgeConfig, name: str, main_repo: str, variant_repo: str,
                 username: str | None) -> str:
    from smolforge.card.context import build_context
    from smolforge.card.render import card_class, card_data, render_body

    results = run.read_results()
    cfg = cfg.model_copy(update={"publish": cfg.publish.model_copy(update={"repo_id": main_repo})})
    ctx = build_context(run, cfg, results, username=username)
    variant: dict[str, Any] = next(q for q in ctx["quantized"] if q["name"] == name)
    ctx.update(model_name=variant_repo.split("/")[-1], repo_name=variant_repo, base_model_id=main_repo,
               is_adapter=False, validation_loss=variant.get("eval_loss"), perplexity=variant.get("perplexity"),
               tags=list(dict.fromkeys([*ctx["tags"], "torchao", name, "quantized"])), main_repo=main_repo,
               variant=variant, reference=ctx["quantized_reference"] or {})
    data = card_data(ctx, results, relation="quantized")
    template = resources.files("smolforge.card").joinpath("templates/variant_card.md.j2").read_text("utf-8")
    body = render_body(template, ctx, source="The variant card template")
    return str(card_class()(f"---\n{data.to_yaml()}\n---\n\n{body.lstrip()}"))
