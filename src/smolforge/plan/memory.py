"""Peak memory of one training process, term by term (bytes). Pure arithmetic: unit-tested on worked examples.

    weights      base parameters x bytes as loaded, + LoRA adapters in their dtype; a DPO full fine-tune
                 also holds TRL's frozen reference copy. qlora's base holds the weights of the linear layers
                 that transformers' bitsandbytes quantizer replaces (model.py says which) in 4-bit NF4 with
                 double quantization, per weight tensor of n parameters (four_bit_bytes):
                   ceil(n / 2)                    two 4-bit codes per byte
                   + ceil(n / 64)                 an 8-bit absmax per block of 64 weights
                   + 4 x ceil(n / 64 / 256)       an fp32 scale per 256 absmax blocks (the double quantization)
                   + 1,092                        its own copies of the code tables (16 NF4 values, 256 for
                                                  the absmax) and the absmax offset, in fp32
                 about 0.516 bytes per parameter; every other parameter (embeddings, norms, the output head,
                 biases) stays in the run's dtype, and the adapters train in the run's dtype too (train.py
                 undoes TRL's cast of a 4-bit model's adapters to bf16). The copy of a weight that each 4-bit
                 matmul dequantizes lives only for that matmul and is not counted (--calibrate measures it)
    gradients    trainable parameters x bytes of their dtype
    optimizer    AdamW's two moments per trainable parameter, in the parameter's dtype (torch's AdamW
                 allocates them like the parameter)
    activations  tokens of the largest micro-batch x bytes saved per token:
                   without checkpointing: layers x a layer's saved bytes + the rest (embeddings, final norm,
                   the loss's fp32 log-probabilities)
                   with checkpointing: layers x a layer's input + the rest + one layer recomputed in backward
                 + the key/value heads repeated for grouped-query attention (SDPA with a padding mask; smolforge's
                   per-document SDPA shares them with enable_gqa), + heads x context probabilities for eager attention
                 + the final hidden states and 16 bytes per token that TRL's chunked log-prob kernel keeps, or, when
                   an SFT run on a CPU holds the logits whole (lmhead.py), their fp32 log-probabilities and
                   probabilities (2 x vocab x 4 bytes per token: every processed token counts, an upper bound for
                   the supervised ones it scores)
    loss         TRL 1.16's kernel never holds the logits: one tile of TOKEN_CHUNK_SIZE tokens x 32,768 vocabulary
                 columns (allocated whole on a GPU; on a CPU only the pages of the columns used become resident,
                 plus its fp32 temporaries); the whole head instead holds two fp32 logits-sized gradients in
                 backward. Both add fp32 accumulators for the hidden states' gradient and, when the output head
                 trains, the head's weight gradient (vocab x hidden x 4)
    buffers      DDP: its gradient buckets, a second copy of the gradients; FSDP: the layers gathered for
                 compute (the largest layer, twice: one computing, the next prefetched)
    generation   GRPO: the KV cache its sampling holds, where it exceeds the gradients, activations and loss
                 buffers of the backward pass (they are never held together: plan/rollouts.py)
    runtime      CPU: the process before training (Python, libraries, data), measured; a CUDA process keeps
                 its context outside torch's allocated memory, so the fit check adds CUDA_RESERVE instead

Precision follows what smolforge runs: the model is loaded in the run's dtype (modelio.torch_dtype: bf16 on a
GPU, fp32 on a CPU), so a single-process or DDP bf16 run keeps weights, gradients and AdamW moments in bf16
(2 + 2 + 4 = 8 bytes per parameter); under FSDP with mixed precision accelerate upcasts the trainable
parameters to fp32 master weights (4 + 4 + 8 = 16 bytes per parameter, sharded over the processes).
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from smolforge.lmhead import holds_logits_whole
from smolforge.plan.model import ModelFacts
from smolforge.plan.nf4 import four_bit_bytes

GIB = 2**30
CUDA_RESERVE = int(1.0 * GIB)  # CUDA context + allocator slack a process needs beyond torch's allocated bytes
CUDA_SLACK = 0.05              # ...plus this share of the peak (fragmentation between differently sized blocks)
FP32 = 4
PAGE = 4096
FUSED_HEAD_PER_TOKEN = 16  # TRL's kernel keeps log Z and the entropy (fp32) and the target id (int64) per token


@dataclass(frozen=True)
class Layout:
    """How the run holds its state: what `runtime.resolve` and the launcher decide for the target device."""

    adapters: bool           # LoRA adapters train over a frozen base (lora, qlora); False: every weight trains
    method: str              # sft | dpo | grpo
    distributed: str         # none | ddp | fsdp
    world: int               # processes
    checkpointing: bool
    attention: str           # varlen_sdpa | sdpa | eager | flash_attention_2
    padded: bool             # batches carry a padding mask
    activation_bytes: int    # bytes of one activation element (the compute dtype)
    on_gpu: bool = False
    reference: bool = False  # a frozen reference scores the tokens: DPO, GRPO with a KL term (beta > 0); a copy
                             # of the weights in a full fine-tune, the base with adapters off otherwise


@dataclass(frozen=True)
class Memory:
    weights: float
    gradients: float
    optimizer: float
    activations: float
    loss: float
    buffers: float
    runtime: float
    generation: float = 0.0  # GRPO: what the KV cache of sampling needs beyond the backward pass (plan/rollouts.py)

    @property
    def total(self) -> float:
        return sum(getattr(self, f.name) for f in fields(self))

    @property
    def states(self) -> float:
        """Everything but activations, loss buffers and the process baseline."""
        return self.weights + self.gradients + self.optimizer + self.buffers

    def as_dict(self) -> dict[str, int]:
        return {f.name: int(getattr(self, f.name)) for f in fields(self)} | {"total": int(self.total)}


def state_bytes_per_parameter(param_bytes: int, fsdp_mixed: bool) -> tuple[int, int, int]:
    """(weights, gradients, AdamW moments) bytes per trained parameter.

    AdamW keeps two moments in the parameter's dtype. FSDP with mixed precision trains fp32 master weights.
    """
    master = FP32 if fsdp_mixed else param_bytes
    return master, master, 2 * master


def quantized_bytes(m: ModelFacts) -> int:
    """The base weights a qlora run holds in 4 bits, as bitsandbytes stores them (0 for a base in the run's dtype)."""
    return sum(four_bit_bytes(n) for n in m.quantized)


def base_weight_bytes(m: ModelFacts) -> float:
    """The base model's parameters as loaded: the 4-bit ones (qlora) at four_bit_bytes, the rest in the run's dtype."""
    return (m.params - m.quantized_params) * m.param_bytes + quantized_bytes(m)


def whole_head(m: ModelFacts, lay: Layout, tokens: int) -> bool:
    """Whether the run's LM head holds a micro-batch of `tokens` logits whole (lmhead.py's rule: SFT on a CPU)."""
    return not lay.on_gpu and lay.method == "sft" and holds_logits_whole(tokens, m.vocab)


def saved_per_token(m: ModelFacts, lay: Layout, context: float, tokens: int = 0) -> float:
    """Activation bytes autograd keeps per token of a micro-batch of `tokens` (see the module docstring)."""
    if lay.checkpointing:
        per = m.layers * m.layer_input + m.outside_saved + m.layer_saved
    else:
        per = m.layers * m.layer_saved + m.outside_saved
    if lay.attention not in ("flash_attention_2", "varlen_sdpa") and m.kv_heads < m.heads and lay.padded:
        repeated = 2 * (m.heads - m.kv_heads) * m.head_dim * lay.activation_bytes
        per += repeated * (1 if lay.checkpointing else m.layers)
    if lay.attention == "eager":
        per += m.quadratic * context * (1 if lay.checkpointing else m.layers)
    head = 2 * m.vocab * FP32 + 8 if whole_head(m, lay, tokens) else FUSED_HEAD_PER_TOKEN
    return per + m.hidden * lay.activation_bytes + head


def loss_bytes(m: ModelFacts, lay: Layout, tokens: int) -> float:
    """What the LM head allocates at the peak (the start of backward), see the module docstring."""
    rows, width = min(tokens, m.head_tile[0]), m.head_tile[1]
    cols = min(m.vocab, width)
    if whole_head(m, lay, tokens):
        tile = 2 * tokens * m.vocab * FP32
    elif lay.on_gpu:
        tile = rows * width * lay.activation_bytes
    else:
        tile = rows * max(cols * lay.activation_bytes, PAGE) + 3 * rows * cols * FP32
    head_grad = 0 if lay.adapters else m.vocab * m.hidden * FP32
    return tile + tokens * m.hidden * FP32 + head_grad


def estimate_memory(m: ModelFacts, lay: Layout, peak_tokens: int, context: float, runtime: float,
                    generating: float = 0.0) -> Memory:
    """Peak bytes of one process for the largest micro-batch of `peak_tokens` processed tokens; `generating`: the
    bytes GRPO's sampling holds at once (its KV cache), which the peak covers too."""
    fsdp = lay.distributed == "fsdp" and lay.world > 1
    shard = lay.world if fsdp else 1
    if lay.adapters:
        w, g, o = state_bytes_per_parameter(m.adapter_bytes, fsdp)
        weights = base_weight_bytes(m) / shard + m.adapter_params * w / shard
        grads, optim = m.adapter_params * g / shard, m.adapter_params * o / shard
    else:
        w, g, o = state_bytes_per_parameter(m.param_bytes, fsdp)
        weights, grads, optim = m.params * w / shard, m.params * g / shard, m.params * o / shard
        if lay.reference:
            weights += m.params * m.param_bytes / shard  # TRL's frozen reference model
    buffers = 0.0
    if lay.distributed == "ddp" and lay.world > 1:
        buffers = grads  # DDP all-reduces through buckets that copy every gradient
    if fsdp:
        buffers = 2 * m.largest_layer_bytes * lay.activation_bytes / m.param_bytes
    activations = peak_tokens * saved_per_token(m, lay, context, peak_tokens)
    loss = loss_bytes(m, lay, peak_tokens)
    generation = max(0.0, generating - (grads + activations + loss))  # never held with the backward's tensors
    return Memory(weights=weights, gradients=grads, optimizer=optim, activations=activations, loss=loss,
                  buffers=buffers, runtime=runtime, generation=generation)


def cuda_needed(peak_allocated: float) -> float:
    """Device memory a CUDA process needs for `peak_allocated` bytes of tensors."""
    return peak_allocated * (1 + CUDA_SLACK) + CUDA_RESERVE
