"""Card metadata against a Hub: merging into a card edited on the Hub, and the Hub's own validation.

Both take the endpoint (or the remote card) as an argument, so they work the same against
huggingface.co and a Hub-compatible server; publishing calls them right before it pushes.
"""

from __future__ import annotations

from smolforge.credentials import redact
from smolforge.errors import SmolforgeError


def merge_metadata(remote_text: str, ours_text: str) -> str:
    """The Hub's card with smolforge's metadata merged in by `metadata_update(..., overwrite=True)`'s rules.

    metadata_update() pushes a commit of its own; smolforge needs the merged card inside its one
    commit, so the same rules are applied here: each key smolforge sets replaces the Hub's value,
    a result for the same task/dataset/metric has its value replaced, other results and keys stay.
    """
    from huggingface_hub import ModelCard

    remote, ours = ModelCard(remote_text), ModelCard(ours_text)
    for key, value in ours.data.to_dict().items():
        if key == "model-index":
            continue
        remote.data[key] = value
    new_results = ours.data.eval_results or []
    if remote.data.eval_results is None:
        remote.data.eval_results = new_results
        remote.data.model_name = ours.data.model_name
    else:
        for new in new_results:
            same = [old for old in remote.data.eval_results if new.is_equal_except_value(old)]
            for old in same:
                old.metric_value = new.metric_value
            if not same:
                remote.data.eval_results.append(new)
    return str(remote)


def validate_card(text: str, endpoint: str, where: str, command: str) -> None:
    """`ModelCard.validate()` on the Hub we push to (it posts to the endpoint read at import time)."""
    import json

    from huggingface_hub import ModelCard, constants

    try:
        card = ModelCard(text)
    except ValueError as e:
        raise SmolforgeError(f"{where}: the card's metadata cannot be parsed ({e}). Fix it, or rewrite the card "
                             f"with `smolforge card RUN_DIR --force`; then: {command}") from None
    saved = constants.ENDPOINT
    constants.ENDPOINT = endpoint
    try:
        card.validate(repo_type="model")
    except ValueError as e:
        reason = str(e)
        try:
            reason = "; ".join(x.get("message", "") for x in json.loads(reason).get("errors", [])) or reason
        except (ValueError, AttributeError):
            pass
        raise SmolforgeError(f"The Hub at {endpoint} rejected the model card {where}: {redact(reason)}. Nothing "
                             f"was pushed. Fix the card (edit it, or `smolforge card RUN_DIR ...`), then: "
                             f"{command}") from None
    finally:
        constants.ENDPOINT = saved
