"""The CPU speed levers keep the numbers (same loss and gradients) and the benchmark's own arithmetic."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from smolforge.errors import SmolforgeError

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "throughput.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("throughput_bench", BENCH)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    yield module
    del sys.modules[spec.name]


def test_ratio_stats_median_min_max(bench):
    assert bench.ratio_stats([2.9, 3.4, 3.1]) == {"median": 3.1, "min": 2.9, "max": 3.4}
    assert bench.ratio_stats([3.0, 2.0]) == {"median": 2.5, "min": 2.0, "max": 3.0}


def test_equal_work_needs_same_tokens_and_close_loss(bench):
    m = bench.Measured
    base = m(seconds=30.0, loss=5.0, supervised=1000, real=2000, processed=4000, steps=10)
    assert bench.equal_work(m(10.0, 5.04, 1000, 2000, 2000, 10), base)[0]
    assert not bench.equal_work(m(10.0, 5.06, 1000, 2000, 2000, 10), base)[0]  # 1.2 % apart
    ok, why = bench.equal_work(m(10.0, 5.0, 999, 2000, 2000, 10), base)
    assert not ok and "999" in why
    assert base.waste == 0.5 and base.tokens_per_s == pytest.approx(1000 / 30)


def test_benchmark_chats_are_distinct_and_in_no_think_mode(bench):
    rows = bench.long_tail_chats(200, seed=3)
    assert len({str(r["messages"]) for r in rows}) == 200  # smolforge's de-duplication drops none of them
    assert {r["chat_template_kwargs"]["enable_thinking"] for r in rows} == {False}
    turns = [len(r["messages"]) // 2 for r in rows]
    assert min(turns) == 1 and max(turns) > 3  # long-tailed: mostly one exchange, some many


def test_step_anatomy_splits_a_profile_into_matmul_attention_and_the_rest():
    spec = importlib.util.spec_from_file_location("step_anatomy_bench", BENCH.with_name("step_anatomy.py"))
    anatomy = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(anatomy)

    class Event:
        def __init__(self, key, us, flops=0):
            self.key, self.self_cpu_time_total, self.flops = key, us, flops

    class Profile:
        def key_averages(self):
            return [Event("aten::mm", 30_000, 3e9), Event("aten::addmm", 10_000, 1e9),
                    Event("aten::_scaled_dot_product_flash_attention_for_cpu", 5_000),
                    Event("aten::_scaled_dot_product_flash_attention_for_cpu_backward", 15_000),
                    Event("aten::mul", 40_000)]

    split = anatomy.split_profile(Profile(), steps=10)  # times in microseconds over 10 steps
    assert split == {"matmul_ms": 4.0, "attention_ms": 2.0, "profiled_ops_ms": 10.0, "matmul_gflops": 100.0}


def _loss_and_grads(model, batch):
    model.zero_grad()
    out = model(**batch, fused_lm_head=True)
    out.loss.backward()
    return out.loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.fixture
def stock_trl_head():
    """TRL's own LM-head attributes for the test (an earlier run in this process may have enabled the levers),
    and whatever was there put back afterwards."""
    import trl.trainer.utils as trl_utils

    from smolforge import lmhead

    before = (trl_utils._use_triton, trl_utils._ChunkedLogProbFunction)
    lmhead.disable()
    yield trl_utils
    trl_utils._use_triton, trl_utils._ChunkedLogProbFunction = before


def _tiny_fused_model():
    import torch
    from transformers import SmolLM3Config, SmolLM3ForCausalLM
    from trl.trainer.utils import add_fused_lm_head

    torch.manual_seed(0)
    model = SmolLM3ForCausalLM(SmolLM3Config(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                             num_attention_heads=2, num_key_value_heads=1, vocab_size=97,
                                             pad_token_id=0, bos_token_id=1, eos_token_id=2))
    add_fused_lm_head(model, outputs=("log_probs", "entropy", "is_top1"))
    ids = torch.randint(0, 97, (2, 24))
    labels = ids.clone()
    labels[:, :14] = -100  # the prompt: no loss
    return model, {"input_ids": ids, "labels": labels}


@pytest.mark.parametrize("env_off", [None, "SMOLFORGE_SUPERVISED_LM_HEAD", "SMOLFORGE_WHOLE_LM_HEAD"])
def test_cpu_lm_head_levers_keep_loss_gradients_and_metrics(stock_trl_head, monkeypatch, env_off):
    import torch

    from smolforge import lmhead

    trl_utils = stock_trl_head
    model, batch = _tiny_fused_model()
    assert not trl_utils._use_triton(torch.device("cpu"))  # stock TRL scores every position on a CPU, in tiles
    stock = model(**batch, fused_lm_head=True)
    stock_loss, stock_grads = _loss_and_grads(model, batch)

    if env_off:
        monkeypatch.setenv(env_off, "0")
    on = lmhead.enable()
    assert on == {"supervised_only": env_off != lmhead.COMPACT_ENV, "whole": env_off != lmhead.WHOLE_ENV}
    assert lmhead.enable() == on  # idempotent
    assert trl_utils._use_triton(torch.device("cpu")) is on["supervised_only"]
    levered = model(**batch, fused_lm_head=True)
    loss, grads = _loss_and_grads(model, batch)

    torch.testing.assert_close(loss, stock_loss, rtol=1e-6, atol=0)
    for field in ("log_probs", "entropy"):
        torch.testing.assert_close(getattr(levered, field), getattr(stock, field), rtol=1e-5, atol=1e-6, msg=field)
    assert torch.equal(levered.is_top1, stock.is_top1) and torch.equal(levered.label_mask, stock.label_mask)
    assert grads.keys() == stock_grads.keys()
    for name, grad in grads.items():
        torch.testing.assert_close(grad, stock_grads[name], rtol=1e-5, atol=1e-7, msg=name)
    lmhead.disable()
    assert not trl_utils._use_triton(torch.device("cpu"))
    assert not hasattr(trl_utils._ChunkedLogProbFunction, "smolforge_original")


def test_whole_head_matches_trl_kernel_with_bias_ties_and_entropy_gradient():
    """Same outputs and gradients as TRL's kernel, an entropy that is differentiated included; top-1 counts only
    the first maximum; what it does not implement (temperature, softcapping, other outputs) goes to TRL."""
    import torch
    from trl.kernels.chunked_logprob import ChunkedLogProbFunction

    from smolforge.lmhead import _WholeOnCpu, whole_head

    torch.manual_seed(1)
    hidden = torch.randn(40, 16, requires_grad=True)
    weight = torch.randn(50, 16, requires_grad=True)
    bias = torch.randn(50, requires_grad=True)
    targets = torch.randint(0, 50, (40,))
    outputs = ("log_probs", "entropy", "is_top1")
    args = (hidden, weight, bias, targets)

    def run(fn):
        lp, ent, _, _, top1 = fn(*args)
        (lp.sum() + 0.3 * ent.sum()).backward()
        grads = [t.grad.clone() for t in (hidden, weight, bias)]
        for t in (hidden, weight, bias):
            t.grad = None
        return lp.detach(), ent.detach(), top1, grads

    ours = run(lambda *a: whole_head(*a, outputs))
    theirs = run(lambda *a: ChunkedLogProbFunction.apply(*a, 1.0, 32768, None, 1.0, outputs))
    for a, b in zip(ours[:2] + tuple(ours[3]), theirs[:2] + tuple(theirs[3]), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    assert torch.equal(ours[2], theirs[2])

    tied = torch.zeros(2, 4)  # all logits equal: the target is the first maximum only at index 0
    _, _, _, _, top1 = whole_head(tied, torch.eye(4), None, torch.tensor([0, 2]), ("is_top1",))
    assert top1.tolist() == [True, False]

    calls = []

    class Recorder:
        @staticmethod
        def apply(*a):
            calls.append(a)
            return "trl"

    head = _WholeOnCpu(Recorder)
    assert head.apply(*args, 0.7, 32768, None, 1.0, outputs) == "trl"  # temperature
    assert head.apply(*args, 1.0, 32768, 30.0, 1.0, outputs) == "trl"  # softcapping
    assert head.apply(*args, 1.0, 32768, None, 1.0, ("log_probs", "mean_logits")) == "trl"
    assert head.apply(*args, 1.0, 32768, None, 1.0, outputs) != "trl" and len(calls) == 3


@pytest.fixture
def liger_installed(monkeypatch):
    """find_spec answers that liger-kernel is installed, whatever this machine has."""
    import importlib.util as iu

    real = iu.find_spec
    monkeypatch.setattr(iu, "find_spec", lambda name, *a: object() if name == "liger_kernel" else real(name, *a))


def _runtime(cuda, **sets):
    from smolforge.config.loading import load_config
    from smolforge.runtime import resolve

    return resolve(load_config(preset="tiny", sets=[f"{k}={v}" for k, v in sets.items()]), cuda=cuda)


def test_liger_auto_is_on_for_cuda_with_the_package_only(liger_installed):
    assert _runtime((True, True)).liger_kernel is True
    assert _runtime((False, False)).liger_kernel is False  # never on a CPU
    assert _runtime((True, True), **{"training.liger_kernel": "false"}).liger_kernel is False


def test_liger_auto_is_off_without_the_package(monkeypatch):
    import importlib.util as iu

    real = iu.find_spec
    monkeypatch.setattr(iu, "find_spec", lambda name, *a: None if name == "liger_kernel" else real(name, *a))
    assert _runtime((True, True)).liger_kernel is False
    with pytest.raises(SmolforgeError, match="training.liger_kernel: true needs the liger-kernel package"):
        _runtime((True, True), **{"training.liger_kernel": "true"})


def test_liger_true_on_a_cpu_is_refused_even_when_installed(liger_installed):
    with pytest.raises(SmolforgeError, match="training.liger_kernel: true needs a CUDA GPU"):
        _runtime((False, False), **{"training.liger_kernel": "true"})


def test_liger_reaches_the_trainer_arguments(liger_installed, tmp_path):
    from smolforge.config.loading import load_config
    from smolforge.runtime import resolve
    from smolforge.trainers import trainer_arguments

    cfg = load_config(preset="tiny")
    on = trainer_arguments(cfg, resolve(cfg, cuda=(True, True)), tmp_path, False, 10)
    off = trainer_arguments(cfg, resolve(cfg, cuda=(False, False)), tmp_path, False, 10)
    assert on["use_liger_kernel"] is True and "use_liger_kernel" not in off


def test_per_document_attention_matches_a_block_diagonal_mask_with_gradients():
    import torch

    from smolforge.attention import varlen_sdpa_attention

    class Layer(torch.nn.Module):
        num_key_value_groups = 2

    torch.manual_seed(0)
    lengths = [5, 1, 9, 3]
    total = sum(lengths)
    q = torch.randn(1, 4, total, 8, requires_grad=True)
    k = torch.randn(1, 2, total, 8, requires_grad=True)
    v = torch.randn(1, 2, total, 8, requires_grad=True)
    cu = torch.tensor([0, *torch.tensor(lengths).cumsum(0).tolist()])
    out, _ = varlen_sdpa_attention(Layer().train(), q, k, v, None, cu_seq_lens_q=cu)
    grads = torch.autograd.grad(out.square().sum(), (q, k, v))

    doc = torch.repeat_interleave(torch.arange(len(lengths)), torch.tensor(lengths))
    allowed = (doc[:, None] == doc[None, :]) & torch.ones(total, total, dtype=torch.bool).tril()
    ref = torch.nn.functional.scaled_dot_product_attention(
        q, k.repeat_interleave(2, dim=1), v.repeat_interleave(2, dim=1), attn_mask=allowed).transpose(1, 2)
    ref_grads = torch.autograd.grad(ref.square().sum(), (q, k, v))
    torch.testing.assert_close(out, ref)
    for got, want in zip(grads, ref_grads, strict=True):
        torch.testing.assert_close(got, want)


def test_grpo_and_dpo_batches_are_padded_and_get_a_mask():
    """Per-document attention never sees a padding mask (transformers builds none for it), so a left-padded row
    would attend to its pads: GRPO and DPO, whose batches are padded, resolve to padded batches and masked SDPA."""
    from smolforge.config.loading import load_config
    from smolforge.runtime import resolve

    for preset in ("tiny-grpo", "smollm3-dpo"):
        rt = resolve(load_config(preset=preset), cuda=(False, False))
        assert (rt.batching, rt.attn_implementation) == ("padded", "sdpa"), preset
    with pytest.raises(SmolforgeError, match="'padding_free' is not available for GRPO"):
        resolve(load_config(preset="tiny-grpo", sets=["training.batching=padding_free"]), cuda=(False, False))
    assert resolve(load_config(preset="tiny"), cuda=(False, False)).batching == "padding_free"
