"""Token lengths with the chat template: length statistics, the length filters and the max_length check.

TRL cuts every row to `training.max_length` and then quietly drops the rows left with nothing to
learn from: SFT keeps a row only if a supervised token survives the cut, DPO only if the prompt is
shorter than max_length. With no row left SFT crashes in the sampler, and DPO trains on fewer pairs
than the summary said. The same rule runs here, with only the tokenizer and before the model
loads, so those rows are counted drop reasons and a max_length that fits no row is a `DataError`
that names a value that works.
"""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING, Any

from smolforge.config import DataSection
from smolforge.data.formats import resolve_loss_on
from smolforge.data.prepare import NO_SUPERVISED, OUTSIDE_TOKENS, PreparedData, log_drops
from smolforge.data.sources import quiet_logger
from smolforge.errors import DataError
from smolforge.modelio import load_tokenizer, model_source

if TYPE_CHECKING:
    from smolforge.config import SmolforgeConfig


def _chat_ids(msgs: list[dict], tokenizer: Any, kw: dict, **extra: Any) -> list[int]:
    return tokenizer.apply_chat_template(msgs, tokenize=True, return_dict=True, **kw, **extra)["input_ids"]


def _chat_length(msgs: list[dict], tokenizer: Any, kw: dict) -> int:
    return len(_chat_ids(msgs, tokenizer, kw))


def token_length(row: dict, tokenizer: Any, kind: str) -> int:
    """Tokens of the sequence TRL will train on (for DPO: the longer of chosen and rejected)."""
    kw = row.get("chat_template_kwargs") or {}
    if kind == "text":
        text = row["text"]
        eos = tokenizer.eos_token
        return len(tokenizer(text + eos if eos and not text.endswith(eos) else text)["input_ids"])  # TRL adds EOS
    if kind == "conversational":
        return _chat_length(row["messages"], tokenizer, kw)
    if kind == "prompt_completion":
        return _chat_length(row["prompt"] + row["completion"], tokenizer, kw)
    return max(_chat_length(row["prompt"] + row["chosen"], tokenizer, kw),
               _chat_length(row["prompt"] + row["rejected"], tokenizer, kw))


def _common_prefix(a: list[int], b: list[int]) -> int:
    """Where TRL says the completion starts: the prompt's tokens that prompt+completion shares."""
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def measure(row: dict, tokenizer: Any, kind: str, loss_on: str) -> tuple[int, int]:
    """(full length, tokens before the first supervised token) of a row, tokenised as TRL 1.16 tokenises it.

    The second number is what must fit below max_length for the row to train anything: the
    chat-template tokens before the first assistant token (assistant-only loss), the prompt with its
    generation prompt (completion loss, DPO), or 0 when every token carries the loss.
    """
    kw = row.get("chat_template_kwargs") or {}
    if kind == "text":
        return token_length(row, tokenizer, kind), 0
    if kind == "conversational":
        if loss_on != "assistant":
            return _chat_length(row["messages"], tokenizer, kw), 0
        out = tokenizer.apply_chat_template(row["messages"], tokenize=True, return_dict=True,
                                            return_assistant_tokens_mask=True, **kw)
        first = next((i for i, m in enumerate(out["assistant_masks"]) if m), None)
        if first is None:  # a template without {% generation %} marks: everything before the first assistant turn
            turn = next(i for i, m in enumerate(row["messages"]) if m["role"] == "assistant")
            first = len(_chat_ids(row["messages"][:turn], tokenizer, kw, add_generation_prompt=True))
        return len(out["input_ids"]), first
    prompt = _chat_ids(row["prompt"], tokenizer, kw, add_generation_prompt=True)
    if kind == "prompt_completion":
        full = _chat_ids(row["prompt"] + row["completion"], tokenizer, kw)
        return len(full), _common_prefix(prompt, full) if loss_on == "completion" else 0
    chosen = _chat_ids(row["prompt"] + row["chosen"], tokenizer, kw)
    rejected = _chat_ids(row["prompt"] + row["rejected"], tokenizer, kw)
    return max(len(chosen), len(rejected)), min(_common_prefix(prompt, chosen), _common_prefix(prompt, rejected))


def length_stats(lengths: list[int]) -> dict[str, float | int]:
    if not lengths:
        return {}
    s = sorted(lengths)

    def pct(p: float) -> int:
        return s[min(len(s) - 1, int(p * (len(s) - 1) + 0.5))]

    return {"min": s[0], "p50": pct(0.5), "p90": pct(0.9), "max": s[-1],
            "mean": round(sum(s) / len(s), 1), "total": sum(s)}


def _drop_reason(full: int, prompt: int, cfg: DataSection, max_length: int) -> str:
    if full < cfg.min_tokens or (cfg.max_tokens is not None and full > cfg.max_tokens):
        return OUTSIDE_TOKENS
    if prompt >= max_length:  # TRL's rule: a supervised token must sit at a position below max_length
        return NO_SUPERVISED
    return ""


def apply_length_filters(data: PreparedData, tokenizer: Any, cfg: DataSection, max_length: int) -> None:
    """Measure token lengths (with the chat template); drop rows outside data.min_tokens/max_tokens and rows
    training.max_length leaves nothing to learn from, counted by reason; record length stats.

    Done once per max_length: `pipeline.execute` runs it before the run folder exists (see `precheck`),
    and the trainer's own call then finds it done.
    """
    if data.length_checked == max_length:
        return
    loss_on = "completion" if data.kind == "preference" else resolve_loss_on(cfg.loss_on, data.kind)
    measured: list[tuple[int, int]] = []
    for split in ("train", "eval"):
        ds = getattr(data, split)
        if ds is None:
            continue
        sizes = [measure(r, tokenizer, data.kind, loss_on) for r in ds]
        why = [_drop_reason(full, prompt, cfg, max_length) for full, prompt in sizes]
        keep = [i for i, w in enumerate(why) if not w]
        prefix = "" if split == "train" else "eval_"
        for reason, n in Counter(w for w in why if w).items():
            data.stats[f"{prefix}rows_dropped"] += n
            data.stats[f"{prefix}drop_reasons"][reason] = data.stats[f"{prefix}drop_reasons"].get(reason, 0) + n
        if len(keep) < len(sizes):
            setattr(data, split, ds.select(keep) if keep else None)
        lengths = [sizes[i][0] for i in keep]
        data.lengths[split] = lengths  # the run's own token lengths: `smolforge plan` batches them
        data.stats[f"{split}_size"] = len(keep)
        data.stats[f"{split}_token_lengths"] = length_stats(lengths)
        data.stats[f"{split}_truncated_rows"] = sum(1 for n in lengths if n > max_length)
        if split == "train":
            measured = sizes
    if data.train is None:
        fits = [(f, p) for f, p in measured if _drop_reason(f, 0, cfg, max_length) == ""]
        if fits:
            raise DataError(_max_length_message(fits, max_length, data.kind))
        raise DataError(f"data: no training rows are left after data.min_tokens ({cfg.min_tokens}) / "
                        f"data.max_tokens ({cfg.max_tokens}). Widen the limits.")
    data.length_checked = max_length
    log_drops(data.stats, ("length",))


def _max_length_message(sizes: list[tuple[int, int]], max_length: int, kind: str) -> str:
    """Every row's prompt reaches max_length: say how long the rows are and a max_length that keeps most."""
    fulls = length_stats([f for f, _ in sizes])
    wanted = max([p for f, p in sizes if f <= fulls["p90"]], default=0)  # prompts of the rows a p90 fit keeps
    suggest = 1 << (max(fulls["p90"], wanted + 1) - 1).bit_length()
    rows, fate = ("pair", "drop every pair") if kind == "preference" else \
        ("row", "cut every row before its first trained token")
    return (f"training.max_length: {max_length} tokens cannot hold the prompt of any training {rows} (everything "
            f"before its first trained token, with the chat template), so TRL would {fate}: the shortest prompt is "
            f"{min(p for _, p in sizes)} tokens and the shortest example {fulls['min']} tokens; 90% of the examples "
            f"are at most {fulls['p90']}. Set --set training.max_length={suggest} (the smallest power of two that "
            "fits 90% of them), or shorten the prompts.")


def check_model_length(cfg: SmolforgeConfig, source: str) -> None:
    """training.max_length must fit the model's positions (read from its config.json, no weights loaded)."""
    from transformers import AutoConfig

    try:
        config = AutoConfig.from_pretrained(source, revision=cfg.model.revision,
                                            trust_remote_code=cfg.model.trust_remote_code)
    except (OSError, ValueError):
        return  # the tokenizer loaded, so the model's own loading will report what is wrong
    limit = getattr(config, "max_position_embeddings", None)
    if not isinstance(limit, int) or cfg.training.max_length <= limit:
        return
    if cfg.model.is_tiny:
        raise DataError(f"training.max_length: {cfg.training.max_length:,} tokens is longer than the tiny model takes "
                        f"(model.tiny.max_position_embeddings {limit:,}). Set --set training.max_length={limit} or "
                        f"less, or build a longer tiny model with --set model.tiny.max_position_embeddings="
                        f"{cfg.training.max_length}.")
    raise DataError(f"training.max_length: {cfg.training.max_length:,} tokens is longer than "
                    f"{cfg.model.name_or_path} can take (max_position_embeddings {limit:,} in its config.json). "
                    f"Set --set training.max_length={limit} or less.")


def precheck(cfg: SmolforgeConfig, data: PreparedData) -> None:
    """Apply the length filters with only the tokenizer, so a training.max_length that fits no row (or not the
    model) fails before the run folder is created or the model loads; the trainer then reuses the result."""
    source = model_source(cfg)
    # trl imports torchao, which warns that it skips its C++ extensions (the process environment asks it to)
    with quiet_logger("torchao"):
        tokenizer = load_tokenizer(cfg, source, needs_markers=data.kind != "text")
    check_model_length(cfg, source)
    apply_length_filters(data, tokenizer, cfg.data, cfg.training.max_length)
