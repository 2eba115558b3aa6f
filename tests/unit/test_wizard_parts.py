"""The wizard's parts without a terminal: answer checks, token scopes, the draft's defaults, the YAML writer."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from smolforge.configfile import load_config
from smolforge.wizard import checks
from smolforge.wizard.draft import Draft, InitFlags, preset_dump, preset_for_model
from smolforge.wizard.hub import write_access
from smolforge.wizard.yamlout import diff, write_config


@pytest.mark.parametrize(("text", "value"), [("2e-5", 2e-5), (" 0.001 ", 1e-3), ("1", 1.0)])
def test_learning_rate_accepts_numbers_in_range(text, value):
    assert checks.parse_learning_rate(text) == value


@pytest.mark.parametrize(("text", "reason"), [("abc", "must be a number"), ("0", "above 0"), ("2e5", "at most 1"),
                                              ("-1e-4", "above 0"), ("nan", "above 0")])
def test_learning_rate_rejects_with_a_reason(text, reason):
    with pytest.raises(ValueError, match=reason):
        checks.parse_learning_rate(text)
    assert checks.validator(checks.parse_learning_rate)(text) != True  # noqa: E712 (questionary wants the reason)


def test_integers_and_optional_values():
    assert checks.parse_int("1_024", "Batch", 1, 4096) == 1024
    with pytest.raises(ValueError, match="from 1 to 4,096"):
        checks.parse_int("5000", "Batch", 1, 4096)
    with pytest.raises(ValueError, match="whole number"):
        checks.parse_int("2.5", "Batch", 1, 4096)
    assert checks.parse_optional_int("  ", "Max samples", 1, 10) is None


@pytest.mark.parametrize("bad", ["not a repo", "user/", "/name", "a/b/c", "-user/name", "user/na me"])
def test_repo_ids_must_look_like_user_name(bad):
    with pytest.raises(ValueError, match="user/name"):
        checks.parse_repo_id(bad)
    assert checks.parse_repo_id(" ada/adder ") == "ada/adder"
    assert checks.parse_optional_repo_id("") is None


def test_dataset_answers(tmp_path):
    (tmp_path / "d.jsonl").write_text("{}\n")
    (tmp_path / "d.txt").write_text("x\n")
    assert checks.parse_dataset(str(tmp_path / "d.jsonl")) == str(tmp_path / "d.jsonl")
    assert checks.parse_dataset("HuggingFaceTB/smoltalk") == "HuggingFaceTB/smoltalk"
    assert checks.parse_dataset("builtin") == "builtin"
    with pytest.raises(ValueError, match="does not exist"):
        checks.parse_dataset("./missing.jsonl")
    with pytest.raises(ValueError, match="does not exist"):  # a mistyped file is not a Hub id, as in `run`
        checks.parse_dataset("data/train.jsonl")
    with pytest.raises(ValueError, match="use a .jsonl"):
        checks.parse_dataset(str(tmp_path / "d.txt"))
    with pytest.raises(ValueError, match="neither"):
        checks.parse_dataset("a b c")


def test_licenses_tags_and_text_files(tmp_path):
    assert checks.parse_license("MIT") == "mit"
    assert checks.parse_license("other") == "other"
    with pytest.raises(ValueError, match="Did you mean apache-2.0"):
        checks.parse_license("apache2.0")
    assert checks.parse_tags("math, tiny-test,math, license:mit") == ["math", "tiny-test", "license:mit"]
    with pytest.raises(ValueError, match="'two words'"):
        checks.parse_tags("ok, two words")
    (tmp_path / "usage.md").write_text("line 1\nline 2\n")
    assert checks.parse_text_or_file(f"@{tmp_path / 'usage.md'}", "Usage") == "line 1\nline 2"
    assert checks.parse_text_or_file("@@handle", "Usage") == "@handle"
    with pytest.raises(ValueError, match="cannot read"):
        checks.parse_text_or_file(f"@{tmp_path / 'nope.md'}", "Usage")


def test_token_answers_never_repeat_the_token():
    assert checks.parse_token("") == ""
    with pytest.raises(ValueError) as err:
        checks.parse_token("hf_secret value")
    assert "secret" not in str(err.value)


@pytest.mark.parametrize(("info", "can"), [
    ({"auth": {"accessToken": {"role": "write"}}}, True),
    ({"auth": {"accessToken": {"role": "read"}}}, False),
    ({"auth": {"accessToken": {"role": "fineGrained", "fineGrained": {"scoped": [
        {"entity": {"type": "user", "name": "a"}, "permissions": ["repo.content.read", "repo.write"]}]}}}}, True),
    ({"auth": {"accessToken": {"role": "fineGrained", "fineGrained": {"scoped": [
        {"entity": {"type": "org", "name": "o"}, "permissions": ["repo.write"]}]}}}}, False),
    ({"name": "a"}, None),
])
def test_write_access_from_whoami(info, can):
    assert write_access(info) is can


def test_presets_follow_the_model():
    assert preset_for_model("tiny") == "tiny"
    assert preset_for_model("HuggingFaceTB/SmolLM3-3B") == "smollm3-sft"
    assert preset_for_model("someone/other-model") == "smollm3-sft"


def test_another_dataset_drops_the_presets_dataset_specific_values():
    draft = Draft.build("smollm3-sft", InitFlags(dataset="builtin"))
    assert draft.get("data.config") is None and draft.get("data.eval_split") is None
    assert draft.get("data.reasoning") == "no_think"  # about the model, kept
    tiny = Draft.build("tiny", InitFlags())
    assert tiny.default_description() == preset_dump("tiny")["card"]["model_description"]
    tiny.set_dataset("other/data")
    assert "other/data" in tiny.default_description()  # the preset's text described its own data


def test_another_model_drops_the_presets_card_license():
    draft = Draft.build("tiny", InitFlags(base_model="someone/model"))
    assert draft.get("card.license") is None and draft.default_license() is None
    assert Draft.build("tiny", InitFlags()).default_license() == "apache-2.0"
    assert Draft.build("smollm3-sft", InitFlags()).default_license() == "apache-2.0"  # SmolLM3's, known offline


def test_flags_become_config_values():
    flags = InitFlags(epochs=2, learning_rate=1e-4, tags=["a", "b"], trackio_space="me/trackio", private=False,
                      sets=["training.seed=7"])
    cfg = Draft.build("smollm3-lora", flags).config()
    assert (cfg.training.epochs, cfg.training.max_steps, cfg.training.learning_rate) == (2, -1, 1e-4)
    assert cfg.card.tags == ["a", "b"] and cfg.tracking.space_id == "me/trackio" and not cfg.publish.private
    assert cfg.training.seed == 7 and cfg.training.finetune == "lora"


def test_yaml_lists_only_what_differs_and_reloads_identically(tmp_path):
    draft = Draft.build("smollm3-sft", InitFlags(learning_rate=5e-5, author_name="Ada: \"quoted\" # not a comment"))
    cfg = draft.config()
    path = write_config(tmp_path / "out" / "cfg.yaml", cfg, draft.preset, draft.preset_data)
    text = path.read_text()
    assert text.startswith("# smolforge config")
    assert yaml.safe_load(text) == {"preset": "smollm3-sft", "training": {"learning_rate": 5e-5},
                                    "card": {"author_name": "Ada: \"quoted\" # not a comment"}}
    assert load_config(path) == cfg
    assert [p.name for p in path.parent.iterdir()] == ["cfg.yaml"]


def test_yaml_that_would_not_reload_identically_is_refused(tmp_path, monkeypatch):
    """A mapping cannot lose keys through the merge onto the preset: the file is refused rather than wrong."""
    import smolforge.presets as presets
    from smolforge.errors import SmolforgeError

    draft = Draft.build("tiny", InitFlags())  # data.fields == {}
    real = presets.load_preset_data

    def with_fields(name):  # the preset as `smolforge run` will read it now maps a column
        data = real(name)
        data.setdefault("data", {})["fields"] = {"text": "body"}
        return data

    monkeypatch.setattr(presets, "load_preset_data", with_fields)
    assert diff(draft.data, draft.preset_data) == {}
    with pytest.raises(SmolforgeError, match="Nothing was written"):
        write_config(tmp_path / "cfg.yaml", draft.config(), "tiny", draft.preset_data)
    assert list(tmp_path.iterdir()) == []


def test_init_never_imports_training_libraries(tmp_path):
    code = (
        "import sys\n"
        f"sys.argv = ['smolforge', 'init', '--yes', '--output', {str(tmp_path / 'x.yaml')!r}]\n"
        "from smolforge.cli import main\n"
        "try:\n    main()\nexcept SystemExit as e:\n    assert e.code in (0, None), e.code\n"
        "print('HEAVY:', [m for m in ('torch', 'transformers', 'trl', 'peft', 'datasets', 'torchao') "
        "if m in sys.modules])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "HEAVY: []" in out, out
    assert Path(tmp_path / "x.yaml").exists()
