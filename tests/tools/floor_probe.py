"""What a reader gets from a saved smolforge model with whichever transformers is installed: the tokenizer's ids,
the chat template's text, and greedy generations (one chat at a time and a padded batch), as JSON on stdout.

    python floor_probe.py MODEL_DIR [--adapter]

`--adapter`: MODEL_DIR is a PEFT adapter folder, loaded with PEFT's own AutoPeftModelForCausalLM (its base from
adapter_config.json), as the card tells a reader to. Run by tests/integration/test_floor.py with the project's
transformers and with the oldest release the card names, and the two outputs compared.
"""

import json
import os
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

import torch  # noqa: E402
from transformers import AutoModelForCausalLM, AutoTokenizer  # noqa: E402

STRINGS = ["Hello, world!", "  two spaces and\ttab\nnewline", "naïve café ∑", "<|im_start|>user\nhi<|im_end|>\n"]
CHATS = [[{"role": "user", "content": "What is the capital of France?"}],
         [{"role": "system", "content": "You are brief."},
          {"role": "user", "content": "Spell 'river' letter by letter."}]]


def main() -> None:
    folder, adapter = sys.argv[1], "--adapter" in sys.argv
    if adapter:
        from peft import AutoPeftModelForCausalLM

        model = AutoPeftModelForCausalLM.from_pretrained(folder)
    else:
        model = AutoModelForCausalLM.from_pretrained(folder)
    model.eval()
    tok = AutoTokenizer.from_pretrained(folder)
    out = {"ids": [tok(s)["input_ids"] for s in STRINGS], "decoded": [tok.decode(tok(s)["input_ids"]) for s in STRINGS],
           "padding_side": tok.padding_side, "chats": []}
    torch.manual_seed(0)
    for chat in CHATS:
        for thinking in (False, True):
            text = tok.apply_chat_template(chat, tokenize=False, add_generation_prompt=True, enable_thinking=thinking)
            enc = tok(text, return_tensors="pt", add_special_tokens=False)
            with torch.no_grad():
                ids = model.generate(**enc, max_new_tokens=16, do_sample=False, pad_token_id=tok.pad_token_id)
            out["chats"].append({"text": text, "new": ids[0, enc["input_ids"].shape[1]:].tolist()})
    texts = [c["text"] for c in out["chats"][::2]]
    batch = tok(texts, return_tensors="pt", padding=True, add_special_tokens=False)
    with torch.no_grad():
        ids = model.generate(**batch, max_new_tokens=8, do_sample=False, pad_token_id=tok.pad_token_id)
    out["batch"] = ids[:, batch["input_ids"].shape[1]:].tolist()
    print(json.dumps(out, ensure_ascii=False))


if __name__ == "__main__":
    main()
