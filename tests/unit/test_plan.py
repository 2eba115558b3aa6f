"""`smolforge plan`'s formulas against worked examples and against what autograd and the trainer really do."""

from __future__ import annotations

import importlib.util
import math

import pytest

from smolforge.config.loading import load_config
from smolforge.errors import SmolforgeError
from smolforge.plan import gpus
from smolforge.plan.batches import pack_bins, plan_batches, trainer_steps
from smolforge.plan.memory import Layout, estimate_memory, saved_per_token, state_bytes_per_parameter

FAST = ["model.tiny.hidden_size=64", "model.tiny.intermediate_size=128", "model.tiny.num_layers=2",
        "model.tiny.num_heads=2", "model.tiny.num_kv_heads=1", "model.tiny.vocab_size=512"]
SMOLLM3_3B_PARAMS = 3_075_098_624  # 36 layers x 78.1M + the tied 128,256 x 2,048 embedding


@pytest.fixture(scope="module")
def smollm3_config(tmp_path_factory):
    """A local folder holding SmolLM3-3B's config.json (transformers' SmolLM3Config defaults are the 3B's shape)."""
    from transformers import SmolLM3Config

    folder = tmp_path_factory.mktemp("smollm3-3b")
    SmolLM3Config(max_position_embeddings=65536, bos_token_id=None, eos_token_id=128012).save_pretrained(folder)
    return folder


def _smollm3(folder, *sets):
    return load_config(None, "smollm3-sft", [f"model.name_or_path={folder}", *sets])


def test_unknown_gpu_lists_the_known_ones():
    with pytest.raises(SmolforgeError) as e:
        gpus.lookup("h1000")
    assert "unknown GPU 'h1000'" in str(e.value)
    for name in ("h100", "a100-80gb", "l4", "t4"):
        assert name in str(e.value)
    assert gpus.lookup("H100").name == gpus.lookup("h100-sxm").name == "h100"
    assert gpus.match_detected("NVIDIA H100 80GB HBM3").name == "h100"
    assert gpus.match_detected("NVIDIA A100-SXM4-40GB").name == "a100-40gb"
    assert gpus.match_detected("NVIDIA L4").name == "l4"
    assert gpus.match_detected("Some Future GPU") is None


def test_adamw_state_bytes_per_parameter():
    # fp32 (a CPU run): 4 weights + 4 gradients + 8 AdamW moments
    assert sum(state_bytes_per_parameter(4, fsdp_mixed=False)) == 16
    # bf16 mixed precision with fp32 master weights (FSDP: accelerate upcasts the trained parameters)
    assert sum(state_bytes_per_parameter(2, fsdp_mixed=True)) == 16
    # a bf16 model trained as loaded (one GPU or DDP): torch's AdamW keeps its moments in bf16 too
    assert sum(state_bytes_per_parameter(2, fsdp_mixed=False)) == 8


def test_smollm3_3b_full_fine_tune_worked_example(smollm3_config):
    """SmolLM3-3B, full fine-tune, bf16, AdamW: parameters from config.json alone, 16 bytes per parameter with fp32
    master weights (FSDP) and 8 as smolforge trains on one GPU, before activations."""
    from smolforge.plan.model import read_model
    from smolforge.plan.target import layout, named

    cfg = _smollm3(smollm3_config)
    target = named(cfg, "h100")
    m = read_model(cfg, target.dtype_name)
    assert m.params == SMOLLM3_3B_PARAMS and m.tied and m.param_bytes == 2
    assert (m.layers, m.hidden, m.heads, m.kv_heads, m.vocab) == (36, 2048, 16, 4, 128256)
    lay = layout(cfg, target)
    one_gpu = estimate_memory(m, lay, peak_tokens=0, context=0, runtime=0)
    assert one_gpu.states == pytest.approx(8 * SMOLLM3_3B_PARAMS)  # 24.6 GB

    fsdp_cfg = _smollm3(smollm3_config, "training.nproc=8", "training.distributed=fsdp")
    fsdp = estimate_memory(m, layout(fsdp_cfg, named(fsdp_cfg, "h100")), peak_tokens=0, context=0, runtime=0)
    states = fsdp.weights + fsdp.gradients + fsdp.optimizer
    assert states * 8 == pytest.approx(16 * SMOLLM3_3B_PARAMS)  # 49.2 GB over 8 GPUs
    assert fsdp.buffers > 0  # the gathered layers


def test_flops_per_token_is_6n_full_and_4n_lora(smollm3_config):
    from smolforge.plan.model import read_model
    from smolforge.plan.speed import flops_per_token
    from smolforge.plan.target import layout, named

    cfg = _smollm3(smollm3_config, "training.activation_checkpointing=false")
    target = named(cfg, "h100")
    m = read_model(cfg, "bf16")
    fl = flops_per_token(m, layout(cfg, target), context=0, eval_context=0)
    assert fl.model == fl.executed == 6 * SMOLLM3_3B_PARAMS
    attention = flops_per_token(m, layout(cfg, target), context=1000, eval_context=0).model - fl.model
    assert attention == 12 * 36 * 2048 * 1000
    ckpt = _smollm3(smollm3_config)  # the preset checkpoints activations: one more forward
    assert flops_per_token(m, layout(ckpt, named(ckpt, "h100")), 0, 0).executed == 8 * SMOLLM3_3B_PARAMS

    lora_cfg = _smollm3(smollm3_config, "training.finetune=lora", "training.activation_checkpointing=false")
    lora = read_model(lora_cfg, "bf16")
    assert 0 < lora.adapter_params < SMOLLM3_3B_PARAMS / 50 and lora.adapter_bytes == 4  # PEFT: fp32 adapters
    fl_lora = flops_per_token(lora, layout(lora_cfg, named(lora_cfg, "h100")), 0, 0)
    assert fl_lora.model == 4 * SMOLLM3_3B_PARAMS + 6 * lora.adapter_params


def test_a_config_that_does_not_fit_says_what_would(smollm3_config):
    from smolforge.plan.estimate import PlanInputs, estimate
    from smolforge.plan.target import named

    cfg = _smollm3(smollm3_config, "training.batch_size=8", "training.max_length=8192",
                   "training.activation_checkpointing=false")
    est = estimate(PlanInputs(cfg, None, None, data_note="not cached"), named(cfg, "l4"))
    assert est.fits is False and est.needed > gpus.lookup("l4").memory_bytes
    # no single change is enough here: checkpointing, a smaller batch and LoRA together are
    assert [s.change for s in est.suggestions] == [
        "--set training.activation_checkpointing=true --batch-size 4 --gradient-accumulation-steps 16 "
        "--finetune lora (r=16)"]
    assert est.suggestions[0].peak * 1.05 + 2**30 <= gpus.lookup("l4").memory_bytes

    lighter = _smollm3(smollm3_config, "training.batch_size=8", "training.activation_checkpointing=false")
    est = estimate(PlanInputs(lighter, None, None, data_note="not cached"), named(lighter, "a100-40gb"))
    assert est.fits is False
    changes = [s.change for s in est.suggestions]
    assert changes[0] == "--set training.activation_checkpointing=true"  # each change that fits on its own
    assert any(c.startswith("--nproc 2 --set training.distributed=fsdp") for c in changes)  # FSDP checkpoints too
    for s in est.suggestions:
        assert s.peak * 1.05 + 2**30 <= gpus.lookup("a100-40gb").memory_bytes


@pytest.mark.parametrize("levers", [True, False], ids=["smolforge-cpu-head", "trl-chunked-head"])
def test_activation_bytes_match_what_autograd_saves_on_cpu(levers, monkeypatch):
    """The meta-device probe plus the formula's extras equals the bytes a real CPU forward keeps for backward, through
    smolforge's per-document attention and the LM head an SFT run on a CPU uses (lmhead.py: the logits whole) or,
    with that lever off, TRL's chunked log-prob head; for a full fine-tune, LoRA, and LoRA over the 4-bit base
    modelio loads for qlora (its frozen 4-bit matmuls keep no input for backward, as frozen linears do)."""
    import torch
    import trl.trainer.utils as trl_utils
    from trl.trainer.utils import add_fused_lm_head

    from smolforge import lmhead
    from smolforge.modelio import load_model, model_source
    from smolforge.plan.model import read_model
    from smolforge.plan.target import detect, layout
    from smolforge.runtime import resolve

    for name in ("_use_triton", "_ChunkedLogProbFunction"):  # whatever an earlier test left is put back afterwards
        monkeypatch.setattr(trl_utils, name, getattr(trl_utils, name))
    lmhead.disable()
    if levers:
        lmhead.enable()
    else:
        monkeypatch.setenv(lmhead.WHOLE_ENV, "0")  # the plan then budgets for TRL's kernel too
    four_bit = [FAST + ["training.finetune=qlora"]] if importlib.util.find_spec("bitsandbytes") else []
    for sets in (FAST, FAST + ["training.finetune=lora"], *four_bit, []):
        cfg = load_config(None, "tiny", sets)
        m = read_model(cfg, "fp32")
        lay = layout(cfg, detect(cfg))
        model = load_model(cfg, model_source(cfg), resolve(cfg), four_bit=cfg.training.four_bit_base)
        add_fused_lm_head(model, outputs=("log_probs", "entropy", "is_top1"))
        if cfg.training.adapters:  # the adapters in fp32, the run's dtype on a CPU (train.py keeps them there)
            from peft import get_peft_model

            from smolforge.trainers import lora_config

            model = get_peft_model(model, lora_config(cfg))
        model.train()
        docs = [120, 300, 45, 200]
        ids = torch.randint(10, 500, (1, sum(docs)))
        cu = torch.tensor([0, *torch.tensor(docs).cumsum(0).tolist()], dtype=torch.int32)
        params = {p.untyped_storage().data_ptr() for p in model.parameters()}
        seen: dict[int, int] = {}

        def pack(t, seen=seen, params=params):
            key = t.untyped_storage().data_ptr()
            if key not in params:
                seen[key] = t.untyped_storage().nbytes()
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            model(input_ids=ids, labels=ids, fused_lm_head=True, use_cache=False,
                  position_ids=torch.cat([torch.arange(n) for n in docs])[None], cu_seq_lens_q=cu, cu_seq_lens_k=cu,
                  max_length_q=max(docs), max_length_k=max(docs))
        measured = sum(seen.values())
        predicted = saved_per_token(m, lay, context=0, tokens=sum(docs)) * sum(docs)
        assert predicted == pytest.approx(measured, rel=0.06), sets


def test_batches_count_the_tokens_the_trainer_processes():
    cfg = load_config(None, "tiny", ["training.batch_size=4", "training.max_length=100", "training.epochs=2"])
    lengths = [10, 20, 30, 150, 40, 50, 60, 70, 80]
    free = plan_batches(cfg, "padding_free", 1, lengths, None)
    # every row once per epoch, cut to max_length: padding-free processes exactly those tokens
    assert free.steps == 2 * math.ceil(9 / 4) and free.total_tokens == 2 * sum(min(n, 100) for n in lengths)
    assert free.padding_fraction == 0.0
    padded = plan_batches(cfg, "padded", 1, lengths, None)
    assert padded.total_tokens > free.total_tokens and padded.padding_fraction > 0
    assert padded.peak_micro_tokens == 4 * 100  # a batch holding the cut 150-token row is padded to 100
    packed = plan_batches(cfg, "packed", 1, lengths, None)
    assert packed.rows == len(pack_bins(lengths, 100)) < len(lengths)
    assert packed.total_tokens == 2 * sum(min(n, 100) for n in lengths)


def test_pack_bins_fills_without_overflow():
    lengths = [70, 60, 50, 40, 30, 20, 10, 5, 250]
    bins = pack_bins(lengths, 100)
    assert all(sum(b) <= 100 for b in bins)
    assert sorted(n for b in bins for n in b) == sorted(min(n, 100) for n in lengths)
    assert len(bins) == math.ceil(sum(min(n, 100) for n in lengths) / 100)  # best-fit decreasing is tight here


@pytest.mark.parametrize(("rows", "batch", "accum", "world", "epochs", "expected"), [
    (451, 8, 1, 1, 4.0, (57, 228)), (451, 8, 4, 1, 1.0, (15, 15)), (451, 8, 1, 2, 1.0, (29, 29)),
    (10, 4, 1, 1, 0.5, (3, 2))])
def test_trainer_steps_follow_transformers(rows, batch, accum, world, epochs, expected):
    cfg = load_config(None, "tiny", [f"training.batch_size={batch}", f"training.gradient_accumulation_steps={accum}",
                                     f"training.epochs={epochs}"])
    assert trainer_steps(rows, cfg, world) == expected


def test_without_data_every_micro_batch_is_full():
    cfg = load_config(None, "tiny", ["training.batch_size=4", "training.max_length=256"])
    b = plan_batches(cfg, "padding_free", 1, None, None)
    assert b.source == "max_length" and b.peak_micro_tokens == 4 * 256 and b.steps == 0
    steps = plan_batches(load_config(None, "tiny", ["training.max_steps=7"]), "padding_free", 1, None, None)
    assert steps.steps == 7


def test_eager_attention_keeps_the_probabilities():
    from smolforge.plan.model import read_model

    cfg = load_config(None, "tiny", FAST)
    m = read_model(cfg, "fp32")
    base = dict(adapters=False, method="sft", distributed="none", world=1, checkpointing=False, padded=True,
                activation_bytes=4)
    sdpa = saved_per_token(m, Layout(attention="sdpa", **base), context=500)
    eager = saved_per_token(m, Layout(attention="eager", **base), context=500)
    assert eager - sdpa == pytest.approx(m.quadratic * 500 * m.layers)
    assert m.quadratic == pytest.approx(m.heads * 4, rel=0.01)  # fp32 probabilities, one per head


# SmolLM3-3B's linear layers, all held in 4 bits by a qlora run: q and o 2048 x 2048, k and v 2048 x 512, gate, up
# and down 2048 x 11,008, in each of 36 layers (252 weights); the tied 128,256 x 2,048 embedding (also the output
# head) and the 73 RMSNorm weights stay in bf16
SMOLLM3_3B_FOUR_BIT = 36 * (2 * 2048 * 2048 + 2 * 2048 * 512 + 3 * 2048 * 11008)  # 2,812,280,832


def test_four_bit_bytes_match_what_bitsandbytes_stores():
    """The plan's bytes per 4-bit weight are what bitsandbytes keeps for it: the packed codes, the 8-bit absmax per
    64 weights, the fp32 scale per 256 absmax values, and the code tables and offset each quantized tensor holds."""
    torch = pytest.importorskip("torch")
    bnb = pytest.importorskip("bitsandbytes.functional")
    from smolforge.plan.nf4 import four_bit_bytes

    for shape in [(2048, 2048), (2048, 11008), (512, 2048), (100, 30), (1, 129), (64, 64 * 256 + 1)]:
        packed, state = bnb.quantize_4bit(torch.randn(shape, dtype=torch.bfloat16), quant_type="nf4",
                                          compress_statistics=True)
        tensors = [packed, state.absmax, state.code, state.offset, state.state2.absmax, state.state2.code]
        stored = sum(t.numel() * t.element_size() for t in tensors)
        assert four_bit_bytes(math.prod(shape)) == stored, shape
    # about 0.516 bytes per parameter: 4 bits, 1/64 byte of absmax, 4/16,384 bytes of double-quantization scale
    assert four_bit_bytes(2048 * 11008) / (2048 * 11008) == pytest.approx(0.5 + 1 / 64 + 4 / 16384, rel=1e-4)


def test_smollm3_3b_qlora_worked_example(smollm3_config):
    """SmolLM3-3B qlora on one bf16 GPU: the 252 linear weights in 4-bit NF4 at 0.5 + 1/64 + 4/16,384 bytes per
    parameter plus 1,092 bytes of code tables and offset per weight; the tied embedding and the norms in bf16; the
    adapters, their gradients and AdamW moments in bf16 (the run's dtype). About a third of LoRA's weights term."""
    from smolforge.plan.model import read_model
    from smolforge.plan.speed import flops_per_token
    from smolforge.plan.target import layout, named

    cfg = _smollm3(smollm3_config, "training.finetune=qlora")
    target = named(cfg, "h100")
    m = read_model(cfg, target.dtype_name)
    assert m.params == SMOLLM3_3B_PARAMS and m.quantized_params == SMOLLM3_3B_FOUR_BIT and len(m.quantized) == 252
    assert m.params - m.quantized_params == 128256 * 2048 + (2 * 36 + 1) * 2048  # embedding and norms
    assert m.param_bytes == 2 and m.adapter_bytes == 2
    # every weight's size is a multiple of 64 x 256, so no block is partly filled
    four_bit = SMOLLM3_3B_FOUR_BIT * (0.5 + 1 / 64 + 4 / (64 * 256)) + 252 * 1092  # 1.47 GB
    base = four_bit + (SMOLLM3_3B_PARAMS - SMOLLM3_3B_FOUR_BIT) * 2  # + 0.53 GB in bf16
    mem = estimate_memory(m, layout(cfg, target), peak_tokens=0, context=0, runtime=0)
    assert mem.weights == pytest.approx(base + m.adapter_params * 2)  # 2.04 GB
    assert mem.gradients == m.adapter_params * 2 and mem.optimizer == m.adapter_params * 4
    assert mem.weights / 2**30 == pytest.approx(1.90, abs=0.01)

    lora_cfg = _smollm3(smollm3_config, "training.finetune=lora")
    lora = read_model(lora_cfg, "bf16")
    assert lora.adapter_params == m.adapter_params and lora.quantized == ()
    lora_mem = estimate_memory(lora, layout(lora_cfg, named(lora_cfg, "h100")), peak_tokens=0, context=0, runtime=0)
    assert lora_mem.weights == pytest.approx(SMOLLM3_3B_PARAMS * 2 + lora.adapter_params * 4)  # 6.27 GB
    assert mem.weights < 0.35 * lora_mem.weights
    assert four_bit < 0.27 * SMOLLM3_3B_FOUR_BIT * 2  # the quantized weights: about a quarter of their bf16 bytes
    # the same FLOPs as LoRA; the dequantization is priced apart (below)
    assert flops_per_token(m, layout(cfg, target), 0, 0).model == 4 * SMOLLM3_3B_PARAMS + 6 * m.adapter_params


def test_qlora_prices_the_dequantization_of_its_4_bit_weights(smollm3_config):
    """Each micro-batch dequantizes every 4-bit weight into bf16 in the forward, the backward and (checkpointing)
    the recomputed forward: the bytes moved at the GPU's datasheet bandwidth, added to LoRA's time on the same
    GPU; an L4's 300 GB/s makes QLoRA slower than LoRA, as it is."""
    from smolforge.plan.estimate import PlanInputs, estimate
    from smolforge.plan.report import table_rows
    from smolforge.plan.speed import dequant_bytes
    from smolforge.plan.target import layout, named

    steps = ["training.max_steps=10"]
    cfg = _smollm3(smollm3_config, "training.finetune=qlora", *steps)
    lora_cfg = _smollm3(smollm3_config, "training.finetune=lora", *steps)
    qlora = estimate(PlanInputs(cfg=cfg, train_lengths=None, eval_lengths=None, baseline_rss=0), named(cfg, "l4"))
    lora = estimate(PlanInputs(cfg=lora_cfg, train_lengths=None, eval_lengths=None, baseline_rss=0),
                    named(lora_cfg, "l4"))
    lay = layout(cfg, named(cfg, "l4"))
    assert lay.checkpointing and lay.activation_bytes == 2
    moved = SMOLLM3_3B_FOUR_BIT * (0.5 + 1 / 64 + 4 / (64 * 256)) + 252 * 1092 + SMOLLM3_3B_FOUR_BIT * 2
    assert dequant_bytes(qlora.model, lay) == pytest.approx(moved)
    per_step = cfg.training.gradient_accumulation_steps * 3 * moved / 300e9
    assert qlora.timing.dequant_s == pytest.approx(10 * per_step) and lora.timing.dequant_s == 0
    assert qlora.timing.train_s == pytest.approx(lora.timing.train_s)  # the same FLOPs
    assert qlora.tokens_per_second < lora.tokens_per_second
    time_row = dict(table_rows(qlora))["Time"]
    assert "4-bit dequantization" in time_row and "an estimate from memory bandwidth" in time_row


def test_a_3b_run_too_big_for_a_t4_suggests_qlora(smollm3_config):
    """One 20k-token micro-batch of SmolLM3-3B on a 16 GB T4: neither the full fine-tune nor LoRA fits, QLoRA does;
    the table says so and names the 4-bit base."""
    from smolforge.plan.estimate import PlanInputs, estimate
    from smolforge.plan.report import table_rows
    from smolforge.plan.target import named

    capacity = gpus.lookup("t4").memory_bytes
    long = ["training.batch_size=1", "training.max_length=20480"]
    for finetune in ("full", "lora"):
        cfg = _smollm3(smollm3_config, f"training.finetune={finetune}", *long)
        est = estimate(PlanInputs(cfg, None, None, data_note="not cached"), named(cfg, "t4"))
        assert est.fits is False, finetune
        changes = [s.change for s in est.suggestions]
        assert changes[0] == "--finetune qlora (r=16)" and not any("lora (" in c for c in changes[1:]), changes
        assert est.suggestions[0].peak * 1.05 + 2**30 <= capacity

    cfg = _smollm3(smollm3_config, "training.finetune=qlora", *long)
    est = estimate(PlanInputs(cfg, None, None, data_note="not cached"), named(cfg, "t4"))
    assert est.fits and not est.suggestions
    rows = dict(table_rows(est))
    assert "30.23M trained (QLoRA r=16 over a 4-bit NF4 base)" in rows["Model"]
    assert "(4N + 6N_adapter + attention)" in rows["FLOPs"] and "dequantized" in rows["FLOPs"]
    assert "2.81B in 4-bit NF4 x 0.516 bytes + 262.82M x 2 bytes" in rows["  weights"]


def test_the_planned_four_bit_base_is_what_loading_stores():
    """The weights the plan holds in 4 bits, and their bytes, are those of the tiny model loaded for a qlora run
    (modelio.load_model: transformers' bitsandbytes quantizer on this CPU)."""
    pytest.importorskip("bitsandbytes")
    import bitsandbytes as bnb

    from smolforge.modelio import load_model, model_source
    from smolforge.plan.memory import base_weight_bytes
    from smolforge.plan.model import read_model
    from smolforge.runtime import resolve

    cfg = load_config(None, "tiny", [*FAST, "training.finetune=qlora"])
    model = load_model(cfg, model_source(cfg), resolve(cfg), four_bit=True)
    four_bit = [m.weight for m in model.modules() if isinstance(m, bnb.nn.Linear4bit)]
    stored = 0
    for w in four_bit:
        s = w.quant_state
        stored += sum(t.numel() * t.element_size()
                      for t in (w, s.absmax, s.code, s.offset, s.state2.absmax, s.state2.code))
    stored += sum(p.numel() * p.element_size() for p in model.parameters() if not any(p is w for w in four_bit))
    m = read_model(cfg, "fp32")
    assert sorted(m.quantized) == sorted(w.quant_state.shape.numel() for w in four_bit)
    assert len(m.quantized) == 2 * 7  # every projection of the 2 layers; the tied embedding and head stay fp32
    assert base_weight_bytes(m) == stored
