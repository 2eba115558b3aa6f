"""smolforge's SmolLM3 templates against SmolLM3's official chat template (HuggingFaceTB/SmolLM3-3B,
chat_template.jinja at Hub revision 486a602, kept in tests/fixtures/templates): where they agree and where they
differ on purpose (README: Tool calling)."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from smolforge.chat_templates import (
    OFFICIAL_SMOLLM3_SHA256,
    TOOL_EXAMPLE,
    is_official_smollm3,
    official_with_tool_calls,
    training_chat_template,
)

OFFICIAL = (Path(__file__).parents[1] / "fixtures" / "templates" / "smollm3_official_chat_template.jinja").read_text(
    encoding="utf-8")
PLAIN = [
    [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}],
    [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}],
    [{"role": "system", "content": "/no_think Be brief."}, {"role": "user", "content": "Hi"},
     {"role": "assistant", "content": "Hello!"}, {"role": "user", "content": "Bye"}],
    [{"role": "user", "content": "Weather?"},
     {"role": "assistant", "content": '<tool_call>\n{"name": "w"}\n</tool_call>'},
     {"role": "tool", "content": "21 C"}, {"role": "assistant", "content": "21 degrees."}],
]


def _render(template: str, messages, **kw) -> str:
    from transformers.utils.chat_template_utils import render_jinja_template

    rendered, _ = render_jinja_template(conversations=[messages], chat_template=template, **kw)
    return rendered[0]


def test_the_fixture_is_the_official_template_the_loader_recognises():
    assert is_official_smollm3(OFFICIAL)
    assert not is_official_smollm3(official_with_tool_calls()) and len(OFFICIAL_SMOLLM3_SHA256) == 64


@pytest.mark.parametrize("messages", PLAIN)
@pytest.mark.parametrize("kw", [{}, {"enable_thinking": False}, {"add_generation_prompt": True},
                                {"xml_tools": [TOOL_EXAMPLE[1][0]]}, {"tools": TOOL_EXAMPLE[1]},
                                {"python_tools": ["def f(x): ..."]}])
def test_the_official_template_with_tool_calls_renders_everything_else_byte_for_byte(messages, kw):
    assert _render(official_with_tool_calls(), messages, **kw) == _render(OFFICIAL, messages, **kw)


def test_structured_calls_the_official_template_drops_are_written_as_smollm3_emits_them():
    messages, tools = TOOL_EXAMPLE
    official = _render(OFFICIAL, messages, tools=tools)
    ours = _render(official_with_tool_calls(), messages, tools=tools)
    call = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'
    assert call not in official and "<|im_start|>assistant\n<|im_end|>" in official  # the official: an empty turn
    assert call in ours and ours.replace(call, "") == official
    # arguments given as an object render the same
    as_object = copy.deepcopy(messages)
    as_object[1]["tool_calls"][0]["function"]["arguments"] = {"city": "Paris"}
    assert _render(official_with_tool_calls(), as_object, tools=tools) == ours


def test_the_training_template_writes_tools_calls_and_results_as_the_official_one():
    """smolforge's own template differs in the system turn only (no metadata block, date or default persona, and
    a closed system turn); the tool list, the call text and the tool results are the official ones."""
    messages, tools = TOOL_EXAMPLE
    ours = _render(training_chat_template(), messages, tools=tools)
    official = _render(official_with_tool_calls(), messages, tools=tools)
    tools_text = official[official.index("You may call one or more functions"):official.index("</tool_call>") + 12]
    assert tools_text in ours
    conversation = official[official.index("<|im_start|>user"):]
    assert ours.endswith(conversation)
    assert "Knowledge Cutoff" in official and "Knowledge Cutoff" not in ours and "Today Date" not in ours
