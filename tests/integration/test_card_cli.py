"""`smolforge card RUN_DIR` through the real entry point: flags, @file, hand-edit protection, errors."""

from __future__ import annotations

import json

import yaml
from huggingface_hub import ModelCard

from tests.conftest import run_cli


def test_card_flags_reach_the_card_and_are_remembered(run_copy, tmp_path):
    limits = tmp_path / "limits.md"
    limits.write_text("Only knows the bundled chats.\n\n- not for production")
    proc = run_cli("card", str(run_copy), "--author-name", "Grace Hopper", "--model-description",
                   "A description: with # and 'quotes'", "--license", "mit", "--tag", "demo", "--tag", "tiny-chat",
                   "--usage-example", "Try: What is 2 plus 2?", "--limitations", f"@{limits}",
                   "--citation", "@@not-a-file", "--intended-use", "Demos of the pipeline.", cwd=tmp_path)
    assert "Model card written" in proc.stdout
    card = ModelCard.load(run_copy / "model" / "README.md")
    data = card.data.to_dict()
    assert "By Grace Hopper." in card.text and data["license"] == "mit"
    assert data["tags"][:2] == ["demo", "tiny-chat"]
    assert "A description: with # and 'quotes'" in card.text
    assert "Only knows the bundled chats.\n\n- not for production" in card.text
    assert "Try: What is 2 plus 2?" in card.text
    assert "@not-a-file" in card.text
    assert "## Uses\n\nDemos of the pipeline." in card.text  # a card input declared once in the schema
    trained = (run_copy / "config.yaml").read_bytes()
    saved = yaml.safe_load((run_copy / "overrides.yaml").read_text())["card"]  # config.yaml stays as trained
    assert saved["author_name"] == "Grace Hopper" and saved["tags"] == ["demo", "tiny-chat"]
    assert yaml.safe_load(trained)["card"]["author_name"] is None
    # a later `smolforge card` without flags keeps what was typed before
    run_cli("card", str(run_copy), cwd=tmp_path)
    assert "By Grace Hopper." in ModelCard.load(run_copy / "model" / "README.md").text
    assert (run_copy / "config.yaml").read_bytes() == trained


def test_hand_edited_card_is_not_overwritten_without_force(run_copy, tmp_path):
    readme = run_copy / "model" / "README.md"
    readme.write_text(readme.read_text() + "\nMy own notes.\n")
    proc = run_cli("card", str(run_copy), "--author-name", "X", cwd=tmp_path, check=False)
    assert proc.returncode == 2
    assert "edited by hand" in proc.stderr and "--force" in proc.stderr and "Traceback" not in proc.stderr
    assert readme.read_text().endswith("My own notes.\n")
    out = tmp_path / "other.md"
    run_cli("card", str(run_copy), "--output", str(out), cwd=tmp_path)
    assert out.exists() and readme.read_text().endswith("My own notes.\n")
    run_cli("card", str(run_copy), "--author-name", "X", "--force", cwd=tmp_path)
    assert "My own notes." not in readme.read_text()
    results = json.loads((run_copy / "results.json").read_text())
    import hashlib

    assert results["card"]["sha256"] == hashlib.sha256(readme.read_text().encode()).hexdigest()


def test_card_with_invalid_metadata_on_disk_is_replaced_only_with_force(run_copy, tmp_path):
    readme = run_copy / "model" / "README.md"
    readme.write_text("---\nlicense: [unclosed\n---\n# broken\n")
    assert run_cli("card", str(run_copy), cwd=tmp_path, check=False).returncode == 2
    run_cli("card", str(run_copy), "--force", cwd=tmp_path)
    assert ModelCard.load(readme).data.license == "apache-2.0"


def test_card_errors_are_one_paragraph_with_exit_2(run_copy, tmp_path):
    cases = [
        (["--license", "apache2"], "did you mean apache-2.0"),
        (["--license", "other"], "license_name"),
        (["--tag", "two words"], "each tag is one word"),
        (["--limitations", "@/nonexistent/file.md"], "--limitations: cannot read"),
        (["--template", str(tmp_path / "missing.md")], "--template: cannot read"),
    ]
    bad_tpl = tmp_path / "bad.md"
    bad_tpl.write_text("{{#if autor_name}}x{{/if}}")
    cases.append((["--template", str(bad_tpl)], "unknown variables: autor_name (did you mean author_name"))
    for args, msg in cases:
        proc = run_cli("card", str(run_copy), *args, cwd=tmp_path, check=False)
        assert proc.returncode == 2, args
        assert msg in proc.stderr, (args, proc.stderr)
        assert "Traceback" not in proc.stderr
    proc = run_cli("card", str(tmp_path / "not-a-run"), cwd=tmp_path, check=False)
    assert proc.returncode == 2 and "does not exist" in proc.stderr


def test_card_of_a_run_that_did_not_finish_is_refused_and_writes_nothing(run_copy, tmp_path):
    import shutil

    (run_copy / "results.json").unlink()
    shutil.rmtree(run_copy / "model")
    before = sorted(p.relative_to(run_copy) for p in run_copy.rglob("*"))
    proc = run_cli("card", str(run_copy), "--author-name", "X", cwd=tmp_path, check=False)
    assert proc.returncode == 2 and "this run did not finish" in proc.stderr and "--resume" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert sorted(p.relative_to(run_copy) for p in run_copy.rglob("*")) == before


def test_old_style_template_through_the_cli(run_copy, tmp_path):
    tpl = tmp_path / "old.md"
    tpl.write_text("# {{model_name}}\n{{#if author_name}}By {{{author_name}}}.{{else}}No author.{{/if}}\n"
                   "{{#each tags}}- {{this}}\n{{/each}}Loss: {{validation_loss|default:'not measured'}}\n")
    out = tmp_path / "card.md"
    run_cli("card", str(run_copy), "--template", str(tpl), "--author-name", "{{license}}", "--output", str(out),
            cwd=tmp_path)
    text = out.read_text()
    results = json.loads((run_copy / "results.json").read_text())
    assert "By {{license}}." in text
    assert "- smolforge\n- sft\n" in text
    assert f"Loss: {results['eval_loss']}" in text
