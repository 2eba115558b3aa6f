"""The model card: golden files, every variable, absent-not-placeholder, user input, templates."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest
import yaml
from huggingface_hub import ModelCard

from smolforge.card.context import LEGACY_TEMPLATE_VARIABLES, USER_CARD_VARIABLES, build_context
from smolforge.card.render import render_body, render_card
from smolforge.card.writer import write_card
from smolforge.config.loading import validate
from smolforge.errors import SmolforgeError
from smolforge.runfolder import RunFolder

FIXTURES = Path(__file__).parent.parent / "fixtures" / "card"
UPDATE = os.environ.get("SMOLFORGE_UPDATE_GOLDEN") == "1"


GOLDEN = ["tiny", "smollm3_reasoning", "lora_adapter", "qlora_adapter", "dpo", "quantized", "resumed"]


BASE_RUN = "/home/ada/work/runs/chat-base"  # the base the LoRA, QLoRA and DPO fixtures trained on: a tiny SFT run


def make_run(tmp_path: Path, name: str) -> RunFolder:
    """A run folder from a fixture: the records of a real run, with its model/ (plot) and variant folders. A run
    whose base is the fixtures' `chat-base` run gets that run beside it (the `tiny` fixture's records: a model
    smolforge trained from random weights), so its card can say what its base is."""
    root = tmp_path / name
    shutil.copytree(FIXTURES / name, root, ignore=shutil.ignore_patterns("expected_*"))
    config = root / "config.yaml"
    if BASE_RUN in config.read_text():
        base = tmp_path / "base-of" / name / "chat-base"
        if not base.exists():
            shutil.copytree(FIXTURES / "tiny", base, ignore=shutil.ignore_patterns("expected_*"))
            (base / "model").mkdir()
        config.write_text(config.read_text().replace(BASE_RUN, str(base)))
    (root / "model").mkdir()
    (root / "model" / "loss_curve.png").write_bytes(b"")  # present, so not redrawn: the card links it
    for q in (RunFolder(root).read_results().get("quantized") or {}).values():
        if q.get("path"):
            (root / q["path"]).mkdir(parents=True)
    return RunFolder(root)


def cfg_of(run: RunFolder):
    return validate(yaml.safe_load(run.config_path.read_text()), "fixture")


def cfg_with(run: RunFolder, **card):
    """The run's config with card settings changed, validated like any front end's values."""
    data = yaml.safe_load(run.config_path.read_text())
    data["card"] = {**(data.get("card") or {}), **card}
    return validate(data, "fixture")


def card_text(run: RunFolder, **card) -> str:
    return str(render_card(run, cfg_with(run, **card), run.read_results()))


@pytest.mark.parametrize("name", GOLDEN)
def test_golden_card(tmp_path, name):
    run = make_run(tmp_path, name)
    path = write_card(run, cfg_of(run), force=True)
    text = path.read_text(encoding="utf-8")
    golden = FIXTURES / name / "expected_README.md"
    if UPDATE:
        golden.write_text(text, encoding="utf-8")
    assert text == golden.read_text(encoding="utf-8")


def test_full_card_metadata_is_hub_shaped(tmp_path):
    run = make_run(tmp_path, "smollm3_reasoning")
    data = ModelCard(card_text(run)).data.to_dict()
    assert data["base_model"] == "HuggingFaceTB/SmolLM3-3B"
    assert data["base_model_relation"] == "finetune"
    assert data["datasets"] == ["ada/support-reasoning-chats"]
    assert data["license"] == "apache-2.0"  # the base model's license, known offline
    assert data["library_name"] == "transformers"
    assert "author" not in data  # not a Hub metadata key: the author is in the body and the citation
    assert data["tags"][:2] == ["chat", "reasoning"] and {"smolforge", "sft", "trl"} <= set(data["tags"])
    assert data["pipeline_tag"] == "text-generation" and "text-generation" not in data["tags"]
    results = run.read_results()
    ds = data["model-index"][0]["results"][0]["dataset"]
    assert ds == {"name": "ada/support-reasoning-chats", "type": "ada/support-reasoning-chats", "split": "train"}
    metrics = {m["type"]: m for m in data["model-index"][0]["results"][0]["metrics"]}
    assert metrics["loss"]["value"] == float(f"{results['eval_loss']:.4g}")  # 4 significant digits
    assert metrics["perplexity"]["value"] == float(f"{results['perplexity']:.4g}")
    assert "held out: 10% of train, seed 42" in metrics["loss"]["name"]


def test_local_data_is_described_as_load_dataset_reads_it_never_as_a_hub_id(tmp_path):
    """A local file is `json` + its file name (what load_dataset takes), never an owner/name id or a path."""
    run = make_run(tmp_path, "quantized")
    data = ModelCard(card_text(run)).data.to_dict()
    ds = data["model-index"][0]["results"][0]["dataset"]
    assert ds["type"] == "json" and ds["split"] == "train"
    assert ds["args"] == {"data_files": {"train": ["support_chats.jsonl"]}}
    assert "datasets" not in data
    import datasets as hf_datasets

    # what a reader does with it: load_dataset(type, **args) beside the file gives the split the card names
    (tmp_path / "support_chats.jsonl").write_text('{"messages": [{"role": "user", "content": "hi"}]}\n')
    cwd = os.getcwd()
    try:
        os.chdir(tmp_path)
        loaded = hf_datasets.load_dataset(ds["type"], **ds["args"])
    finally:
        os.chdir(cwd)
    assert list(loaded) == [ds["split"]] and loaded[ds["split"]].num_rows == 1


def test_every_seed_variable_and_enhancement_exists(tmp_path):
    run = make_run(tmp_path, "smollm3_reasoning")
    cfg = cfg_of(run)
    ctx = build_context(run, cfg, run.read_results())
    assert set(LEGACY_TEMPLATE_VARIABLES + USER_CARD_VARIABLES) <= set(ctx)
    assert ctx["repo_name"] == "ada/smollm3-reasoning"
    assert ctx["model_name_slug"] == "smollm3_reasoning_20261120_101500"
    assert ctx["training_config_type"] == "smollm3-sft"
    assert ctx["trainer_type"] == "SFT"
    assert ctx["citation_year"] == 2026


def test_missing_results_leave_sections_out(tmp_path):
    run = make_run(tmp_path, "tiny")
    results = run.read_results()
    for key in ("eval_loss", "perplexity", "eval_split", "baseline_eval_loss", "eval_history", "evaluation",
                "model_files", "tokens", "parameters"):
        results.pop(key, None)
    text = str(render_card(run, cfg_of(run), results))
    data = ModelCard(text).data.to_dict()
    assert "model-index" not in data  # no eval split: no metrics to claim
    assert "author" not in data
    assert "Quantized variants" not in text
    assert "Validation loss |" not in text and "Perplexity |" not in text
    assert "This run had no evaluation split" in text
    assert "Technical specifications" not in text and "sha256" not in text and "At a glance" not in text
    for placeholder in ("N/A", "None", "nan", "Your Name", "TODO", "not set"):
        assert not re.search(rf"\b{re.escape(placeholder)}\b", text), placeholder
    assert data["license"] == "apache-2.0"


def test_quantized_flag_false_when_variant_folder_is_missing(tmp_path):
    run = make_run(tmp_path, "quantized")
    assert build_context(run, cfg_of(run), run.read_results())["quantized_models"] is True
    shutil.rmtree(run.root / "quantized")
    ctx = build_context(run, cfg_of(run), run.read_results())
    assert ctx["quantized_models"] is False and ctx["quantized"] == []
    text = card_text(run)
    assert "Quantized variants" not in text and "torchao" not in text.split("## How to use")[1].split("## ")[0]


def test_author_defaults_to_username_and_never_to_your_name(tmp_path):
    run = make_run(tmp_path, "tiny")
    cfg = cfg_of(run)
    assert build_context(run, cfg, run.read_results())["author_name"] is None
    ctx = build_context(run, cfg, run.read_results(), username="octocat")
    assert ctx["author_name"] == "octocat"
    assert ctx["repo_name"] == "octocat/tiny-sft"


def test_unknown_base_license_fails_with_the_fix(tmp_path):
    run = make_run(tmp_path, "tiny")
    data = yaml.safe_load(run.config_path.read_text())
    data["card"]["license"] = None
    with pytest.raises(SmolforgeError, match=r"card.license: the license of the base model 'tiny' is not known"):
        build_context(run, validate(data, "x"), run.read_results())


@pytest.mark.parametrize("bad,msg", [("apache2", "did you mean apache-2.0"),
                                     ("MIT-ish", "must be a Hugging Face license")])
def test_license_is_validated_offline(tmp_path, bad, msg):
    run = make_run(tmp_path, "tiny")
    with pytest.raises(SmolforgeError, match=msg):
        card_text(run, license=bad)


def test_custom_license_needs_name_and_link(tmp_path):
    run = make_run(tmp_path, "tiny")
    with pytest.raises(SmolforgeError, match="license_name"):
        card_text(run, license="other")
    text = card_text(run, license="other", license_name="acme-license-1.0", license_link="https://acme.example/l")
    data = ModelCard(text).data.to_dict()
    assert (data["license"], data["license_name"], data["license_link"]) == (
        "other", "acme-license-1.0", "https://acme.example/l")


def test_card_rendering_is_offline(tmp_path, monkeypatch):
    import socket

    def no_network(*a, **k):
        raise AssertionError("rendering tried to open a socket")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    run = make_run(tmp_path, "smollm3_reasoning")
    assert "| Result | Value |" in card_text(run)


# ------------------------------------------------------------------ old-style templates

CTX = {"author_name": "Ada", "model_name": "m", "tags": ["a", "b"], "quantized_models": False,
       "perplexity": None, "license": "mit", "nested": {"x": 1}}


def render(template: str, **extra) -> str:
    return render_body(template, {**CTX, **extra})


def test_legacy_if_else():
    assert render("{{#if author_name}}by {{author_name}}{{else}}anonymous{{/if}}") == "by Ada"
    assert render("{{#if perplexity}}ppl {{perplexity}}{{else}}no ppl{{/if}}") == "no ppl"


def test_legacy_nesting_to_any_depth():
    t = ("{{#if author_name}}A{{#if license}}L{{#unless quantized_models}}U{{#if perplexity}}P{{else}}p{{/if}}"
         "{{/unless}}{{else}}l{{/if}}{{else}}a{{/if}}")
    assert render(t) == "ALUp"


def test_legacy_unless():
    assert render("{{#unless quantized_models}}no variants{{/unless}}") == "no variants"
    assert render("{{#unless author_name}}x{{else}}has author{{/unless}}") == "has author"


def test_legacy_each_with_this_and_index():
    assert render("{{#each tags}}[{{@index}}:{{this}}]{{/each}}") == "[0:a][1:b]"
    assert render("{{#each tags}}{{#if @first}}first {{/if}}{{this}}{{/each}}") == "first ab"


def test_legacy_triple_braces_are_raw():
    assert render("{{{author_name}}} & {{{model_name}}}", author_name="<b>Ada</b>") == "<b>Ada</b> & m"


def test_legacy_default_filter():
    assert render("{{perplexity|default:'not measured'}}") == "not measured"
    assert render("{{author_name|default:'someone'}}") == "Ada"
    assert render('{{ perplexity | default: "n/m" }}') == "n/m"


def test_values_are_never_re_expanded():
    out = render("{{#if author_name}}{{author_name}}{{/if}} {{{model_name}}}", author_name="{{license}} {% x %}",
                 model_name="{{#if author_name}}boom{{/if}}")
    assert out == "{{license}} {% x %} {{#if author_name}}boom{{/if}}"


def test_template_text_is_never_jinja_code_in_legacy_mode():
    out = render("{{#if author_name}}{% for x in range(3) %}X{% endfor %}{% raw %} ok{{/if}}")
    assert out == "{% for x in range(3) %}X{% endfor %}{% raw %} ok"


def test_legacy_unknown_variable_lists_closest_names():
    with pytest.raises(SmolforgeError, match=r"unknown variables: autor_name \(did you mean author_name"):
        render("{{#if autor_name}}x{{/if}}")


@pytest.mark.parametrize("template,msg", [
    ("{{#if author_name}}x", "never closed"),
    ("x{{/if}}", "closes a block that was never opened"),
    ("{{#if author_name}}{{#each tags}}{{/if}}{{/each}}", "closes {{#each}} opened on line 1"),
    ("{{else}}", "must sit inside"),
    ("{{#if author_name}}{{this}}{{/if}}", "only valid inside {{#each"),
    ("{{#if author_name}}{{author_name + 1}}{{/if}}", "unsupported tag"),
    ("{{ author_name + 1 }}", "rendering failed"),
    ("{% if %}", "Fix the template syntax"),
])
def test_legacy_syntax_errors(template, msg):
    with pytest.raises(SmolforgeError, match=msg):
        render(template)


def test_a_value_in_a_template_header_cannot_add_keys_or_change_the_license(tmp_path):
    run = make_run(tmp_path, "tiny")
    tpl = tmp_path / "t.md"
    tpl.write_text("---\n{{#if author_name}}author: {{author_name}}{{/if}}\nlicense: mit\n---\n# {{model_name}}\n")
    text = card_text(run, template=str(tpl), author_name="x\nlicense: gpl-3.0")
    data = ModelCard(text).data.to_dict()
    assert data["license"] == "apache-2.0" and data["author"] == "x\nlicense: gpl-3.0"  # one string, no new key
    assert text.rstrip().endswith("# tiny-sft")


def test_crlf_template(tmp_path):
    run = make_run(tmp_path, "tiny")
    tpl = tmp_path / "crlf.md"
    tpl.write_bytes(b"# {{model_name}}\r\n{{#if author_name}}by {{author_name}}\r\n{{else}}anon\r\n{{/if}}")
    text = card_text(run, template=str(tpl), author_name="Ada")
    assert text.startswith("---\r\n") and "\r\n---\r\n\r\n# tiny-sft" in text
    assert text.endswith("# tiny-sft\r\nby Ada\r\n")
    assert "\n" not in text.replace("\r\n", "")  # no stray LF
    assert ModelCard(text).data.to_dict()["license"] == "apache-2.0"


# ------------------------------------------------------------------ Jinja templates and the sandbox

def test_jinja_user_template():
    assert render("{% for t in tags %}{{ t|upper }}{% endfor %}") == "AB"


@pytest.mark.parametrize(("template", "leak"), [
    ("{{ ''.__class__.__mro__ }}", "<class 'str'>"),
    ("{{ tags.__class__.__subclasses__() }}", "<class"),
    ("{{ cycler.__init__.__globals__.os }}", "<module 'os'"),
    ("{{ model_name.__class__.__init__ }}", "<slot wrapper"),
])
def test_sandbox_blocks_what_plain_jinja_would_leak(template, leak):
    import jinja2

    assert leak in jinja2.Environment().from_string(template).render(**CTX)  # the template does leak without it
    try:
        out = render(template)
    except SmolforgeError as e:
        assert "unsafe operation" in str(e) and leak not in str(e)
        return
    assert leak not in out and "class" not in out


def test_user_text_is_never_executed_as_a_template(tmp_path):
    run = make_run(tmp_path, "tiny")
    text = card_text(run, model_description="{{ 7*7 }} {% for x in range(3) %}X{% endfor %}",
                     limitations="{{#if license}}leak{{/if}}")
    assert "{{ 7*7 }} {% for x in range(3) %}X{% endfor %}" in text
    assert "{{#if license}}leak{{/if}}" in text
    assert "XXX" not in text and " 49 " not in text


def test_local_base_model_points_metadata_at_its_hub_ancestor(tmp_path):
    run = make_run(tmp_path, "tiny")
    sft = tmp_path / "sft-model"
    sft.mkdir()
    (sft / "README.md").write_text("---\nbase_model: HuggingFaceTB/SmolLM3-3B\nlicense: apache-2.0\n---\n# sft\n")
    data = yaml.safe_load(run.config_path.read_text())
    data["model"]["name_or_path"] = str(sft)
    cfg = validate(data, "x")
    card = render_card(run, cfg, run.read_results())
    meta = ModelCard(str(card)).data.to_dict()
    assert meta["base_model"] == "HuggingFaceTB/SmolLM3-3B" and meta["base_model_relation"] == "finetune"
    assert "the local model `sft-model` (itself fine-tuned from HuggingFaceTB/SmolLM3-3B)" in str(card)
    assert str(tmp_path) not in str(card)  # a published card names a local base by its folder, never its path
    (sft / "README.md").write_text("# no metadata\n")
    card = render_card(run, cfg, run.read_results())
    assert "base_model" not in ModelCard(str(card)).data.to_dict()  # a local path is never a base_model id


def test_a_template_header_keeps_its_own_keys_merged_with_the_generated_metadata(tmp_path):
    """The seed's own pattern: `{{#if author_name}}author: {{author_name}}{{/if}}` in the template's front matter.
    Its keys reach the card's metadata; a list it extends keeps the generated items; what the run states stands."""
    run = make_run(tmp_path, "tiny")
    template = tmp_path / "card.md"
    template.write_text("---\n{{#if author_name}}author: {{author_name}}{{/if}}\nlicense: mit\ntags:\n- my-tag\n"
                        "---\n# {{model_name}}\n\nBy {{author_name}}.\n", encoding="utf-8")
    text = card_text(run, template=str(template), author_name="Ada Lovelace")
    data = ModelCard(text).data.to_dict()
    assert data["author"] == "Ada Lovelace"
    assert data["license"] == "apache-2.0"  # the run's license (from its config), not the template's literal
    assert "my-tag" in data["tags"] and "smolforge" in data["tags"] and "model-index" in data
    assert "By Ada Lovelace." in text and text.count("\n---\n") == 1  # one header: the template's is not in the body
    no_author = ModelCard(card_text(run, template=str(template))).data.to_dict()
    assert "author" not in no_author  # the {{#if}} kept the key out when there was no author


def test_a_template_header_that_is_not_yaml_once_rendered_is_one_paragraph(tmp_path):
    run = make_run(tmp_path, "tiny")
    template = tmp_path / "card.md"
    template.write_text("---\nauthor: [{{author_name}}\n---\n# {{model_name}}\n", encoding="utf-8")
    with pytest.raises(SmolforgeError) as e:
        card_text(run, template=str(template), author_name="Ada")
    assert f"Card template {template}: its YAML header is not valid YAML once rendered" in str(e.value)
