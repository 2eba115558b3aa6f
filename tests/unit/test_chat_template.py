"""SmolLM3 reasoning modes and loss masks, checked on the rendered text and on the token positions
TRL actually trains on (its own tokenisation path, through smolforge's trainer class).
"""

from __future__ import annotations

import pytest

from smolforge.config import DataSection, SmolforgeConfig, TinySpec
from smolforge.data import prepare
from tests.datafiles import write_rows

SPEC = TinySpec(hidden_size=32, intermediate_size=64, num_layers=1, num_heads=2, num_kv_heads=1, vocab_size=512)
CHAT = [{"role": "user", "content": "Hi there"}, {"role": "assistant", "content": "Hello!"},
        {"role": "user", "content": "Bye"}, {"role": "assistant", "content": "Goodbye."}]
EMPTY_THINK = "<think>\n\n</think>\n"


@pytest.fixture(scope="module")
def tok():
    from smolforge.tiny import build_tokenizer

    return build_tokenizer(SPEC.vocab_size)


def render(tok, messages, **kw) -> str:
    return tok.apply_chat_template(messages, tokenize=False, **kw)


# ---------------------------------------------------------------- rendered text

def test_no_think_renders_the_mode_and_an_empty_think_block_before_each_answer(tok):
    text = render(tok, CHAT, enable_thinking=False)
    assert text == (
        "<|im_start|>system\nReasoning Mode: /no_think\n<|im_end|>\n"
        "<|im_start|>user\nHi there<|im_end|>\n"
        f"<|im_start|>assistant\n{EMPTY_THINK}Hello!<|im_end|>\n"
        "<|im_start|>user\nBye<|im_end|>\n"
        f"<|im_start|>assistant\n{EMPTY_THINK}Goodbye.<|im_end|>\n"
    )
    prompt = render(tok, CHAT[:1], enable_thinking=False, add_generation_prompt=True)
    assert prompt.endswith(f"<|im_start|>assistant\n{EMPTY_THINK}")


def test_think_mode_is_the_default_and_keeps_answers_as_written(tok):
    assert render(tok, CHAT) == render(tok, CHAT, enable_thinking=True)
    text = render(tok, CHAT, enable_thinking=True)
    assert "Reasoning Mode: /think\n" in text and "<think>" not in text
    assert render(tok, CHAT[:1], add_generation_prompt=True).endswith("<|im_start|>assistant\n")
    traced = [CHAT[0], {"role": "assistant", "content": "<think>\nGreet back.\n</think>\nHello!"}]
    assert "<|im_start|>assistant\n<think>\nGreet back.\n</think>\nHello!<|im_end|>" in render(tok, traced)


@pytest.mark.parametrize(("system", "kwarg", "mode"), [
    ("Be brief. /no_think", True, "/no_think"),   # the flag in the system prompt wins over enable_thinking
    ("/think Be brief.", False, "/think"),
    ("Be brief.", False, "/no_think"),
])
def test_a_flag_in_the_system_prompt_sets_the_mode_and_is_removed_from_the_text(tok, system, kwarg, mode):
    text = render(tok, [{"role": "system", "content": system}, *CHAT[:2]], enable_thinking=kwarg)
    assert text.startswith(f"<|im_start|>system\nReasoning Mode: {mode}\n\nBe brief.\n<|im_end|>\n")
    assert (EMPTY_THINK + "Hello!" in text) == (mode == "/no_think")
    assert text.count(" /think") + text.count(" /no_think") == 1  # only the mode line keeps the flag


# ---------------------------------------------------------------- what TRL trains on

def _sft_rows(tmp_path, tok, rows, loss_on="auto", **data):
    """Tokenised training rows from data.prepare -> smolforge's SFT trainer class (TRL's own path)."""
    from trl import SFTConfig

    from smolforge.tiny import build_model
    from smolforge.trainers import loss_flags, make_sft_trainer_class

    path = write_rows(tmp_path / "d.jsonl", rows)
    prepared = prepare(DataSection(name=str(path), eval_ratio=0.0, loss_on=loss_on, **data))
    flags = loss_flags(SmolforgeConfig(data={"loss_on": loss_on}), prepared.kind)
    flags.pop("loss_on")
    args = SFTConfig(output_dir=str(tmp_path / "out"), use_cpu=True, bf16=False, report_to=[], max_length=None,
                     activation_checkpointing=False, dataset_num_proc=None, **flags)
    trainer = make_sft_trainer_class()(model=build_model(SPEC, tok), args=args, train_dataset=prepared.train,
                                       processing_class=tok)
    return list(trainer.train_dataset)


def _loss_spans(tok, row) -> list[str]:
    """The text of each contiguous run of positions whose label is not -100."""
    spans, current = [], []
    for token, label in zip(row["input_ids"], row["labels"], strict=True):
        if label != -100:
            assert label == token
            current.append(token)
        elif current:
            spans.append(tok.decode(current))
            current = []
    return spans + ([tok.decode(current)] if current else [])


def test_conversations_carry_loss_on_assistant_turns_only(tmp_path, tok):
    (row,) = _sft_rows(tmp_path, tok, [{"messages": CHAT}])
    assert tok.decode(row["input_ids"]) == render(tok, CHAT, enable_thinking=False)
    # each assistant turn, its (empty) think block and its end-of-turn token: the model learns to stop
    assert _loss_spans(tok, row) == [f"{EMPTY_THINK}Hello!<|im_end|>\n", f"{EMPTY_THINK}Goodbye.<|im_end|>\n"]


def test_loss_on_all_for_conversations(tmp_path, tok):
    (row,) = _sft_rows(tmp_path, tok, [{"messages": CHAT}], loss_on="all")
    assert row["labels"] == row["input_ids"]


def test_prompt_completion_carries_loss_on_the_completion_only(tmp_path, tok):
    (row,) = _sft_rows(tmp_path, tok, [{"prompt": "Hi there", "completion": "Hello!"}])
    assert tok.decode(row["input_ids"]) == render(tok, CHAT[:2], enable_thinking=False)
    assert _loss_spans(tok, row) == ["Hello!<|im_end|>\n"]


def test_prompt_completion_with_loss_on_all_trains_the_prompt_too(tmp_path, tok):
    (row,) = _sft_rows(tmp_path, tok, [{"prompt": "Hi there", "completion": "Hello!"}], loss_on="all")
    assert row["labels"] == row["input_ids"]


def test_plain_text_carries_loss_on_every_token_and_ends_with_eos(tmp_path, tok):
    (row,) = _sft_rows(tmp_path, tok, [{"text": "Lima is the capital of Peru."}])
    assert tok.decode(row["input_ids"]) == "Lima is the capital of Peru.<|im_end|>"
    assert row["labels"] == row["input_ids"]


def test_reasoning_mode_reaches_trls_tokenisation(tmp_path, tok):
    traced = [CHAT[0], {"role": "assistant", "content": "<think>\nGreet back.\n</think>\nHello!"}]
    rows = _sft_rows(tmp_path, tok, [{"messages": CHAT[:2]}, {"messages": traced}])  # reasoning: auto
    plain, thought = (tok.decode(r["input_ids"]) for r in rows)
    assert "Reasoning Mode: /no_think" in plain and EMPTY_THINK + "Hello!" in plain
    assert "Reasoning Mode: /think" in thought and "<think>\nGreet back.\n</think>\nHello!" in thought
    assert _loss_spans(tok, rows[1]) == ["<think>\nGreet back.\n</think>\nHello!<|im_end|>\n"]

    forced = _sft_rows(tmp_path, tok, [{"messages": CHAT[:2]}], reasoning="think")
    assert "Reasoning Mode: /think" in tok.decode(forced[0]["input_ids"])
    assert _loss_spans(tok, forced[0]) == ["Hello!<|im_end|>\n"]


def test_a_no_think_system_prompt_from_the_config_reaches_trls_tokenisation(tmp_path, tok):
    (row,) = _sft_rows(tmp_path, tok, [{"messages": CHAT[:2]}], reasoning="think",
                       system_prompt="Answer briefly. /no_think")
    text = tok.decode(row["input_ids"])
    assert text.startswith("<|im_start|>system\nReasoning Mode: /no_think\n\nAnswer briefly.\n<|im_end|>\n")
    assert _loss_spans(tok, row) == [f"{EMPTY_THINK}Hello!<|im_end|>\n"]


def test_dpo_pairs_split_into_prompt_and_completions(tmp_path, tok):
    from trl import DPOConfig

    from smolforge.tiny import build_model
    from smolforge.trainers import make_dpo_trainer_class

    path = write_rows(tmp_path / "p.jsonl", [{"prompt": "Hi there", "chosen": "Hello!", "rejected": "Go away."}])
    prepared = prepare(DataSection(name=str(path), eval_ratio=0.0), "dpo")
    args = DPOConfig(output_dir=str(tmp_path / "out"), use_cpu=True, bf16=False, report_to=[],
                     activation_checkpointing=False)
    build_model(SPEC, tok).save_pretrained(tmp_path / "m")  # DPO loads its reference copy from the model's path
    trainer = make_dpo_trainer_class()(model=str(tmp_path / "m"), args=args, train_dataset=prepared.train,
                                       processing_class=tok)
    (row,) = list(trainer.train_dataset)
    assert tok.decode(row["prompt_ids"]) == render(tok, CHAT[:1], enable_thinking=False, add_generation_prompt=True)
    assert tok.decode(row["chosen_ids"]) == "Hello!<|im_end|>\n"
    assert tok.decode(row["rejected_ids"]) == "Go away.<|im_end|>\n"


def test_smollm3_template_without_generation_markers_is_swapped_for_training(tmp_path, tok):
    """SmolLM3's shipped template cannot mark assistant tokens; smolforge uses its own compatible one."""
    from trl.chat_template_utils import has_generation_markers

    from smolforge.chat_templates import training_chat_template as chat_template
    from smolforge.modelio import load_tokenizer

    body = tok.chat_template.split("-#}", 1)[1]  # without the header comment, which names the markers
    shipped = body.replace("{%- generation -%}", "").replace("{%- endgeneration -%}", "")
    assert has_generation_markers(body) and not has_generation_markers(shipped) and "/no_think" in shipped
    tok.save_pretrained(tmp_path / "m")
    (tmp_path / "m" / "chat_template.jinja").write_text(shipped)
    cfg = SmolforgeConfig(model={"name_or_path": str(tmp_path / "m")})
    assert load_tokenizer(cfg, str(tmp_path / "m"), needs_markers=False).chat_template == shipped
    assert load_tokenizer(cfg, str(tmp_path / "m"), needs_markers=True).chat_template == chat_template()
