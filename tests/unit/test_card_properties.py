"""Property tests: any text a user types keeps the card's YAML header valid and round-trips exactly."""

from __future__ import annotations

import re
import shutil
import tempfile
from pathlib import Path

import pytest
import yaml
from huggingface_hub import ModelCard
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from smolforge.card.render import render_card
from smolforge.config.loading import validate
from smolforge.runfolder import RunFolder

TAG_RULE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:+-]{0,63}")
FIXTURE = Path(__file__).parent.parent / "fixtures" / "card" / "smollm3_reasoning"
SETTINGS = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
NASTY = st.sampled_from([
    "a\nlicense: mit", "---", "---\nlicense: mit\n---", "x: y # z", "'q' \"dq\"", "{{ 7*7 }}", "{% if x %}",
    "{{#if license}}x{{/if}}", "<script>alert(1)</script>", "é 日本 🤗", "\x85", "\u2028", "\ufeff", "\r\n",
    "null", "yes", "~", "- item", "&a *a", "!!python/object:os.system", "@", "`", "\x00", "\t", " ",
])
TEXT = st.one_of(st.text(), NASTY, st.lists(st.one_of(st.text(max_size=8), NASTY), max_size=4).map("".join))


@pytest.fixture(scope="module")
def run():
    root = Path(tempfile.mkdtemp()) / "run"
    shutil.copytree(FIXTURE, root, ignore=shutil.ignore_patterns("expected_*"))
    (root / "model").mkdir()
    yield RunFolder(root)
    shutil.rmtree(root.parent, ignore_errors=True)


def render(run: RunFolder, **card) -> tuple[str, dict]:
    data = yaml.safe_load(run.config_path.read_text())
    data["card"] = {**data["card"], **card}
    text = str(render_card(run, validate(data, "fixture"), run.read_results()))
    return text, ModelCard(text).data.to_dict()


EXPECTED_KEYS = {"base_model", "datasets", "language", "library_name", "license", "pipeline_tag", "tags",
                 "base_model_relation", "model-index"}


@SETTINGS
@given(author=TEXT)
def test_author_round_trips_and_injects_nothing(run, author):
    text, data = render(run, author_name=author)
    assert data["license"] == "apache-2.0"
    assert set(data) == EXPECTED_KEYS  # the author is body text: it can never add or change a metadata key
    if author:
        assert f"{author}" in text.split("\n---\n", 1)[1] or author.strip() == ""
    else:  # an empty author: no "By ." line and never a made-up name
        assert " By " not in text and "Your Name" not in text


TAG = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_.:+-]{0,20}", fullmatch=True)


@SETTINGS
@given(tags=st.lists(TAG, max_size=5))
def test_tags_round_trip(run, tags):
    _, data = render(run, tags=tags)
    assert data["tags"][: len(dict.fromkeys(tags))] == list(dict.fromkeys(tags))
    assert {"smolforge", "sft", "trl"} <= set(data["tags"])
    assert data["license"] == "apache-2.0" and set(data) == EXPECTED_KEYS


@SETTINGS
@given(tags=st.lists(TEXT, min_size=1, max_size=3).filter(lambda ts: any(not TAG_RULE.fullmatch(t) for t in ts)))
def test_tags_that_are_not_one_word_are_refused_with_the_rule(run, tags):
    from smolforge.errors import ConfigError

    with pytest.raises(ConfigError, match="each tag is one word"):
        render(run, tags=tags)


@SETTINGS
@given(name=TEXT.filter(lambda t: t.strip()))
def test_model_name_round_trips_in_model_index(run, name):
    _, data = render(run, model_name=name)
    assert data["model-index"][0]["name"] == name
    assert set(data) == EXPECTED_KEYS


@SETTINGS
@given(license_name=st.one_of(TEXT, st.from_regex(r"[a-z0-9][a-z0-9._-]{0,20}", fullmatch=True)),
       link=st.one_of(TEXT, st.just("LICENSE"),
                      st.from_regex(r"https://[a-z]{1,10}\.example/[a-z]{0,8}", fullmatch=True)))
def test_custom_license_fields_are_validated_or_round_trip(run, license_name, link):
    from smolforge.errors import SmolforgeError

    try:
        _, data = render(run, license="other", license_name=license_name, license_link=link)
    except SmolforgeError as e:
        assert "license" in str(e)
        return
    assert (data["license"], data["license_name"], data["license_link"]) == ("other", license_name.strip(),
                                                                              link.strip())


@SETTINGS
@given(description=TEXT, limitations=TEXT, example=TEXT, citation=TEXT)
def test_body_fields_appear_verbatim_and_are_never_executed(run, description, limitations, example, citation):
    text, data = render(run, model_description=description, limitations=limitations, usage_examples=[example],
                        citation=citation)
    assert set(data) == EXPECTED_KEYS and data["license"] == "apache-2.0"
    body = text.split("\n---\n", 1)[1]
    for value in (description, limitations, example, citation):
        if value:
            assert value in body
