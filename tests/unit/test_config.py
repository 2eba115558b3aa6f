"""Config schema, presets and --set overrides."""

from __future__ import annotations

import pytest

from smolforge import presets
from smolforge.config.loading import load_config, parse_sets
from smolforge.errors import ConfigError, SmolforgeError

ALL_PRESETS = presets.names()


def test_all_presets_are_shipped():
    assert set(ALL_PRESETS) == {
        "tiny", "smollm3-sft", "smollm3-sft-h100-lightweight", "smollm3-sft-a100-large",
        "smollm3-sft-multiple-passes", "smollm3-sft-long-context", "smollm3-lora", "smollm3-qlora",
        "smollm3-dpo", "smollm3-apo", "smollm3-grpo", "tiny-grpo", "tiny-sft-answers",
    }


@pytest.mark.parametrize("name", ALL_PRESETS)
def test_every_value_a_preset_file_sets_is_what_its_config_trains(name):
    from smolforge.config.loading import get_path

    def leaves(data, prefix=""):
        for key, value in data.items():
            if isinstance(value, dict) and key != "fields":
                yield from leaves(value, f"{prefix}{key}.")
            else:
                yield f"{prefix}{key}", value

    resolved = load_config(preset=name).model_dump(mode="json")
    assert resolved["preset"] == name
    for path, value in leaves(presets.load_preset_data(name)):
        assert get_path(resolved, path) == value, path
    assert presets.description(name)  # the first comment line says what the preset is for


@pytest.mark.parametrize("name", ALL_PRESETS)
def test_every_preset_knob_has_a_tradeoff_comment(name):
    text = presets.read_text(name).split("model_description:")[0]  # free text after it is not a knob
    lines = [ln for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    knobs = [ln for ln in lines if not ln.rstrip().endswith(":")]  # sections end with ':'
    assert knobs
    assert [ln for ln in knobs if " # " not in ln] == []


def test_set_overrides_are_typed_and_nested():
    cfg = load_config(preset="tiny", sets=["training.learning_rate=1e-4", "card.tags=[a, b]", "data.max_samples=10"])
    assert cfg.training.learning_rate == 1e-4
    assert cfg.card.tags == ["a", "b"]
    assert cfg.data.max_samples == 10


def test_all_errors_are_collected_with_key_and_allowed_values():
    with pytest.raises(ConfigError) as err:
        load_config(preset="tiny", sets=["training.learning_rate=-1", "training.method=ppo",
                                         "training.batchsize=4", "data.format=xml"])
    text = str(err.value)
    assert text.startswith("4 problems in preset")
    assert "training.learning_rate" in text and "greater than 0" in text
    assert "training.method" in text and "'sft'" in text and "'dpo'" in text and "'ppo'" in text
    assert "training.batchsize: unknown key; did you mean 'batch_size'?" in text
    assert "data.format" in text and "'messages'" in text and "'xml'" in text
    assert err.value.exit_code == 2


def test_bad_set_syntax():
    with pytest.raises(ConfigError, match="expected section.key=value"):
        parse_sets(["training.learning_rate"])


def test_yaml_file_errors_name_the_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("training:\n  learning_rate: [1\n")
    with pytest.raises(SmolforgeError, match=r"bad.yaml is not valid YAML at line"):
        load_config(bad)
    notmap = tmp_path / "list.yaml"
    notmap.write_text("- a\n- b\n")
    with pytest.raises(SmolforgeError, match="must be a YAML mapping"):
        load_config(notmap)
    with pytest.raises(SmolforgeError, match="does not exist"):
        load_config(tmp_path / "missing.yaml")


def test_file_overrides_preset_and_set_overrides_file(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("preset: tiny\ntraining:\n  epochs: 2\n  batch_size: 4\n")
    cfg = load_config(f, sets=["training.batch_size=2"])
    assert cfg.preset == "tiny"
    assert cfg.model.name_or_path == "tiny"  # from the preset
    assert cfg.training.epochs == 2  # from the file
    assert cfg.training.batch_size == 2  # from --set


def test_unknown_preset():
    with pytest.raises(SmolforgeError, match="Unknown preset 'nope'. Available presets: smollm3-apo, smollm3-dpo"):
        load_config(preset="nope")


@pytest.mark.parametrize("repo", ["no-slash", "a/b/c", "a b/c", "/name", "user/", "user/name\n", "user/na me"])
def test_repo_id_validation(repo):
    import json

    with pytest.raises(ConfigError, match="publish.repo_id"):
        load_config(preset="tiny", sets=[f"publish.repo_id={json.dumps(repo)}"])


def test_dpo_needs_preference_format():
    with pytest.raises(ConfigError, match="needs data.format 'preference'"):
        load_config(preset="tiny", sets=["training.method=dpo", "data.format=messages"])


@pytest.mark.parametrize("name", ["bad name", "name\n", "../up", "-lead", "a/b"])
def test_experiment_name_validation(name):
    import json

    with pytest.raises(ConfigError, match="experiment_name"):
        load_config(preset="tiny", sets=[f"experiment_name={json.dumps(name)}"])
