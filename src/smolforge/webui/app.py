"""The Gradio app: Configure (the schema's form, its problems at their fields, the YAML, the data preview), Plan,
Run (start, the live log and loss curve, ETA, stop) and Runs (the table, a run's card, two runs compared).

Every button calls a function of `api`; the same functions are the named API endpoints."""

from __future__ import annotations

import io
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from smolforge import presets
from smolforge.config.loading import load_config
from smolforge.data.check import check_data
from smolforge.errors import SmolforgeError
from smolforge.plan.gpus import GPUS
from smolforge.processenv import offline_by_env
from smolforge.runfolder import RunFolder
from smolforge.webui import actions, api
from smolforge.webui.configs import baseline, form_values, resolved_data, with_file, yaml_from_form
from smolforge.webui.form import SECTION_TITLES, Field, form_fields, sections
from smolforge.wizard.datapeek import peek, show_row

OPEN_SECTIONS = ("", "model", "data", "training")
THIS_MACHINE = "this machine"


def _widget(gr, f: Field, value: Any):
    common = {"label": f.setting.title + f"  ({f.path})", "info": f.help, "elem_id": f.elem_id}
    if f.kind in ("dropdown", "multiselect"):
        return gr.Dropdown(choices=f.setting.choices, value=value, multiselect=f.kind == "multiselect", **common)
    if f.kind == "checkbox":
        return gr.Checkbox(value=bool(value), **common)
    if f.kind == "number":
        return gr.Number(value=value, minimum=f.minimum, maximum=f.maximum, precision=0 if f.integer else None,
                         **common)
    lines = 3 if f.kind in ("lines", "yaml") else 1
    return gr.Textbox(value=value, lines=lines, **common)


def _subsections(group: list[Field]) -> dict[str, list[Field]]:
    """A section's own settings first, then one group per nested section (training.lora.*, model.tiny.*)."""
    out: dict[str, list[Field]] = {"": []}
    for f in group:
        parts = f.path.split(".")
        out.setdefault(parts[1] if len(parts) > 2 else "", []).append(f)
    return out


@contextmanager
def _nothing():
    yield


def _problems_markdown(found: list[dict[str, Any]]) -> str:
    if not found:
        return "**No problems**: `smolforge run` would start with this config."
    lines = [f"**{len(found)} problem{'s' if len(found) != 1 else ''}** (the run cannot start until they are fixed):"]
    lines += [f"- `{p['setting']}`: {p['message']}" if p["setting"] else f"- {p['message']}" for p in found]
    return "\n".join(lines)


def _plan_markdown(result: dict[str, Any]) -> str:
    rows = "\n".join(f"| {k} | {str(v).replace('|', '/')} |" for k, v in result["rows"])
    notes = f"\n\n{result['notes']}" if result["notes"] else ""
    return f"| | |\n|---|---|\n{rows}{notes}"


def _status_markdown(info: dict[str, Any]) -> str:
    parts = [f"**{info['state']}** — `{info['run_dir']}`"]
    if info.get("step") is not None:
        parts.append(f"step {info['step']}/{info['max_steps']}")
    if info.get("loss") is not None:
        parts.append(f"loss {info['loss']:.4f}")
    if info.get("eta_s") is not None and info["state"] == "running":
        parts.append(f"ETA {info['eta_s']:.0f} s")
    if info.get("resume_command"):
        parts.append(f"resumable from step {info['checkpoint_step']}: `{info['resume_command']}`")
    if info.get("error"):
        parts.append(f"error: {info['error']}")
    return " · ".join(parts)


def build(ctx: api.UiContext):
    import gradio as gr
    import pandas as pd

    fields = form_fields()
    start_values = form_values(baseline("tiny"))

    def fail(e: SmolforgeError):
        raise gr.Error(str(e), print_exception=False)

    with gr.Blocks(title="smolforge") as app:
        gr.Markdown("# smolforge\nConfigure, plan, start and watch a fine-tune; every field is a setting of "
                    "`smolforge run` (its name in brackets), checked by the same rules.")
        with gr.Tab("Configure"):
            with gr.Row():
                preset = gr.Dropdown(choices=presets.names(), value="tiny", label="Preset", elem_id="sf-preset",
                                     info="Start from a preset; the YAML below keeps only what you change.")
                upload = gr.File(label="...or start from a config file", file_types=[".yaml", ".yml"],
                                 type="filepath", elem_id="sf-upload")
            with gr.Row():
                validate_btn = gr.Button("Validate", variant="secondary", elem_id="sf-validate")
                preview_btn = gr.Button("Preview the data", elem_id="sf-preview")
            problems_md = gr.Markdown(elem_id="sf-problems")
            data_md = gr.Markdown(elem_id="sf-data")
            made: dict[str, Any] = {}
            for section, group in sections().items():
                with gr.Accordion(SECTION_TITLES.get(section, section), open=section in OPEN_SECTIONS):
                    for sub, fs in _subsections(group).items():
                        with gr.Accordion(sub, open=False) if sub else _nothing():
                            for row in range(0, len(fs), 3):
                                with gr.Row(equal_height=True):
                                    made |= {f.path: _widget(gr, f, start_values[f.path]) for f in fs[row:row + 3]}
            widgets: list[Any] = [made[f.path] for f in fields]
            yaml_box = gr.Code(language="yaml", label="The config (what `smolforge run that.yaml` reads)",
                               interactive=False, elem_id="sf-yaml")
            download = gr.DownloadButton("Download smolforge.yaml", elem_id="sf-download")
        with gr.Tab("Plan"):
            gpu = gr.Dropdown(choices=[THIS_MACHINE, *(g.name for g in GPUS)], value=THIS_MACHINE, label="Hardware",
                              elem_id="sf-gpu")
            plan_btn = gr.Button("Plan", elem_id="sf-plan")
            plan_md = gr.Markdown(elem_id="sf-plan-result")
        with gr.Tab("Run"):
            start_btn = gr.Button("Start the run", variant="primary", elem_id="sf-start")
            current = gr.Textbox(label="Run folder", elem_id="sf-current", interactive=True)
            status_md = gr.Markdown(elem_id="sf-status")
            curve = gr.LinePlot(x="step", y="loss", color="curve", label="Loss (training, evaluation)",
                                 elem_id="sf-curve")
            console = gr.Textbox(label="Console", lines=12, max_lines=12, autoscroll=True, elem_id="sf-console")
            stop_btn = gr.Button("Stop (saves a checkpoint)", variant="stop", elem_id="sf-stop")
            timer = gr.Timer(2.0)
        with gr.Tab("Runs"):
            refresh = gr.Button("Refresh", elem_id="sf-refresh")
            table = gr.Dataframe(label="Runs", interactive=False, elem_id="sf-runs")
            with gr.Row():
                chosen = gr.Dropdown(label="Run", choices=[], elem_id="sf-chosen", allow_custom_value=True)
                other = gr.Dropdown(label="Compare with", choices=[], elem_id="sf-other", allow_custom_value=True)
            with gr.Accordion("After training", open=True):
                with gr.Row():
                    action = gr.Dropdown(choices=list(actions.ACTIONS), value="evaluate", label="Action",
                                         elem_id="sf-action")
                    option = gr.Textbox(label="Tasks / method / repo id (empty: the config's)", elem_id="sf-option",
                                        info="evaluate --tasks, quantize --method (int8, gguf-q4_k_m, ...), "
                                             "publish --repo-id user/name")
                    token = gr.Textbox(label="Hub token (only for publish; kept in memory, never shown or written)",
                                       type="password", visible=not actions.token_present(), elem_id="sf-token")
                with gr.Row():
                    act_btn = gr.Button("Run the action", elem_id="sf-act")
                    demo_btn = gr.Button("Serve the chat demo", elem_id="sf-demo")
                act_out = gr.Textbox(label="Output", lines=10, max_lines=20, autoscroll=True, elem_id="sf-act-out")
                demo_md = gr.Markdown(elem_id="sf-demo-link")
            with gr.Row():
                card_md = gr.Markdown(elem_id="sf-card")
                plot = gr.Image(label="The card's loss curve", type="filepath", interactive=False, elem_id="sf-plot")
            compare_md = gr.Markdown(elem_id="sf-compare")

        def form_yaml(preset_name, *values):
            return yaml_from_form(preset_name, {f.path: v for f, v in zip(fields, values, strict=True)})

        def on_validate(preset_name, *values):
            text = form_yaml(preset_name, *values)
            found = api.validate(text, ctx)
            by_setting = {p["setting"]: p["message"] for p in found if p["setting"]}
            updates = [gr.update(info=f"⚠ {by_setting[f.path]}" if f.path in by_setting else f.help)
                       for f in fields]
            return [_problems_markdown(found), text, *updates]

        validate_btn.click(on_validate, [preset, *widgets], [problems_md, yaml_box, *widgets],
                           api_visibility="private")

        def on_preset(preset_name):
            values = form_values(baseline(preset_name))
            return [values[f.path] for f in fields]

        preset.change(on_preset, [preset], widgets, api_visibility="private")

        def on_upload(path):
            if not path:
                return [gr.update(), *[gr.update() for _ in fields]]
            text = Path(path).read_text(encoding="utf-8")
            try:
                data = resolved_data(text)
            except SmolforgeError as e:
                fail(e)
            values = form_values(data)
            return [data.get("preset"), *[values[f.path] for f in fields]]

        upload.upload(on_upload, [upload], [preset, *widgets], api_visibility="private")

        def on_download(preset_name, *values):
            path = ctx.runs_dir / ".smolforge-ui" / "download" / "smolforge.yaml"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(form_yaml(preset_name, *values), encoding="utf-8")
            return str(path)

        download.click(on_download, [preset, *widgets], download, api_visibility="private")

        def on_preview(preset_name, *values):
            text = form_yaml(preset_name, *values)
            try:
                return data_preview(text)
            except SmolforgeError as e:
                fail(e)

        preview_btn.click(on_preview, [preset, *widgets], data_md, api_visibility="private")

        def on_plan(preset_name, gpu_name, *values):
            try:
                return _plan_markdown(api.plan(form_yaml(preset_name, *values), None if gpu_name == THIS_MACHINE
                                               else gpu_name, ctx))
            except SmolforgeError as e:
                fail(e)

        plan_btn.click(on_plan, [preset, gpu, *widgets], plan_md, api_visibility="private")

        def watch(run_dir):
            if not run_dir:
                return "", None, ""
            try:
                info = api.status(run_dir, ctx)
            except SmolforgeError as e:
                return str(e), None, ""
            points = pd.DataFrame([{"step": p["step"], "loss": p[key], "curve": name} for p in info["points"]
                                   for key, name in (("loss", "train"), ("eval_loss", "eval")) if key in p],
                                  columns=["step", "loss", "curve"])
            return _status_markdown(info), points, info["console"]

        def on_start(preset_name, *values):
            text = form_yaml(preset_name, *values)
            try:
                run_dir = api.start(text, ctx)
            except SmolforgeError as e:
                fail(e)
            return [run_dir, *watch(run_dir)]

        start_btn.click(on_start, [preset, *widgets], [current, status_md, curve, console], api_visibility="private")
        timer.tick(watch, [current], [status_md, curve, console], api_visibility="private")

        def on_stop(run_dir):
            try:
                api.stop(run_dir, ctx)
            except SmolforgeError as e:
                fail(e)
            return watch(run_dir)

        stop_btn.click(on_stop, [current], [status_md, curve, console], api_visibility="private")

        def on_refresh():
            rows = api.runs(ctx)
            frame = pd.DataFrame(rows, columns=["name", "state", "method", "base", "headline", "modified", "run_dir"])
            names = [r["run_dir"] for r in rows]
            return frame, gr.update(choices=names), gr.update(choices=names)

        refresh.click(on_refresh, None, [table, chosen, other], api_visibility="private")
        app.load(on_refresh, None, [table, chosen, other], api_visibility="private")

        def on_choose(run_dir, other_dir):
            curve = RunFolder(Path(run_dir)).model_dir / "loss_curve.png" if run_dir else None
            return (card_markdown(run_dir), str(curve) if curve is not None and curve.is_file() else None,
                    compare_markdown(run_dir, other_dir))

        chosen.change(on_choose, [chosen, other], [card_md, plot, compare_md], api_visibility="private")
        other.change(on_choose, [chosen, other], [card_md, plot, compare_md], api_visibility="private")

        def on_act(run_dir, what, opt, typed_token):
            if not run_dir:
                yield "Choose a run first."
                return
            try:
                for out, code in actions.stream(what, Path(run_dir), opt.strip() or None, typed_token or None,
                                                ctx.cwd):
                    yield out + (f"\n[{what} ended: exit code {code}]" if code is not None else "")
            except SmolforgeError as e:
                fail(e)

        act_btn.click(on_act, [chosen, action, option, token], act_out, api_visibility="private")

        def on_demo(run_dir):
            if not run_dir:
                return "Choose a run first."
            try:
                url = actions.serve_demo(Path(run_dir), ctx.runs_dir / ".smolforge-ui", ctx.cwd)
            except SmolforgeError as e:
                fail(e)
            return f"The chat demo is served at [{url}]({url}) (it keeps running after this UI stops)."

        demo_btn.click(on_demo, [chosen], demo_md, api_visibility="private")

        _endpoints(gr, ctx)
    return app


def _endpoints(gr, ctx: api.UiContext) -> None:
    """The named API endpoints, for gradio_client: a SmolforgeError reaches the client as its message."""

    def guarded(fn):
        def call(*args):
            try:
                return fn(*args)
            except SmolforgeError as e:
                raise gr.Error(str(e), print_exception=False) from None
        return call

    def validate(config_yaml: str) -> list[dict]:
        """The problems `smolforge run` would stop on for this YAML config, each naming its setting; [] if none."""
        return guarded(api.validate)(config_yaml, ctx)

    def plan(config_yaml: str, gpu: str = "") -> dict:
        """`smolforge plan` of the YAML config on a GPU of the plan's table (empty: this machine)."""
        return guarded(api.plan)(config_yaml, gpu, ctx)

    def start(config_yaml: str) -> str:
        """Start `smolforge run` on the YAML config in its own process; returns the run folder."""
        return guarded(api.start)(config_yaml, ctx)

    def status(run_dir: str) -> dict:
        """A run's state (running, finished, stopped, failed), step, loss, ETA and console tail."""
        return guarded(api.status)(run_dir, ctx)

    def stop(run_dir: str) -> dict:
        """Stop a run the UI started (it saves a checkpoint first: resumable); returns its status."""
        return guarded(api.stop)(run_dir, ctx)

    def runs() -> list[dict]:
        """Every run in the runs folder, newest first."""
        return guarded(api.runs)(ctx)

    def after_training(run_dir: str, action: str, option: str = "") -> dict:
        """evaluate, quantize or publish a finished run (option: --tasks, --method or --repo-id); the CLI command's
        exit code and output. A token comes from the UI's environment or the Hub's login cache."""
        return guarded(lambda: actions.run(action, api.run_path(run_dir, ctx), option or None, None, ctx.cwd))()

    for fn in (validate, plan, start, status, stop, runs, after_training):
        gr.api(fn, api_name=fn.__name__)


def card_markdown(run_dir: str | None) -> str:
    if not run_dir:
        return ""
    card = RunFolder(Path(run_dir)).card_path
    if not card.is_file():
        return f"`{run_dir}` has no card yet (it is written when training ends)."
    text = card.read_text(encoding="utf-8")
    if text.startswith("---"):  # the metadata header is for the Hub, not for reading
        end = text.find("\n---", 3)
        text = text[end + 4:] if end != -1 else text
    return text


def _flat(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict) and value:
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def compare_markdown(a: str | None, b: str | None) -> str:
    """Two runs side by side: the settings that differ and their headline results."""
    if not a or not b or a == b:
        return ""
    runs = [RunFolder(Path(a)), RunFolder(Path(b))]
    configs = [_flat(r.read_config_data()) if r.config_path.is_file() else {} for r in runs]
    results = [r.read_results() if r.results_path.is_file() else {} for r in runs]
    keys = sorted(k for k in set(configs[0]) | set(configs[1])
                  if configs[0].get(k) != configs[1].get(k) and k not in ("experiment_name", "output_dir"))
    lines = [f"| setting | {runs[0].root.name} | {runs[1].root.name} |", "|---|---|---|"]
    lines += [f"| `{k}` | {configs[0].get(k)} | {configs[1].get(k)} |" for k in keys]
    for key in ("final_train_loss", "eval_loss", "perplexity", "global_steps", "train_runtime_s"):
        if key in results[0] or key in results[1]:
            lines.append(f"| **{key}** | {results[0].get(key)} | {results[1].get(key)} |")
    return "\n".join(lines)


def data_preview(text: str) -> str:
    """`smolforge data check` of the config: the same preparation and report `run` makes before it trains."""
    from rich.console import Console

    out = io.StringIO()
    console = Console(file=out, highlight=False, soft_wrap=True, emoji=False, width=120)
    cfg = with_file(text, load_config)
    _, lines = check_data(cfg, console)
    seen = peek(cfg.data, not offline_by_env(), cfg.training.method)  # the wizard's preview: format and rows
    if seen is not None and seen.format:
        mapping = ", ".join(f"{role} <- {col}" for role, col in seen.fields.items())
        lines += [f"format: {seen.format} ({mapping}); columns: {', '.join(seen.columns)}"]
        lines += [f"row {i}: {show_row(row)}" for i, row in enumerate(seen.rows[:3], 1)]
    return "```\n" + "\n".join([*out.getvalue().strip().splitlines(), *lines]).strip() + "\n```"
