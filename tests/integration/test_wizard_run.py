"""What `smolforge init` writes is exactly what `smolforge run FILE` trains and puts on the card."""

from __future__ import annotations

import pytest
import yaml
from huggingface_hub import ModelCard

from tests.conftest import FAST_TINY, run_cli

AUTHOR = "Ada Lovelace & Co."
DESCRIPTION = "A tiny chat model: 'quoted', #hashed and: colon-ed, to check the YAML round trip."
TAGS = ["wizard-e2e", "math:add", "tiny"]


@pytest.mark.slow
def test_the_written_yaml_trains_and_the_card_shows_exactly_what_was_entered(tmp_path):
    run_cli("init", "--yes", "--preset", "tiny", "--author-name", AUTHOR, "--model-description", DESCRIPTION,
            "--license", "mit", *[a for t in TAGS for a in ("--tag", t)], "--experiment-name", "from-init",
            "--max-steps", "6", "--tracking", "none", *FAST_TINY, "--set", "training.eval_steps=3",
            "--set", "training.save_steps=6", "--set", "training.logging_steps=2", "--output", "smolforge.yaml",
            cwd=tmp_path, input="")
    written = yaml.safe_load((tmp_path / "smolforge.yaml").read_text())
    assert written["preset"] == "tiny" and written["training"]["max_steps"] == 6

    run_cli("run", "smolforge.yaml", "--yes", cwd=tmp_path)
    run = tmp_path / "runs" / "from-init"
    card = ModelCard.load(run / "model" / "README.md")
    meta = card.data.to_dict()
    assert meta["license"] == "mit"
    assert f"By {AUTHOR}." in card.text and "author" not in meta
    assert meta["tags"][: len(TAGS)] == TAGS  # the entered tags, in order, before smolforge's own
    assert DESCRIPTION in card.text
    trained = yaml.safe_load((run / "config.yaml").read_text())
    assert trained["card"]["author_name"] == AUTHOR and trained["card"]["tags"] == TAGS
    assert trained["training"]["max_steps"] == 6 and trained["tracking"]["backend"] == "none"
    assert trained["model"]["tiny"]["hidden_size"] == 64
