"""The wizard's parts without a terminal: answer checks, token scopes, the draft's defaults, the YAML writer."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from smolforge.config.fields import setting
from smolforge.config.loading import load_config
from smolforge.wizard import checks
from smolforge.wizard.ask import parser
from smolforge.wizard.draft import Draft, preset_for_model
from smolforge.wizard.hub import write_access
from smolforge.wizard.yamlout import diff, write_config


def _check(path: str, text: str):
    return parser(setting(path))(text)


@pytest.mark.parametrize(("text", "value"), [("2e-5", 2e-5), (" 0.001 ", 1e-3), ("1", 1.0)])
def test_learning_rate_accepts_numbers_in_range(text, value):
    assert _check("training.learning_rate", text) == value


@pytest.mark.parametrize(("text", "reason"), [("abc", "valid number"), ("0", "greater than 0"),
                                              ("2e5", "less than or equal to 1"), ("-1e-4", "greater than 0"),
                                              ("nan", "finite number")])
def test_learning_rate_rejects_with_the_schemas_reason(text, reason):
    with pytest.raises(ValueError, match=f"training.learning_rate: .*{reason}"):
        _check("training.learning_rate", text)


def test_integers_and_optional_values():
    assert _check("training.batch_size", "1024") == 1024
    with pytest.raises(ValueError, match="less than or equal to 4096"):
        _check("training.batch_size", "5000")
    with pytest.raises(ValueError, match="valid integer"):
        _check("training.batch_size", "2.5")
    assert _check("data.max_samples", "  ") is None


@pytest.mark.parametrize("bad", ["not a repo", "user/", "/name", "a/b/c", "-user/name", "user/na me", "a--b/c"])
def test_repo_ids_must_look_like_user_name(bad):
    with pytest.raises(ValueError, match="must look like user/name"):
        _check("publish.repo_id", bad)
    assert _check("publish.repo_id", " ada/adder ") == "ada/adder"
    assert _check("publish.repo_id", "") is None


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
    with pytest.raises(ValueError, match="as a Hub dataset id it must be name or owner/name"):
        checks.parse_dataset("a b c")


def test_model_answers_follow_the_rule_run_applies(tmp_path):
    from smolforge.modelio import model_problem

    (tmp_path / "m").mkdir()
    (tmp_path / "f.bin").write_text("x")
    for good in ("tiny", "gpt2", "HuggingFaceTB/SmolLM3-3B", str(tmp_path / "m")):  # canonical ids have no owner
        assert checks.parse_model(good) == good and model_problem(good) is None
    for bad, reason in [("./missing-model", "does not exist"), ("/no/such/dir", "does not exist"),
                        (str(tmp_path / "f.bin"), "is a file, not a model folder"),
                        ("a b", "as a Hub model id it must be name or owner/name"), ("x/y/z", "owner/name"),
                        ("", "Give a Hub model id")]:
        with pytest.raises(ValueError, match=reason):
            checks.parse_model(bad)
        if bad:
            assert reason in model_problem(bad)


def test_licenses_tags_and_text_files(tmp_path):
    assert checks.parse_license("MIT") == "mit"
    assert checks.parse_license("other") == "other"
    with pytest.raises(ValueError, match="did you mean apache-2.0"):
        checks.parse_license("apache2.0")
    assert _check("card.tags", "math, tiny-test, license:mit") == ["math", "tiny-test", "license:mit"]
    with pytest.raises(ValueError, match="'two words'"):
        _check("card.tags", "ok, two words")
    (tmp_path / "usage.md").write_text("line 1\nline 2\n")
    usage = parser(setting("card.usage_examples"), one_item=True)
    assert usage(f"@{tmp_path / 'usage.md'}") == "line 1\nline 2"
    assert usage("@@handle") == "@handle"
    with pytest.raises(ValueError, match="cannot read"):
        usage(f"@{tmp_path / 'nope.md'}")
    (tmp_path / "empty.md").write_text("\n")
    with pytest.raises(ValueError, match="is empty"):
        _check("card.limitations", f"@{tmp_path / 'empty.md'}")


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
    draft = Draft.build("smollm3-sft", {"data.name": "builtin"})
    assert draft.get("data.config") is None and draft.get("data.eval_split") is None
    assert draft.get("data.reasoning") == "no_think"  # about the model, kept
    tiny = Draft.build("tiny")
    assert "trained from random initial weights" in tiny.default_description()
    assert "smolforge built-in chats" in tiny.default_description()
    tiny.set("data.name", "other/data")
    assert "other/data" in tiny.default_description()  # the description follows the data


def test_another_model_drops_the_presets_card_license():
    draft = Draft.build("tiny", {"model.name_or_path": "someone/model"})
    assert draft.get("card.license") is None and draft.default_license() is None
    assert Draft.build("tiny").default_license() == "apache-2.0"
    assert Draft.build("smollm3-sft").default_license() == "apache-2.0"  # SmolLM3's, known offline


def test_flags_become_config_values():
    from smolforge.cliflags import values_from_flags

    flags = values_from_flags({"flag__training__epochs": "2", "flag__training__learning_rate": "1e-4",
                               "flag__card__tags": ["a", "b"], "flag__tracking__space_id": "me/trackio",
                               "flag__publish__private": False}, "init")
    cfg = Draft.build("smollm3-lora", flags, ["training.seed=7"]).config()
    assert (cfg.training.epochs, cfg.training.max_steps, cfg.training.learning_rate) == (2, -1, 1e-4)
    assert cfg.card.tags == ["a", "b"] and cfg.tracking.space_id == "me/trackio" and not cfg.publish.private
    assert cfg.training.seed == 7 and cfg.training.finetune == "lora"


def test_yaml_lists_only_what_differs_and_reloads_identically(tmp_path):
    draft = Draft.build("smollm3-sft", {"training.learning_rate": 5e-5,
                                        "card.author_name": "Ada: \"quoted\" # not a comment"})
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

    draft = Draft.build("tiny")  # data.fields == {}
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
