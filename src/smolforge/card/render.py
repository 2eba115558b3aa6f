"""Render the card: metadata through ModelCardData/EvalResult, body through a sandboxed template.

The YAML header is never text from a template: it is `ModelCardData.to_yaml()`, so any value a
user types (quotes, newlines, `---`, `{{ }}`) is quoted by the YAML dumper and reads back
exactly. The body is rendered by `jinja2.sandbox.SandboxedEnvironment` (our template, a user's
Jinja2 template, or an old-style template compiled by `legacy`), then handed to
`ModelCard.from_template` as a plain variable, so nothing in it is rendered twice.
"""

from __future__ import annotations

import difflib
import hashlib
import json
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

from smolforge.card import frontmatter, legacy
from smolforge.card.context import build_context
from smolforge.card.facts import sig, signed_percent
from smolforge.config import SmolforgeConfig
from smolforge.errors import SmolforgeError, first_line
from smolforge.runfolder import RunFolder


@lru_cache(maxsize=1)
def _card_classes():
    """ModelCard/ModelCardData whose YAML dump round-trips every string exactly.

    huggingface_hub dumps with PyYAML's `allow_unicode=True`, which writes U+0085 (NEL) raw in a
    single-quoted scalar, where YAML reads it back as a line break folded to a space: an author
    or tag holding NEL would not round-trip. Strings with NEL/LS/PS are dumped double-quoted,
    where PyYAML escapes them; everything else is exactly huggingface_hub's output.
    """
    import yaml
    from huggingface_hub import ModelCard, ModelCardData

    class HeaderDumper(yaml.SafeDumper):
        pass

    def represent_str(dumper, value: str):
        style = '"' if any(c in value for c in "\x85\u2028\u2029") else None
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)

    HeaderDumper.add_representer(str, represent_str)

    class CardData(ModelCardData):
        def to_yaml(self, line_break=None, original_order=None) -> str:
            if original_order:
                super().to_yaml(line_break=line_break, original_order=original_order)  # applies the order
            return yaml.dump(self.to_dict(), Dumper=HeaderDumper, sort_keys=False, allow_unicode=True,
                             line_break=line_break).strip()

    class Card(ModelCard):
        card_data_class = CardData

    return Card, CardData


def card_class():
    """huggingface_hub's ModelCard whose header round-trips every string (see `_card_classes`)."""
    return _card_classes()[0]


WRAPPER = "---\n{{ card_data }}\n---\n\n{{ body }}"
LOCAL_BUILDERS = ("json", "csv", "parquet", "text", "arrow")  # datasets' builders for local files
MAX_CARD_BYTES = 2_000_000  # a real run's card is about 20 KB


def default_template() -> str:
    return resources.files("smolforge.card").joinpath("templates/model_card.md.j2").read_text("utf-8")


def _finalize(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, (list, tuple)):
        return ", ".join(str(v) for v in value)
    return value


def table_cell(value: Any) -> str:
    """Text inside a Markdown table cell: one line, no column breaks, no HTML (model output, user text)."""
    text = "" if value is None else str(value)
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("|", "\\|")
    text = text.replace("`", "\\`")
    return "<br>".join(line.strip() for line in text.strip().splitlines()) or " "


def answer_cell(value: Any) -> str:
    """A model's answer in a table cell; an answer with no text is said, not left blank."""
    text = "" if value is None else str(value)
    if not text:
        return "*(empty output)*"
    if not text.strip():
        return f"*(only whitespace: {len(text)} character{'s' if len(text) != 1 else ''})*"
    return table_cell(text)


def code_block(value: Any) -> str:
    """Raw text for a fenced block whose closing fence follows it: the text as it is, with one line end after its
    last line (a block cannot show a trailing newline, so none is added to one that already ends the text)."""
    text = "" if value is None else str(value)
    return text if text.endswith("\n") else text + "\n"


def heading(value: Any) -> str:
    """User text as a Markdown heading: one line (a newline would end the heading and start body text)."""
    return " ".join(str(value).split())


def sentence(value: Any) -> str:
    """A phrase as the start of a sentence: first letter upper case, the rest as written (Jinja's `capitalize`
    would lower-case names such as LoRA)."""
    text = str(value)
    return text[:1].upper() + text[1:]


def _environment(newline: str = "\n"):
    from jinja2.sandbox import SandboxedEnvironment

    # Unknown top-level names are rejected before rendering (see render_body); a missing attribute of a
    # known value (a metric this run did not measure) is a plain, falsy Undefined that renders empty.
    env = SandboxedEnvironment(finalize=_finalize, autoescape=False, newline_sequence=newline,
                               keep_trailing_newline=True, trim_blocks=False, lstrip_blocks=False)
    env.filters["cell"] = table_cell
    env.filters["answer_cell"] = answer_cell
    env.filters["heading"] = heading
    env.filters["code_block"] = code_block
    env.filters["sentence"] = sentence
    env.filters["signed_percent"] = signed_percent
    return env


def read_template(path: str | Path) -> str:
    p = Path(path).expanduser()
    try:
        return p.read_bytes().decode("utf-8")  # keep CRLF: read_text would turn it into LF
    except OSError as e:
        raise SmolforgeError(f"--template: cannot read {p} ({e.strerror}). Give a Markdown template file.") from None
    except UnicodeDecodeError:
        raise SmolforgeError(f"--template: {p} is not UTF-8 text.") from None


def _parse(template: str, source: str):
    """(environment, AST, literals) of a Jinja2 or old-style template; a syntax error is the user's to fix."""
    from jinja2 import TemplateSyntaxError

    template = frontmatter.strip(template)  # metadata always comes from ModelCardData
    literals: list[str] = []
    if legacy.looks_legacy(template):
        template, literals = legacy.to_jinja(template)
    env = _environment(line_ending(template))
    try:
        return env, env.parse(template), literals
    except TemplateSyntaxError as e:
        raise SmolforgeError(f"{source}, line {e.lineno}: {e.message}. Fix the template syntax.") from None


@lru_cache(maxsize=16)
def _compiled(template: str, source: str) -> tuple[Any, frozenset[str], tuple[str, ...]]:
    """(compiled template, the names it reads, literals), kept per template text: parsing and compiling the card
    template is most of a render (~0.25 s of ~0.27 s here), and a run renders the same one after every stage."""
    from jinja2 import meta

    env, ast, literals = _parse(template, source)
    return env.from_string(ast), frozenset(meta.find_undeclared_variables(ast)), tuple(literals)


def _check_variables(names: frozenset[str], known: dict[str, Any], source: str) -> None:
    """Every variable the template reads is one the card provides (closest names suggested)."""
    unknown = sorted(names - set(known) - {legacy.LITERALS})
    if unknown:
        hints = []
        for name in unknown:
            close = difflib.get_close_matches(name, list(known), n=2)
            hints.append(f"{name} (did you mean {' or '.join(close)}?)" if close else name)
        raise SmolforgeError(f"{source} uses unknown variables: {', '.join(hints)}. Known variables include "
                             "model_name, model_description, author_name, base_model, training_loss, "
                             "validation_loss, perplexity, license, tags (see the README for the full list).")


def check_template(run: RunFolder, cfg: SmolforgeConfig) -> None:
    """card.template reads, parses and names only variables a card has: checked before training, so a typo in
    it stops the run at once instead of after training (`smolforge card` can rewrite the card later too)."""
    if cfg.card.template:
        source = f"Card template {cfg.card.template}"
        template = read_template(cfg.card.template)
        context = build_context(run, cfg, {})  # the names exist whatever the run measures
        _, names, _ = _compiled(template, source)
        _check_variables(names, context, source)
        header, _ = frontmatter.split(template)
        if header and header.strip():
            header_source = f"{source} (its YAML header)"
            _check_variables(_compiled(header, header_source)[1], context, header_source)


def render_body(template: str, context: dict[str, Any], source: str = "the card template") -> str:
    """Render a Jinja2 or old-style template in the sandbox; unknown variables are an error."""
    from jinja2.exceptions import SecurityError, UndefinedError

    compiled, names, literals = _compiled(template, source)
    _check_variables(names, context, source)
    try:
        return compiled.render(**context, **{legacy.LITERALS: list(literals)})
    except UndefinedError as e:
        raise SmolforgeError(f"{source}: {e.message}. A variable was used in a way the run does not provide "
                             "(for example an attribute of a value that is absent).") from None
    except SecurityError as e:
        raise SmolforgeError(f"{source}: the template tried an unsafe operation ({e}); templates may only "
                             "read variables.") from None
    except Exception as e:  # a template error at render time (bad operand types, ...) is the user's to fix
        raise SmolforgeError(f"{source}: rendering failed ({type(e).__name__}: {e}). Fix the expression in "
                             "the template.") from None


def line_ending(text: str) -> str:
    """CRLF when the template uses it, so a Windows-edited template renders a CRLF card."""
    return "\r\n" if "\r\n" in text else "\n"


def _eval_dataset(ctx: dict[str, Any]) -> dict[str, Any]:
    """The evaluation data as model-index describes it: a Hub id, or `load_dataset`'s builder and file names for
    local data (never a Hub-shaped name for data that is not on the Hub); `split` is a name load_dataset accepts,
    and a held-out share of it is said in the metric's name."""
    d = ctx.get("dataset") or {}
    out: dict[str, Any] = {"dataset_name": ctx["dataset_name"]}
    local = d.get("local_files")
    if ctx.get("dataset_hub_id"):
        out["dataset_type"] = ctx["dataset_hub_id"]
        if d.get("config"):
            out["dataset_config"] = d["config"]
    elif local:
        out["dataset_type"] = local["builder"]
        out["dataset_args"] = {"data_files": local["data_files"]}
    else:
        out["dataset_type"] = ctx["dataset_name"]
    held_out = not d.get("eval_rows_read") and d.get("eval_split_name") not in (None, d.get("split"))
    out["dataset_split"] = d.get("split") if held_out else (d.get("eval_split_name") or d.get("split"))
    out["held_out"] = f"held out: {ctx['eval_ratio']:.0%} of {d.get('split')}, seed {d.get('seed')}" if held_out \
        else None
    return out


def card_data(ctx: dict[str, Any], results: dict[str, Any], relation: str | None = None):
    """Hub metadata, built only through ModelCardData / EvalResult so it is valid by construction, with the
    Hub's model-card keys only (the author is in the body and the citation, not in a key of our own)."""
    from huggingface_hub import EvalResult

    _, ModelCardData = _card_classes()
    eval_results = None
    if ctx.get("validation_loss") is not None and ctx.get("eval_split"):
        where = _eval_dataset(ctx)
        held_out = where.pop("held_out")
        common = dict(task_type="text-generation", task_name="Text Generation", **where)
        suffix = f", {held_out}" if held_out else ""
        if ctx.get("four_bit_base"):
            suffix += ", adapter over the 4-bit base it trained with"
        loss_name = ("Validation DPO loss" if ctx.get("dpo") else "Validation loss") + suffix
        eval_results = [EvalResult(metric_type="loss", metric_name=loss_name,
                                   metric_value=sig(ctx["validation_loss"]), **common)]
        if ctx.get("perplexity") is not None:
            eval_results.append(EvalResult(metric_type="perplexity", metric_name="Perplexity" + suffix,
                                           metric_value=sig(ctx["perplexity"]), **common))
    harness = (ctx.get("evaluation") or {}).get("harness") or {}
    for row in ctx.get("benchmarks") or []:  # the fine-tune's benchmark scores, with the harness as their source
        eval_results = eval_results or []
        hub_data = row.get("dataset_path") not in (None, *LOCAL_BUILDERS)  # a Hub dataset, not local files
        eval_results.append(EvalResult(
            task_type="multiple-choice" if row.get("output_type") == "multiple_choice" else "text-generation",
            task_name=row["task"], dataset_type=row["dataset_path"] if hub_data else row["task"],
            dataset_name=row["task"], dataset_config=row.get("dataset_name") if hub_data else None,
            metric_type=row["metric"], metric_name=f"{row['metric']} ({row['mode']}, {row['shots']}-shot)",
            metric_value=sig(row["tuned"]), source_name=f"{harness.get('name', 'lm-evaluation-harness')} "
                                                        f"{harness.get('version', '')}".strip(),
            source_url=ctx["harness_url"]))
    extra: dict[str, Any] = {}
    if ctx.get("base_model_id"):
        extra["base_model_relation"] = relation or ("adapter" if ctx["is_adapter"] else "finetune")
    return ModelCardData(
        model_name=ctx["model_name"] if eval_results else None,  # only model-index uses it
        base_model=ctx.get("base_model_id"),
        datasets=[ctx["dataset_hub_id"]] if ctx.get("dataset_hub_id") else None,
        language=ctx.get("language") or None,
        library_name="peft" if ctx["is_adapter"] else "transformers",
        pipeline_tag="text-generation",
        license=ctx["license"],
        license_name=ctx.get("license_name") if ctx["license"] == "other" else None,
        license_link=ctx.get("license_link") if ctx["license"] == "other" else None,
        tags=ctx["tags"],
        eval_results=eval_results,
        **extra,
    )


def template_metadata(template: str, context: dict[str, Any], source: str) -> dict[str, Any]:
    """The keys a user template's own YAML header sets (the seed's `{{#if author_name}}author: {{author_name}}{{/if}}`
    pattern), rendered with the card's variables like its body; {} when it has no header."""
    import yaml

    header, _ = frontmatter.split(template)
    if header is None or not header.strip():
        return {}
    # Each text value goes in as a quoted YAML string, so a value can never add keys or break the header (an
    # author named "x\nlicense: gpl-3.0" stays one string); write `author: {{author_name}}`, not quoted again.
    text = render_body(header, _yaml_quoted(context), source=f"{source} (its YAML header)")
    try:
        data = yaml.safe_load(text) if text.strip() else {}
    except yaml.YAMLError as e:
        raise SmolforgeError(f"{source}: its YAML header is not valid YAML once rendered ({first_line(e)}). Fix the "
                             "header (`key: value` lines between the two `---` lines).") from None
    if not isinstance(data, dict) or not all(isinstance(k, str) for k in data):
        raise SmolforgeError(f"{source}: its YAML header must be `key: value` lines, not "
                             f"{type(data).__name__}. Fix the header.")
    return data


def _yaml_quoted(value: Any) -> Any:
    """Non-empty strings (inside lists and dicts too) as JSON string literals, which YAML reads back as the same
    string; empty strings stay empty, so `{{#if x}}` still tests the value."""
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False) if value else value
    if isinstance(value, dict):
        return {k: _yaml_quoted(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_yaml_quoted(v) for v in value]
    return value


def merge_metadata_keys(data: Any, user: dict[str, Any]) -> Any:
    """The template's own header keys added to the generated metadata: what the run states (license, base model,
    results) stands; a list the user extends (tags) keeps both; any other key of theirs is kept as written."""
    generated = data.to_dict()
    for key, value in user.items():
        if value is None:
            continue
        mine = generated.get(key)
        if isinstance(mine, list) and isinstance(value, list):
            setattr(data, key, list(dict.fromkeys([*mine, *value])))
        elif mine is None:
            setattr(data, key, value)
    return data


def render_card(run: RunFolder, cfg: SmolforgeConfig, results: dict[str, Any], username: str | None = None,
                template_path: str | Path | None = None):
    """The whole card for a run, as a huggingface_hub.ModelCard (not yet written)."""
    ModelCard, _ = _card_classes()
    ctx = build_context(run, cfg, results, username=username)
    data = card_data(ctx, results)
    path = template_path or cfg.card.template
    template = read_template(path) if path else default_template()
    if path:
        data = merge_metadata_keys(data, template_metadata(template, ctx, f"Card template {path}"))
    ctx["card_data"] = data.to_yaml()
    body = render_body(template, ctx, source=f"Card template {path}" if path else "The default card template")
    body = body.lstrip("\r\n")
    if len(body.encode("utf-8")) > MAX_CARD_BYTES:
        raise SmolforgeError(f"{f'Card template {path}' if path else 'The default card template'} rendered "
                             f"{len(body.encode('utf-8')) / 1e6:,.1f} MB of text; a model card is capped at "
                             f"{MAX_CARD_BYTES // 1_000_000} MB (the Hub shows it on one page). Shorten the template "
                             "or the texts it includes (a loop over a long list?). Nothing was written.")
    nl = line_ending(template)
    if nl == "\n":
        return ModelCard.from_template(data, template_str=WRAPPER, body=body)
    # jinja2.Template (inside from_template) would turn the wrapper's CRLF into LF: build the same
    # content directly so a CRLF template gives a CRLF card, header included.
    return ModelCard(f"---{nl}{data.to_yaml(line_break=nl)}{nl}---{nl}{nl}{body}")


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
