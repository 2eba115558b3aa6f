"""qlora's 4-bit base: the settings' rules, the missing-library error, and exact gradients through 4-bit layers."""

from __future__ import annotations

import pytest

from smolforge.config.loading import load_config
from smolforge.errors import SmolforgeError


def test_qlora_is_an_adapter_run_over_a_four_bit_base():
    t = load_config(preset="tiny", sets=["training.finetune=qlora"]).training
    assert (t.adapters, t.four_bit_base) == (True, True)
    lora = load_config(preset="tiny", sets=["training.finetune=lora"]).training
    assert (lora.adapters, lora.four_bit_base) == (True, False)
    full = load_config(preset="tiny").training
    assert (full.adapters, full.four_bit_base) == (False, False)


def test_qlora_with_fsdp_names_the_fix():
    with pytest.raises(SmolforgeError) as e:
        load_config(preset="tiny", flags={"training.distributed": "fsdp", "training.finetune": "qlora"})
    assert "a qlora run trains small adapters and runs as ddp (set distributed: ddp)" in str(e.value)


def test_qlora_without_bitsandbytes_says_what_to_install(monkeypatch):
    import importlib.util

    from smolforge import runtime

    real = importlib.util.find_spec
    monkeypatch.setattr(runtime.importlib.util, "find_spec",
                        lambda name, *a: None if name == "bitsandbytes" else real(name, *a))
    cfg = load_config(preset="tiny", sets=["training.finetune=qlora"])
    with pytest.raises(SmolforgeError) as e:
        runtime.resolve(cfg, cuda=(False, False))
    assert str(e.value).startswith("training.finetune: qlora holds the base in 4-bit with the bitsandbytes package")
    assert "pip install bitsandbytes==0.50.2" in str(e.value) and "--finetune lora" in str(e.value)
    runtime.resolve(load_config(preset="tiny", sets=["training.finetune=lora"]), cuda=(False, False))


def test_gradients_through_four_bit_layers_stay_exact_after_an_evaluation():
    """bitsandbytes repacks 4-bit weights for a backward-less bf16 kernel when a layer first runs in eval mode on
    an AVX512-BF16 CPU; smolforge's loader keeps the training layout, so an evaluation between steps changes no
    gradient (without it, the input gradients below differ completely on such CPUs)."""
    import torch

    from smolforge.modelio import load_model, model_source
    from smolforge.runtime import resolve

    cfg = load_config(preset="tiny", sets=["training.finetune=qlora", "model.tiny.hidden_size=64",
                                           "model.tiny.intermediate_size=128", "model.tiny.num_layers=2"])
    model = load_model(cfg, model_source(cfg), resolve(cfg), four_bit=True)
    assert getattr(model, "is_loaded_in_4bit", False)
    ids = torch.randint(0, 300, (1, 32), generator=torch.Generator().manual_seed(0))

    def input_gradient() -> torch.Tensor:
        model.train()
        embeds = model.get_input_embeddings()(ids).detach().requires_grad_()
        model(inputs_embeds=embeds, labels=ids).loss.backward()
        return embeds.grad

    before = input_gradient()
    model.eval()
    with torch.no_grad():
        model(input_ids=ids)
    after = input_gradient()
    assert before.abs().max() > 0
    assert torch.equal(before, after)


def test_a_base_bitsandbytes_cannot_hold_in_4bit_names_qlora(monkeypatch):
    """A bitsandbytes without a backend for the device fails inside transformers' loader: the message names the
    setting and the fix, not the model path (which loaded its tokenizer already)."""
    import transformers

    from smolforge.modelio import load_model, model_source
    from smolforge.runtime import resolve

    def no_backend(*args, **kwargs):
        raise RuntimeError("no kernel for bitsandbytes::quantize_4bit on this device\nmore")

    cfg = load_config(preset="tiny", sets=["training.finetune=qlora"])
    source = model_source(cfg)
    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", no_backend)
    with pytest.raises(SmolforgeError) as e:
        load_model(cfg, source, resolve(cfg), four_bit=True)
    assert str(e.value) == (f"training.finetune: qlora: bitsandbytes could not load {source!r} in 4-bit on cpu: no "
                            "kernel for bitsandbytes::quantize_4bit on this device. Use a bitsandbytes build with a "
                            "backend for this device, or --finetune lora.")
