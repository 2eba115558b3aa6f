"""Tool calling in the data: every accepted shape becomes one, bad tool data is a counted drop, and the chat
template-survival check names what a template would lose."""

from __future__ import annotations

import json

import pytest

from smolforge.config import DataSection, SmolforgeConfig
from smolforge.data import apply_length_filters, prepare
from smolforge.data.tools import BAD_ARGUMENTS, BAD_TOOLS, NO_NAME, ORPHAN_RESULT
from smolforge.errors import DataError
from tests.datafiles import write_rows

WEATHER = {"type": "function", "function": {"name": "get_weather", "description": "The weather in a city.",
                                            "parameters": {"type": "object",
                                                           "properties": {"city": {"type": "string"}},
                                                           "required": ["city"]}}}
CALL = {"type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}
OPENAI = {"messages": [
    {"role": "user", "content": "Weather in Paris?"},
    {"role": "assistant", "content": None, "tool_calls": [{"id": "c1", **CALL}]},
    {"role": "tool", "tool_call_id": "c1", "content": "21 C, sunny"},
    {"role": "assistant", "content": "It is 21 degrees in Paris."}], "tools": [WEATHER]}
WANT = [{"role": "user", "content": "Weather in Paris?", "tool_calls": None},
        {"role": "assistant", "content": "", "tool_calls": [CALL]},
        {"role": "tool", "content": "21 C, sunny", "tool_calls": None},
        {"role": "assistant", "content": "It is 21 degrees in Paris.", "tool_calls": None}]


def _prep(path, **data):
    return prepare(DataSection(**{"dedup": False, "eval_ratio": 0.0, "name": str(path), **data}))


def _one(data) -> dict:
    row = dict(data.train[0])
    row.pop("_smolforge_row", None)
    return row


@pytest.mark.parametrize("suffix", [".jsonl", ".json", ".parquet", ".csv"])
def test_openai_tool_calls_with_arguments_as_text_or_object_become_one_shape(tmp_path, suffix):
    as_object = json.loads(json.dumps(OPENAI))
    as_object["messages"][1]["tool_calls"][0]["function"]["arguments"] = {"city": "Paris"}
    # (a Parquet column holds one type: the text form there)
    data = _prep(write_rows(tmp_path / f"d{suffix}", [OPENAI, OPENAI if suffix == ".parquet" else as_object]))
    assert data.stats["rows_dropped"] == 0
    for row in data.train:
        assert row["messages"] == WANT
        assert json.loads(row["tools"]) == [WEATHER]


def test_arrow_nulls_from_other_rows_are_not_arguments(tmp_path):
    """JSON rows share one Arrow schema, so one row's argument keys appear as nulls in another's."""
    other = json.loads(json.dumps(OPENAI))
    other["messages"][1]["tool_calls"][0]["function"]["arguments"] = {"query": "news", "limit": 3}
    first = json.loads(json.dumps(OPENAI))
    first["messages"][1]["tool_calls"][0]["function"]["arguments"] = {"city": "Paris"}
    data = _prep(write_rows(tmp_path / "d.jsonl", [first, other]))
    args = [json.loads(r["messages"][1]["tool_calls"][0]["function"]["arguments"]) for r in data.train]
    assert args == [{"city": "Paris"}, {"query": "news", "limit": 3}]


def test_sharegpt_function_call_and_observation_turns(tmp_path):
    row = {"conversations": [
        {"from": "human", "value": "Weather in Paris?"},
        {"from": "function_call", "value": json.dumps({"name": "get_weather", "arguments": {"city": "Paris"}})},
        {"from": "observation", "value": "21 C, sunny"},
        {"from": "gpt", "value": "It is 21 degrees in Paris."}], "tools": json.dumps([WEATHER])}
    data = _prep(write_rows(tmp_path / "d.jsonl", [row]))
    assert data.detected.format == "sharegpt"
    got = _one(data)
    assert got["messages"] == WANT and json.loads(got["tools"]) == [WEATHER]


def test_a_tools_file_gives_rows_without_their_own_tools(tmp_path):
    tools = tmp_path / "tools.json"
    tools.write_text(json.dumps([WEATHER]))
    plain = {"messages": OPENAI["messages"]}
    own = {**plain, "tools": [{"type": "function", "function": {"name": "get_time", "parameters": {}}}]}
    data = _prep(write_rows(tmp_path / "d.jsonl", [plain, own]), tools=str(tools))
    assert [json.loads(r["tools"])[0]["function"]["name"] for r in data.train] == ["get_weather", "get_time"]


@pytest.mark.parametrize(("content", "problem"), [
    ("[1, 2]", "does not hold a list of function schemas"),
    ("{not json", "is not readable JSON"),
])
def test_a_bad_tools_file_is_one_paragraph(tmp_path, content, problem):
    tools = tmp_path / "tools.json"
    tools.write_text(content)
    with pytest.raises(DataError, match="data.tools") as e:
        _prep(write_rows(tmp_path / "d.jsonl", [{"messages": OPENAI["messages"]}]), tools=str(tools))
    assert problem in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(DataError, match="does not exist"):
        _prep(write_rows(tmp_path / "d.jsonl", [{"messages": OPENAI["messages"]}]), tools=str(tmp_path / "no.json"))


def test_bad_tool_data_is_a_counted_drop(tmp_path):
    def variant(change) -> dict:
        row = json.loads(json.dumps(OPENAI))
        change(row)
        return row

    rows = [
        OPENAI,
        variant(lambda r: r["messages"][1]["tool_calls"][0]["function"].update(arguments="{city: Paris")),
        variant(lambda r: r["messages"][1]["tool_calls"][0]["function"].update(arguments="[1, 2]")),
        variant(lambda r: r["messages"][1]["tool_calls"][0]["function"].update(name="")),
        variant(lambda r: r.update(messages=[r["messages"][0], r["messages"][2], r["messages"][3]])),
        variant(lambda r: r.update(tools=json.dumps([{"description": "no name"}]))),
        variant(lambda r: r.update(tools="not json")),
    ]
    rows = [{**r, "tools": r["tools"] if isinstance(r["tools"], str) else json.dumps(r["tools"])} for r in rows]
    data = _prep(write_rows(tmp_path / "d.jsonl", rows))
    assert len(data.train) == 1
    assert data.stats["drop_reasons"] == {BAD_ARGUMENTS: 2, BAD_TOOLS: 2, NO_NAME: 1, ORPHAN_RESULT: 1}


# The survival check, with the tiny model's tokenizer and with templates that lose part of a row.

@pytest.fixture(scope="module")
def tokenizer():
    from smolforge.modelio import load_tokenizer, model_source

    cfg = SmolforgeConfig.model_validate({"model": {"name_or_path": "tiny"}})
    return load_tokenizer(cfg, model_source(cfg), needs_markers=True)


def _checked(tmp_path, tokenizer, rows, template=None, **data):
    import copy

    tok = copy.deepcopy(tokenizer)
    if template is not None:
        tok.chat_template = template
    cfg = DataSection(**{"dedup": False, "eval_ratio": 0.0, "name": str(write_rows(tmp_path / "d.jsonl", rows)),
                         **data})
    prepared = prepare(cfg)
    apply_length_filters(prepared, tok, cfg, 512)
    return prepared


def test_the_tool_conversation_survives_the_training_template(tmp_path, tokenizer):
    data = _checked(tmp_path, tokenizer, [OPENAI])
    report = data.stats["report"]
    assert report["template_check"] == {"rows_checked": 1, "rows_lost": 0, "by_reason": {}, "first": []}
    assert report["tool_calling_rows"] == 1 and "_smolforge_row" not in data.train.column_names


def _without(role: str) -> str:
    """The training template with every turn of `role` left out."""
    from smolforge.chat_templates import training_chat_template

    text = training_chat_template()
    if role == "system":
        return text.replace('{%- set system_message = messages[0].content -%}', '{%- set system_message = "" -%}')
    return text.replace('{%- elif message.role == "tool" -%}', '{%- elif false -%}')


CHATS = [{"messages": [{"role": "system", "content": f"You answer as pirate number {i}."},
                       {"role": "user", "content": f"Say hello {i}"},
                       {"role": "assistant", "content": f"Ahoy {i}!"}]} for i in range(150)]


def test_a_template_that_drops_system_turns_stops_the_run_naming_the_rows(tmp_path, tokenizer):
    with pytest.raises(DataError) as e:
        _checked(tmp_path, tokenizer, CHATS, template=_without("system"))
    text = str(e.value)
    assert "150 rows" in text and "chat template drops system text: 150" in text
    assert "row 0 ('Say hello 0'): chat template drops system text; row 1 ('Say hello 1')" in text
    assert "and 147 more" in text and "--set data.on_template_loss=drop" in text and "\n" not in text


def test_a_few_lossy_rows_are_dropped_and_counted_and_error_stops_even_for_one(tmp_path, tokenizer):
    rows = [{"messages": c["messages"][1:]} for c in CHATS[:149]] + [CHATS[149]]  # one row with a system turn
    data = _checked(tmp_path, tokenizer, rows, template=_without("system"))
    assert data.stats["drop_reasons"] == {"chat template drops system text": 1} and len(data.train) == 149
    tc = data.stats["report"]["template_check"]
    assert tc["rows_lost"] == 1 and tc["first"] == [{"row": 149, "excerpt": "Say hello 149",
                                                     "lost": "chat template drops system text"}]
    with pytest.raises(DataError, match="data.on_template_loss is error"):
        _checked(tmp_path, tokenizer, rows, template=_without("system"), on_template_loss="error")
    with pytest.raises(DataError, match=r"every training row without part of its content \(chat template drops "
                                        r"system text: 150\), so no row is left"):
        _checked(tmp_path, tokenizer, CHATS, template=_without("system"), on_template_loss="drop")


def test_tool_results_and_calls_lost_by_a_template_are_named(tmp_path, tokenizer):
    with pytest.raises(DataError, match="chat template drops tool text"):
        _checked(tmp_path, tokenizer, [OPENAI], template=_without("tool"))
    no_calls = _without("system").replace("message.tool_calls is defined", "false")
    with pytest.raises(DataError, match="chat template drops a tool call"):
        _checked(tmp_path, tokenizer, [{"messages": OPENAI["messages"]}], template=no_calls)
    no_tools = _without("tool").replace("{%- if xml_tools or python_tools or tools -%}", "{%- if false -%}")
    no_tools = no_tools.replace('{%- elif false -%}', '{%- elif message.role == "tool" -%}')
    with pytest.raises(DataError, match="chat template drops a tool definition"):
        _checked(tmp_path, tokenizer, [OPENAI], template=no_tools)


def test_a_loss_mask_that_misses_or_overreaches_is_caught(tmp_path, tokenizer):
    from smolforge.chat_templates import training_chat_template

    text = training_chat_template()
    user_marked = text.replace('{{- "<|im_start|>user\\n" + content + "<|im_end|>\\n" -}}',
                               '{% generation %}{{- "<|im_start|>user\\n" + content + "<|im_end|>\\n" -}}'
                               '{% endgeneration %}', 1)
    assert user_marked != text
    with pytest.raises(DataError, match="loss mask covers user text"):
        _checked(tmp_path, tokenizer, CHATS[:3], template=user_marked)
    second_unmarked = text.replace("{%- generation -%}", "{%- if loop.index0 < 3 -%}{%- generation -%}{%- endif -%}")
    assert second_unmarked != text
