"""Token lengths with the chat template: length statistics, the length filters and the max_length check.

TRL cuts every row to `training.max_length` and then quietly drops the rows left with nothing to
learn from: SFT keeps a row only if a supervised token survives the cut, DPO only if the prompt is
shorter than max_length. With no row left SFT crashes in the sampler, and DPO trains on fewer pairs
than the summary said. The same rule runs here, with only the tokenizer and before the model
loads, so those rows are counted drop reasons and a max_length that fits no row is a `DataError`
that names a value that works.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import TYPE_CHECKING, Any, NamedTuple

from smolforge.config import DataSection
from smolforge.data.formats import resolve_loss_on
from smolforge.data.prepare import NO_SUPERVISED, OUTSIDE_TOKENS, PROMPT_TOO_LONG, ROW, PreparedData, log_drops
from smolforge.data.report import RowFacts, build_report, refuse_template_loss, row_facts
from smolforge.data.sources import quiet_logger
from smolforge.data.survival import LostRow, excerpt, has_loss_marks, lost, template_reasons
from smolforge.errors import DataError
from smolforge.modelio import load_tokenizer, model_source, template_facts

PROGRESS_FROM = 5000  # rows: below this the check takes a few seconds at most, without a bar

if TYPE_CHECKING:
    from smolforge.config import SmolforgeConfig


def _chat_ids(msgs: list[dict], tokenizer: Any, kw: dict, tools: list | None = None, **extra: Any) -> list[int]:
    return tokenizer.apply_chat_template(msgs, tokenize=True, return_dict=True, tools=tools, **kw,
                                         **extra)["input_ids"]


def _tools(row: dict) -> list | None:
    """The row's tools as TRL passes them to the template (it reads the `tools` column as JSON)."""
    return json.loads(row["tools"]) if row.get("tools") else None


def token_length(row: dict, tokenizer: Any, kind: str) -> int:
    """Tokens of the sequence TRL will train on (for DPO: the longer of chosen and rejected)."""
    return measure(row, tokenizer, kind, "all").full


def _common_prefix(a: list[int], b: list[int]) -> int:
    """Where TRL says the completion starts: the prompt's tokens that prompt+completion shares."""
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


class Measured(NamedTuple):
    full: int  # tokens of the sequence TRL trains on (DPO: the longer of chosen and rejected)
    prompt: int  # tokens before the first supervised token: they must fit below max_length
    loss_positions: tuple[int, ...] | None  # which tokens carry the loss; None: every token from `prompt` on

    def loss_tokens(self, max_length: int | None = None) -> int:
        """Tokens that carry the loss, within the first `max_length` (what training sees after the cut)."""
        end = self.full if max_length is None else min(self.full, max_length)
        if self.loss_positions is None:
            return max(0, end - self.prompt)
        return sum(1 for i in self.loss_positions if i < end)


def measure(row: dict, tokenizer: Any, kind: str, loss_on: str) -> Measured:
    """A row's length, where its supervised tokens start and which they are, tokenised as TRL 1.16 tokenises it.

    The supervised tokens start after the chat-template tokens before the first assistant token
    (assistant-only loss), after the prompt with its generation prompt (completion loss, DPO), or at 0
    when every token carries the loss.
    """
    kw = row.get("chat_template_kwargs") or {}
    tools = _tools(row)
    if kind == "text":
        text = row["text"]
        eos = tokenizer.eos_token
        full = len(tokenizer(text + eos if eos and not text.endswith(eos) else text)["input_ids"])  # TRL adds EOS
        return Measured(full, 0, None)
    if kind == "conversational":
        if loss_on != "assistant":
            return Measured(len(_chat_ids(row["messages"], tokenizer, kw, tools)), 0, None)
        out = tokenizer.apply_chat_template(row["messages"], tokenize=True, return_dict=True, tools=tools,
                                            return_assistant_tokens_mask=True, **kw)
        positions = tuple(i for i, m in enumerate(out["assistant_masks"]) if m)
        if not positions:  # a template without {% generation %} marks: everything before the first assistant turn
            turn = next(i for i, m in enumerate(row["messages"]) if m["role"] == "assistant")
            first = len(_chat_ids(row["messages"][:turn], tokenizer, kw, tools, add_generation_prompt=True))
            return Measured(len(out["input_ids"]), first, None)
        return Measured(len(out["input_ids"]), positions[0], positions)
    prompt = _chat_ids(row["prompt"], tokenizer, kw, tools, add_generation_prompt=True)
    if kind == "prompt_answer":  # GRPO: the prompt only; the completions are sampled during training
        return Measured(len(prompt), len(prompt), ())
    if kind == "prompt_completion":
        full = _chat_ids(row["prompt"] + row["completion"], tokenizer, kw, tools)
        return Measured(len(full), _common_prefix(prompt, full) if loss_on == "completion" else 0, None)
    chosen = _chat_ids(row["prompt"] + row["chosen"], tokenizer, kw)
    rejected = _chat_ids(row["prompt"] + row["rejected"], tokenizer, kw)
    return Measured(max(len(chosen), len(rejected)),
                    min(_common_prefix(prompt, chosen), _common_prefix(prompt, rejected)), None)


def length_stats(lengths: list[int]) -> dict[str, float | int]:
    if not lengths:
        return {}
    s = sorted(lengths)

    def pct(p: float) -> int:
        return s[min(len(s) - 1, int(p * (len(s) - 1) + 0.5))]

    return {"min": s[0], "p50": pct(0.5), "p90": pct(0.9), "max": s[-1],
            "mean": round(sum(s) / len(s), 1), "total": sum(s)}


def _drop_reason(full: int, prompt: int, cfg: DataSection, max_length: int, completion_room: int = 0) -> str:
    if full < cfg.min_tokens or (cfg.max_tokens is not None and full > cfg.max_tokens):
        return OUTSIDE_TOKENS
    if completion_room:  # GRPO: the prompt and the longest completion it samples must fit in max_length
        return PROMPT_TOO_LONG if prompt + completion_room > max_length else ""
    if prompt >= max_length:  # TRL's rule: a supervised token must sit at a position below max_length
        return NO_SUPERVISED
    return ""


def _progress(rows: Any, label: str) -> Any:
    """Rows with a progress bar on stderr when there are many (a large file takes a while to render)."""
    if len(rows) < PROGRESS_FROM:
        return rows
    from tqdm.auto import tqdm

    return tqdm(rows, desc=f"Checking {label} rows with the chat template", unit=" rows")


def _check_split(ds: Any, tokenizer: Any, kind: str, loss_on: str, marks: bool,
                 label: str) -> tuple[list[Measured | None], list[LostRow], list[RowFacts]]:
    """Each row: what the template loses of it (survival check), else its measured tokens (None where lost)."""
    measured: list[Measured | None] = []
    lost_rows: list[LostRow] = []
    facts: list[RowFacts] = []
    for i, row in enumerate(_progress(ds, label)):
        why = lost(row, kind, tokenizer, loss_on, marks)
        if why:
            lost_rows.append(LostRow(i, row.get(ROW, i), excerpt(row), why))
        measured.append(None if why else measure(row, tokenizer, kind, loss_on))
        facts.append(row_facts(row, i))
    return measured, lost_rows, facts


def apply_length_filters(data: PreparedData, tokenizer: Any, cfg: DataSection, max_length: int,
                         completion_room: int = 0) -> None:
    """The checks that need the tokenizer, on every row: the template-survival check (rows the chat template
    renders without some of their content), then token lengths (with the chat template): drop rows outside
    data.min_tokens/max_tokens and rows training.max_length leaves nothing to learn from, counted by reason;
    record length stats and the data report. `completion_room`: GRPO's training.grpo.max_completion_length (a prompt
    must leave that many tokens below max_length).

    Done once per max_length: `pipeline.execute` runs it before the run folder exists (see `precheck`),
    and the trainer's own call then finds it done.
    """
    if data.length_checked == max_length:
        return
    loss_on = "completion" if data.kind in ("preference", "prompt_answer") else resolve_loss_on(cfg.loss_on, data.kind)
    marks = has_loss_marks(tokenizer.chat_template)
    measured: list[tuple[int, int]] = []
    checked: dict[str, tuple[list, list, list]] = {}
    for split in ("train", "eval"):
        ds = getattr(data, split)
        if ds is not None:
            checked[split] = _check_split(ds, tokenizer, data.kind, loss_on, marks, split)
    refuse_template_loss({split: lost_rows for split, (_, lost_rows, _) in checked.items()}, cfg.on_template_loss,
                         len(data.train))
    for split, (sizes, lost_rows, facts) in checked.items():
        ds = getattr(data, split)
        why = [_drop_reason(m.full, m.prompt, cfg, max_length, completion_room) if m else "" for m in sizes]
        for r in lost_rows:
            why[r.position] = r.why
        keep = [i for i, w in enumerate(why) if not w]
        prefix = "" if split == "train" else "eval_"
        for reason, n in Counter(w for w in why if w).items():
            data.stats[f"{prefix}rows_dropped"] += n
            data.stats[f"{prefix}drop_reasons"][reason] = data.stats[f"{prefix}drop_reasons"].get(reason, 0) + n
        if ROW in ds.column_names:
            ds = ds.remove_columns([ROW])
        setattr(data, split, (ds.select(keep) if len(keep) < len(sizes) else ds) if keep else None)
        kept = [sizes[i] for i in keep]
        lengths = [m.full for m in kept]
        data.lengths[split] = lengths  # the run's own token lengths: `smolforge plan` batches them
        data.stats[f"{split}_size"] = len(keep)
        data.stats[f"{split}_token_lengths"] = length_stats(lengths)
        data.stats[f"{split}_truncated_rows"] = sum(1 for n in lengths if n > max_length)
        if split == "train":
            measured = [(m.full, m.prompt) for m in sizes if m]
            report_inputs = (len(sizes), kept, [facts[i] for i in keep], lost_rows)
    if data.train is None:
        fits = [(f, p) for f, p in measured if _drop_reason(f, 0, cfg, max_length) == ""]
        if fits and completion_room:
            shortest = min(p for _, p in fits)
            raise DataError(f"training.max_length: {max_length} tokens cannot hold any training prompt (the shortest "
                            f"is {shortest} tokens with the chat template) and training.grpo.max_completion_length "
                            f"{completion_room} tokens after it. Raise training.max_length to at least "
                            f"{shortest + completion_room}, or lower max_completion_length.")
        if fits:
            raise DataError(_max_length_message(fits, max_length, data.kind))
        if not measured:
            lost = ", ".join(f"{k}: {v:,}" for k, v in template_reasons(data.stats["drop_reasons"]).items())
            raise DataError(f"data: the chat template renders every training row without part of its content "
                            f"({lost}), so no row is left to train on. Use a chat template that renders these turns "
                            "(tool calls, tool results, system prompts), or fix the rows.")
        raise DataError(f"data: no training rows are left after data.min_tokens ({cfg.min_tokens}) / "
                        f"data.max_tokens ({cfg.max_tokens}). Widen the limits.")
    data.stats["report"] = build_report(data.stats, *report_inputs, max_length,
                                        template_facts(tokenizer).get("default_mode"))
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


def completion_room(cfg: SmolforgeConfig) -> int:
    """Tokens a prompt must leave free below training.max_length: GRPO's completions (0 for other methods)."""
    return cfg.training.grpo.max_completion_length if cfg.training.method == "grpo" else 0


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


def precheck(cfg: SmolforgeConfig, data: PreparedData) -> Any:
    """Apply the length filters with only the tokenizer, so a training.max_length that fits no row (or not the
    model) fails before the run folder is created or the model loads; the trainer then reuses the result.
    Returns the tokenizer."""
    source = model_source(cfg)
    # trl imports torchao, which warns that it skips its C++ extensions (the process environment asks it to)
    with quiet_logger("torchao"):
        tokenizer = load_tokenizer(cfg, source, needs_markers=data.kind != "text")
    check_model_length(cfg, source)
    apply_length_filters(data, tokenizer, cfg.data, cfg.training.max_length, completion_room(cfg))
    return tokenizer
