"""Every setting is declared once and reachable from every front end with the same check and message.

For each setting of the schema: a YAML file and `--set` reach it; a setting with a flag is an option
of `run` and `init` (and `card` for card settings) with that flag; the wizard's steps name only real
settings; and a bad value gets the same problem line from `--set`, its flag and the wizard.
"""

from __future__ import annotations

import json
import typing

import pytest
import yaml
from typer.main import get_command

from smolforge.cli import app
from smolforge.cliflags import settings_for, values_from_flags
from smolforge.config import fields
from smolforge.config.loading import deep_merge, get_path, load_config, nest
from smolforge.errors import ConfigError
from smolforge.wizard.ask import parser
from smolforge.wizard.draft import STEPS

# A valid value that differs from the default, for settings whose rules a generic value would not meet.
SAMPLES = {
    "experiment_name": "run-7", "output_dir": "elsewhere", "model.name_or_path": "someone/base",
    "model.revision": "main", "model.license": "mit", "data.name": "other.jsonl", "data.config": "all",
    "data.split": "train_sft", "data.eval_split": "test", "data.fields": {"prompt": "q"},
    "data.roles": {"bot": "assistant"},
    "data.system_prompt": "Be brief.", "tracking.space_id": "ada/trackio", "tracking.dataset_repo": "ada/metrics",
    "tracking.project": "p", "tracking.dir": "/tmp/t", "card.license": "mit", "card.license_name": "my-lic-1.0",
    "card.license_link": "https://example.com/l", "card.tags": ["chat"], "card.language": ["fr"],
    "card.usage_examples": ["Ask it."], "publish.repo_id": "ada/model", "publish.demo_space": "ada/demo",
    "publish.endpoint": "http://127.0.0.1:9", "quantize.methods": ["int8"],
    "training.lora.target_modules": ["q_proj"], "publish.gguf_repo_id": "ada/model-gguf",
    "training.max_steps": 5, "data.max_tokens": 99, "training.eval_steps": 7, "card.template": "t.md",
    "model.tiny.hidden_size": 64, "model.tiny.num_heads": 2, "model.tiny.num_kv_heads": 1, "data.max_samples": 100,
    "training.activation_checkpointing": True, "training.liger_kernel": False, "evaluation.limit": 50,
    "evaluation.modes": ["think"], "training.grpo.reward_weights": [0.5],
    "evaluation.max_gen_tokens": 64, "evaluation.tasks": ["builtin"],
    "training.rdzv_endpoint": "node0:29400", "training.global_batch_size": 16,
    "training.grpo.rewards": ["accuracy", "length"], "training.grpo.length_target": 100,
}
# Settings that are valid only together with others (a multi-node topology).
COMPANIONS = {
    "training.nnodes": {"training.rdzv_endpoint": "node0:29400", "experiment_name": "run-7"},
    "training.node_rank": {"training.nnodes": 2, "training.rdzv_endpoint": "node0:29400", "experiment_name": "run-7"},
    "training.grpo.reward_weights": {"training.grpo.rewards": ["accuracy"]},
}
# A value each flagged setting must refuse (as typed on the command line).
BAD_TEXT = {int: "abc", float: "abc", str: None}


def _another_value(s: fields.Setting):
    if s.path in SAMPLES:
        return SAMPLES[s.path]
    default = s.default
    if s.choices:
        return next(c for c in s.choices if c != default)
    base = fields.base_type(s.info.annotation)
    if base is bool or isinstance(default, bool):
        return not default
    if isinstance(default, int):
        return default + 1
    if isinstance(default, float):
        return default / 2 if default else 0.5
    if typing.get_origin(base) is list:
        return ["x"]
    return "some text"


@pytest.mark.parametrize("setting", [s for s in fields.settings() if s.path != "preset"], ids=lambda s: s.path)
def test_every_setting_is_reachable_from_yaml_and_set(tmp_path, setting):
    value = _another_value(setting)
    data = {"preset": "tiny"}
    parts = setting.path.split(".")
    node = data
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value
    if setting.path == "card.license_name" or setting.path == "card.license_link":
        data["card"].update(license="other", license_name="my-lic-1.0", license_link="https://example.com/l")
    if setting.path.startswith("model.tiny.num_"):
        data["model"]["tiny"].update(num_heads=2, num_kv_heads=1)
    data = deep_merge(data, nest(COMPANIONS.get(setting.path, {})))
    f = tmp_path / "c.yaml"
    f.write_text(yaml.safe_dump(data))
    from_file = load_config(f).model_dump(mode="json")
    assert get_path(from_file, setting.path) == value

    text = json.dumps(value) if not isinstance(value, str) else value
    sets = [f"{setting.path}={text}"]
    if setting.path in ("card.license_name", "card.license_link"):
        sets += ["card.license=other", "card.license_name=my-lic-1.0", "card.license_link=https://example.com/l"]
    if setting.path.startswith("model.tiny.num_"):
        sets += ["model.tiny.num_heads=2", "model.tiny.num_kv_heads=1"]
    sets += [f"{path}={companion}" for path, companion in COMPANIONS.get(setting.path, {}).items()]
    from_set = load_config(preset="tiny", sets=sets).model_dump(mode="json")
    assert get_path(from_set, setting.path) == value


def _options(command: str) -> set[str]:
    click_cmd = get_command(app).commands[command]
    return {name for p in click_cmd.params for name in (*p.opts, *p.secondary_opts)}


@pytest.mark.parametrize("command", ["run", "init", "card", "evaluate"])
def test_every_flag_is_an_option_of_its_commands(command):
    options = _options(command)
    assert settings_for(command)
    for s in settings_for(command):
        for name in s.flag.all_names:
            for single in name.split("/"):
                assert single in options, (command, s.path, single)
    if command == "card":  # `card` offers only what can change after training
        assert all(s.path.startswith(("card.", "publish.repo_id")) for s in settings_for("card"))


def test_the_wizard_asks_only_real_settings_and_every_card_setting_with_a_flag():
    asked = [p for step in STEPS for p in step]
    for path in asked:
        fields.setting(path)  # KeyError for a name that is not a setting
    card_flags = {s.path for s in settings_for("card") if s.path.startswith("card.")}
    assert card_flags - set(asked) <= {"card.model_name", "card.citation", "card.template",
                                       "card.license_name", "card.license_link"}


def _bad_text(s: fields.Setting) -> str | None:
    if s.choices:
        return "no-such-choice"
    base = fields.base_type(s.item_type)
    if s.path in ("publish.repo_id", "publish.demo_space", "tracking.space_id", "tracking.dataset_repo"):
        return "not a repo"
    if s.path == "experiment_name":
        return "bad name"
    if s.path == "card.tags":
        return "two words"
    if s.path == "card.license":
        return "apache2"
    if s.path == "card.license_name":
        return "Bad Name"
    if s.path == "card.license_link":
        return "nowhere"
    if s.path == "training.rdzv_endpoint":
        return "node0"
    if base in (int, float):
        return "-5" if "gt" in str(s.info.metadata) else "abc"
    return None


@pytest.mark.parametrize("setting", [s for s in fields.flagged() if _bad_text(s)], ids=lambda s: s.path)
def test_a_bad_value_has_one_message_from_set_flag_and_wizard(setting):
    bad = _bad_text(setting)
    set_text = f"[{bad}]" if setting.is_list else bad
    with pytest.raises(ConfigError) as from_set:
        load_config(preset="tiny", sets=[f"{setting.path}={set_text}"])
    (set_line,) = [p for p in from_set.value.problems if p.startswith(setting.path)]

    given = {"flag__" + setting.path.replace(".", "__"): [bad] if setting.is_list else bad}
    if setting.flag.convert:
        given = {k: v for k, v in given.items()}
    with pytest.raises(ConfigError) as from_flag:
        values_from_flags(given, setting.flag.on[0])
    (flag_line,) = from_flag.value.problems
    assert flag_line == f"{setting.flag.label}: {set_line}"

    with pytest.raises(ValueError) as from_wizard:
        parser(setting)(bad)
    assert str(from_wizard.value) == set_line
