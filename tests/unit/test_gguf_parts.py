"""The GGUF export's parts that need no trained model: template export, Modelfile, error bounds, disk check,
the quantize section's list form, the pinned toolchain, the architecture check."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest


def test_exported_template_renders_the_same_text_without_generation_markers():
    """The template written into GGUF files, rendered as llama.cpp's Python runtimes render it, gives the text
    transformers renders from the training template, for every check conversation in both reasoning modes."""
    from smolforge.gguf.source import export_chat_template
    from smolforge.gguf.verify import TEMPLATE_CONVERSATIONS, _render_gguf_template, rendering_cases
    from smolforge.tiny import build_tokenizer

    tok = build_tokenizer(512)
    exported = export_chat_template(tok.chat_template)
    assert "generation" in tok.chat_template and not re.search(r"\{%-?\s*(end)?generation", exported)
    cases = rendering_cases(TEMPLATE_CONVERSATIONS)
    assert any(tools for *_, tools in cases)  # the tool conversation is one of them
    for messages, think, gen, tools in cases:
        want = tok.apply_chat_template(messages, tokenize=False, enable_thinking=think, add_generation_prompt=gen,
                                       tools=tools)
        got = _render_gguf_template(exported, messages, enable_thinking=think, add_generation_prompt=gen,
                                    bos=None, eos=tok.eos_token, tools=tools)
        assert got == want
        if tools:
            assert '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>' in got


def test_exported_template_keeps_whitespace_control_of_the_markers():
    from smolforge.gguf.source import export_chat_template

    assert export_chat_template("a\n{%- generation -%}\nb{% endgeneration %}c") == 'a\n{{- "" -}}\nb{{ "" }}c'


def test_modelfile_for_smollm3_chatml_and_unknown_formats():
    from smolforge.chat_templates import training_chat_template
    from smolforge.gguf.modelfile import chat_format, modelfile

    text = modelfile("m-Q8_0.gguf", training_chat_template(), ["<|im_end|>", "<|endoftext|>"],
                     {"temperature": 0.6, "top_p": 0.95, "do_sample": True, "repetition_penalty": 1.1}, 4096, "m")
    assert text.splitlines()[3] == "FROM ./m-Q8_0.gguf"
    assert 'PARAMETER stop "<|im_end|>"\nPARAMETER stop "<|endoftext|>"\n' in text
    assert "PARAMETER temperature 0.6\nPARAMETER top_p 0.95\nPARAMETER repeat_penalty 1.1\nPARAMETER num_ctx 4096\n" \
        in text
    assert "do_sample" not in text and "Reasoning Mode: {{ $mode }}" in text
    assert chat_format("{{ '<|im_start|>' + m.content }}") == "chatml"
    assert chat_format("[INST] {{ m }} [/INST]") is None
    plain = modelfile("m.gguf", "[INST]", ["</s>"], {}, None, "m")
    assert "TEMPLATE" not in plain.replace("# No TEMPLATE", "") and "num_ctx" not in plain


@pytest.mark.parametrize("qtype,bits", [("Q8_0", 8), ("Q5_0", 5), ("Q4_0", 4)])
def test_error_bounds_hold_for_gguf_py_quantization(qtype, bits):
    """gguf-py's own quantizers (the reference implementations of these block types) stay within the bound the
    tensor check allows, on Gaussian and on heavy-tailed weights; the bound is not loose by an order of magnitude."""
    import gguf
    from gguf.quants import dequantize, quantize

    from smolforge.gguf.verify import MAX_ERROR

    rng = np.random.default_rng(0)
    kind = gguf.GGMLQuantizationType[qtype]
    for w in (rng.normal(size=(64, 256)), rng.standard_t(3, size=(64, 256))):
        w = w.astype(np.float32)
        err = np.abs(dequantize(quantize(w, kind), kind) - w).max() / np.abs(w).max()
        assert err <= MAX_ERROR[qtype]
        assert err > MAX_ERROR[qtype] / 20


def test_disk_check_names_the_sizes_and_writes_nothing(tmp_path, monkeypatch):
    import shutil
    from collections import namedtuple

    from safetensors.numpy import save_file

    from smolforge.errors import SmolforgeError
    from smolforge.gguf import convert
    from smolforge.weightfiles import parameter_count

    model = tmp_path / "model"
    model.mkdir()
    save_file({"w": np.zeros((1000, 1000), dtype=np.float32)}, str(model / "model.safetensors"))
    assert parameter_count(model) == 1_000_000
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda p: usage(10**9, 10**9, 3_000_000))
    with pytest.raises(SmolforgeError) as e:
        convert.check_disk(model, tmp_path, tmp_path, ["gguf-q8_0", "gguf-q4_k_m"])
    msg = str(e.value)
    assert "Not enough disk" in msg and "f16 intermediate 0.00 GB" in msg and "1,000,000 parameters" in msg
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]
    monkeypatch.setattr(shutil, "disk_usage", lambda p: usage(10**12, 0, 10**12))
    need = convert.check_disk(model, tmp_path, tmp_path, ["gguf-f16"])
    assert need == {"f16 intermediate": 4_000_000, "gguf-f16": 2_000_000}


def test_quantize_keeps_the_list_form_and_validates_the_gate():
    from pydantic import ValidationError

    from smolforge.config import SmolforgeConfig

    cfg = SmolforgeConfig.model_validate({"quantize": ["int8", "gguf-q4_k_m"]})
    assert cfg.quantize.methods == ["int8", "gguf-q4_k_m"] and cfg.quantize.max_quality_drop == 0.1
    assert SmolforgeConfig.model_validate({"quantize": {"methods": ["gguf-f16"], "max_quality_drop": 0.02}}
                                          ).quantize.max_quality_drop == 0.02
    for bad in ({"quantize": {"max_quality_drop": 0}}, {"quantize": ["gguf-q3"]}, {"quantize": "int8"}):
        with pytest.raises(ValidationError):
            SmolforgeConfig.model_validate(bad)


def test_the_toolchain_pin_is_the_projects_pin():
    import tomllib

    from smolforge.gguf.toolchain import DIST, LLAMA_CPP_PYTHON

    project = tomllib.loads((Path(__file__).parents[2] / "pyproject.toml").read_text())
    assert f"{DIST}=={LLAMA_CPP_PYTHON}" in project["project"]["optional-dependencies"]["gguf"]


def test_an_architecture_the_converter_does_not_know_is_refused_from_its_config(tmp_path):
    from transformers import OPTConfig

    from smolforge.config import SmolforgeConfig
    from smolforge.errors import SmolforgeError
    from smolforge.gguf.precheck import check_architecture

    OPTConfig(architectures=["OPTForCausalLM"]).save_pretrained(tmp_path)  # a config.json only: no weights
    cfg = SmolforgeConfig.model_validate({"model": {"name_or_path": str(tmp_path)}, "quantize": ["gguf-q8_0"]})
    with pytest.raises(SmolforgeError) as e:
        check_architecture(cfg, str(tmp_path))
    assert "OPTForCausalLM" in str(e.value) and "does not support" in str(e.value) and "gguf-q8_0" in str(e.value)
    assert check_architecture(cfg.model_copy(update={"model": cfg.model.model_copy(update={"name_or_path": "tiny"})}),
                              _tiny_config(tmp_path / "tiny")) == "SmolLM3ForCausalLM"


def _tiny_config(folder: Path) -> str:
    from transformers import SmolLM3Config

    SmolLM3Config(architectures=["SmolLM3ForCausalLM"]).save_pretrained(folder)
    return str(folder)


@pytest.fixture(scope="module")
def ollama_renderer(tmp_path_factory):
    """tests/tools/ollama_template.go built with Debian's Go: Ollama's way of executing a TEMPLATE."""
    import os
    import shutil
    import subprocess

    if shutil.which("go") is None:
        reason = "Go is not installed: run `make browser-deps` (apt-get install golang-go)"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    out = tmp_path_factory.mktemp("go") / "ollama_template"
    env = {**os.environ, "GOCACHE": str(out.parent / "cache"), "GO111MODULE": "off"}
    subprocess.run(["go", "build", "-o", str(out), str(Path(__file__).parents[1] / "tools" / "ollama_template.go")],
                   check=True, env=env)

    def render(template: str, messages, think: bool | None) -> str:
        import json

        req = {"template": template, "messages": messages, "think": bool(think), "is_think_set": think is not None}
        return subprocess.run([str(out)], input=json.dumps(req), capture_output=True, text=True, check=True).stdout

    return render


def test_ollama_template_renders_what_the_trained_template_renders(ollama_renderer):
    """The Modelfile's Go template, executed as Ollama executes it, gives the prompt transformers renders from the
    training template: both reasoning modes, Ollama's think unset (the template's default, /think), and a system
    prompt that is exactly /no_think."""
    from smolforge.gguf.modelfile import SMOLLM3_TEMPLATE
    from smolforge.gguf.verify import TEMPLATE_CONVERSATIONS
    from smolforge.tiny import build_tokenizer

    tok = build_tokenizer(512)
    chats = [m for m in TEMPLATE_CONVERSATIONS if m[-1]["role"] == "user"
             and not (m[0]["role"] == "system" and "think" in m[0]["content"] and m[0]["content"] not in
                      ("/think", "/no_think"))]  # a flag inside a longer system prompt: documented limit
    assert len(chats) >= 3
    for messages in chats:
        for think in (True, False, None):
            kwargs = {} if think is None else {"enable_thinking": think}
            want = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True, **kwargs)
            assert ollama_renderer(SMOLLM3_TEMPLATE, messages, think) == want, (messages, think)


def test_ollama_chatml_template_renders_chatml(ollama_renderer):
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    from smolforge.gguf.modelfile import CHATML_TEMPLATE
    from smolforge.gguf.verify import TEMPLATE_CONVERSATIONS

    chatml = ("{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"
              "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
    env = ImmutableSandboxedEnvironment()
    for messages in TEMPLATE_CONVERSATIONS:
        if messages[-1]["role"] == "user":
            want = env.from_string(chatml).render(messages=messages, add_generation_prompt=True)
            assert ollama_renderer(CHATML_TEMPLATE, messages, None) == want


def test_a_no_think_default_gives_way_to_ollamas_think_option(ollama_renderer):
    """For a model trained only without reasoning the Modelfile's default is /no_think; `--think` still asks for
    /think, and an explicit think=False stays /no_think."""
    from smolforge.gguf.modelfile import smollm3_template

    template = smollm3_template("/no_think")
    messages = [{"role": "user", "content": "Hi"}]
    assert "Reasoning Mode: /no_think" in ollama_renderer(template, messages, None)
    assert "Reasoning Mode: /think" in ollama_renderer(template, messages, True)
    assert "Reasoning Mode: /no_think" in ollama_renderer(template, messages, False)
