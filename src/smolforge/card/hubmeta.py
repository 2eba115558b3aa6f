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
    """The Hub's own card validation, on the Hub we push to.

    `ModelCard.validate()` posts to the endpoint huggingface_hub read at import time; the same request is sent
    here to `endpoint` instead (its body and its 400 answer are ModelCard.validate's), through
    huggingface_hub's own HTTP session."""
    import json

    from huggingface_hub import ModelCard
    from huggingface_hub.errors import HfHubHTTPError
    from huggingface_hub.utils import get_session, hf_raise_for_status

    try:
        card = ModelCard(text)
    except ValueError as e:
        raise SmolforgeError(f"{where}: the card's metadata cannot be parsed ({e}). Fix it, or rewrite the card "
                             f"with `smolforge card RUN_DIR --force`; then: {command}") from None
    response = get_session().post(f"{endpoint.rstrip('/')}/api/validate-yaml",
                                  json={"repoType": "model", "content": str(card)}, headers={"Accept": "text/plain"})
    try:
        hf_raise_for_status(response)
    except HfHubHTTPError:
        if response.status_code != 400:
            raise
        reason = response.text
        try:
            reason = "; ".join(x.get("message", "") for x in json.loads(reason).get("errors", [])) or reason
        except (ValueError, AttributeError):
            pass
        raise SmolforgeError(f"The Hub at {endpoint} rejected the model card {where}: {redact(reason)}. Nothing "
                             f"was pushed. Fix the card (edit it, or `smolforge card RUN_DIR ...`), then: "
                             f"{command}") from None
