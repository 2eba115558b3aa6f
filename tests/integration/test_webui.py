"""`smolforge ui` driven as a script would drive it: `smolforge ui --no-browser` in its own process, every named
endpoint called with gradio_client over loopback HTTP (validate, plan, start, status, stop, runs), real tiny
runs started, watched to the end, and stopped mid-way; the form built from the schema; Ctrl-C; the host rule."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from smolforge.config.fields import flagged
from smolforge.webui.form import field_for, form_fields
from tests.conftest import SMOLFORGE, run_cli
from tests.integration.test_demo_browser import browser, browser_bins  # noqa: F401 (fixtures)
from tests.servers import free_port, wait_until_served

pytestmark = pytest.mark.slow

FAST = {"model": {"tiny": {"hidden_size": 64, "intermediate_size": 128, "num_layers": 2, "num_heads": 2,
                           "num_kv_heads": 1, "vocab_size": 512}},
        "evaluation": {"tasks": []}, "tracking": {"backend": "none"}}


def config(name: str, **training) -> str:
    data = {"preset": "tiny", "experiment_name": name, **FAST,
            "training": {"max_steps": 16, "eval_steps": 8, "save_steps": 8, "logging_steps": 4, **training}}
    return yaml.safe_dump(data, sort_keys=False)


def _serve(work: Path, *args: str) -> tuple[subprocess.Popen, str, Path]:
    port = free_port()
    log = work / f"ui-{port}.log"
    proc = subprocess.Popen([SMOLFORGE, "ui", "--no-browser", "--port", str(port), *args], cwd=work,
                            stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}/"
    wait_until_served(proc, url, log, "smolforge ui", 120)
    return proc, url, log


@pytest.fixture(scope="module")
def ui(tmp_path_factory):
    """The UI on loopback with its runs folder; at the end, Ctrl-C (SIGINT) must stop it cleanly."""
    from gradio_client import Client

    work = tmp_path_factory.mktemp("ui")
    proc, url, log = _serve(work, "--runs-dir", "runs")
    try:
        yield SimpleNamespace(client=Client(url, verbose=False), url=url, work=work, runs=work / "runs", log=log)
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            raise AssertionError("Ctrl-C did not stop smolforge ui within 30 s") from None
    text = log.read_text()
    assert proc.returncode == 0 and "Stopped the UI. Runs it started keep running" in text, text
    assert "Traceback" not in text


def test_every_endpoint_is_named_and_documented(ui):
    endpoints = ui.client.view_api(print_info=False, return_format="dict")["named_endpoints"]
    assert {"/validate", "/plan", "/start", "/status", "/stop", "/runs", "/after_training"} <= set(endpoints)


def test_validate_returns_the_problems_smolforge_run_stops_on(ui, tmp_path):
    bad = config("bad", learning_rate=0, batch_size=-2).replace("preset: tiny", "preset: tiny\ndata:\n  name: "
                                                                "nosuch.jsonl", 1)
    found = ui.client.predict(bad, api_name="/validate")
    assert {p["setting"] for p in found} == {"training.learning_rate", "training.batch_size"}
    (tmp_path / "bad.yaml").write_text(bad)
    cli = run_cli("run", "bad.yaml", "--yes", cwd=tmp_path, check=False)
    assert cli.returncode == 2 and f"{len(found)} problems in bad.yaml" in cli.stderr
    for p in found:  # the same lines, word for word
        assert f"{p['setting']}: {p['message']}" in cli.stderr

    # past the schema, the checks `run` makes before it creates anything: here, the data source
    (problem,) = ui.client.predict(config("bad").replace("preset: tiny", "preset: tiny\ndata:\n  name: nosuch.jsonl",
                                                         1), api_name="/validate")
    assert problem["setting"] == "data.name" and problem["message"].startswith("nosuch.jsonl does not exist")
    assert ui.client.predict(config("fine"), api_name="/validate") == []
    (problem,) = ui.client.predict("preset: [tiny\n", api_name="/validate")
    assert problem["setting"] is None and problem["message"].startswith("The YAML is not valid YAML at line 2")


def test_plan_is_smolforge_plans_for_the_gpu(ui, tmp_path):
    result = ui.client.predict(config("planned"), "h100", api_name="/plan")
    rows = dict(result["rows"])
    assert rows["Device"].startswith("NVIDIA H100 SXM (80 GB)") and result["record"]["fits"] is True
    (tmp_path / "planned.yaml").write_text(config("planned"))
    cli = run_cli("plan", "planned.yaml", "--gpu", "h100", "--json", cwd=tmp_path)
    same = ("device", "parameters", "steps", "peak_memory_mib", "memory_mib", "fits")
    assert {k: result["record"][k] for k in same} == {k: json.loads(cli.stdout)[k] for k in same}


def test_every_flagged_setting_is_in_the_form_with_its_bounds():
    """The form cannot fall behind the schema: every setting with a flag is a field of the built app, with the
    schema's bounds and choices."""
    import gradio as gr

    from smolforge.webui.api import UiContext
    from smolforge.webui.app import build

    app = build(UiContext(Path("runs"), Path.cwd()))
    by_id = {getattr(b, "elem_id", None): b for b in app.blocks.values()}
    paths = {f.path for f in form_fields()}
    for setting in flagged():
        field = field_for(setting)
        assert setting.path in paths
        widget = by_id[field.elem_id]
        assert setting.description in (widget.info or "")
        if field.kind == "number":
            assert isinstance(widget, gr.Number)
            assert (widget.minimum, widget.maximum) == (field.minimum, field.maximum)
        if setting.choices:
            assert isinstance(widget, gr.Dropdown) and [c[1] for c in widget.choices] == setting.choices
    lr = field_for(next(s for s in flagged() if s.path == "training.learning_rate"))
    assert (lr.minimum, lr.maximum) == (0.0, 1.0)


def test_beyond_loopback_it_warns_and_reads_only_its_folders(tmp_path):
    from smolforge.webui.api import UiContext, validate

    outside = tmp_path / "outside"
    outside.mkdir()
    data = outside / "chats.jsonl"
    data.write_text((Path(__file__).parents[2] / "src/smolforge/resources/builtin_chat.jsonl").read_text())
    work = tmp_path / "work"
    work.mkdir()
    ctx = UiContext(work / "runs", work, [work, work / "runs"])
    text = config("x").replace("preset: tiny", f"preset: tiny\ndata:\n  name: {data}", 1)
    (problem,) = validate(text, ctx)
    assert problem["setting"] == "data.name" and "outside the folders this UI may use" in problem["message"]
    assert validate(text, UiContext(work / "runs", work)) == []  # on loopback, any path
    (problem,) = validate(config("x").replace("preset: tiny", f"preset: tiny\noutput_dir: {outside / 'run'}", 1), ctx)
    assert problem["setting"] == "output_dir" and "outside the folders this UI may use" in problem["message"]

    port = free_port()
    proc = subprocess.Popen([SMOLFORGE, "ui", "--no-browser", "--host", "0.0.0.0", "--port", str(port)], cwd=work,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        first = proc.stdout.readline()
        assert re.match(r"Warning: listening on 0\.0\.0\.0: anyone who can reach this port can start runs", first)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def _field(page, setting: str, value: str) -> None:
    """Type into a setting's field as a person does (select all, type, leave the field)."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    elem_id = "sf-" + setting.replace(".", "-").replace("_", "-")
    box = page.find_element(By.CSS_SELECTOR, f"#{elem_id} input, #{elem_id} textarea")
    page.execute_script("arguments[0].scrollIntoView({block: 'center'});", box)
    box.send_keys(Keys.CONTROL, "a")
    box.send_keys(Keys.DELETE)
    if value:
        box.send_keys(value)
    box.send_keys(Keys.TAB)


def _click(page, css: str) -> None:
    from selenium.webdriver.common.by import By

    element = page.find_element(By.CSS_SELECTOR, css)
    page.execute_script("arguments[0].scrollIntoView({block: 'center'});", element)
    element.click()


def _open(page, section: str) -> None:
    from selenium.webdriver.common.by import By

    (button,) = [b for b in page.find_elements(By.CSS_SELECTOR, "button.label-wrap")
                 if b.find_element(By.CSS_SELECTOR, "span").text.strip() == section]
    page.execute_script("arguments[0].scrollIntoView({block: 'center'});", button)
    button.click()


def _tab(page, name: str) -> None:
    from selenium.webdriver.common.by import By

    (tab,) = [t for t in page.find_elements(By.CSS_SELECTOR, "button[role=tab]") if t.text == name]
    tab.click()


def test_in_a_browser_configure_start_watch_open_the_card_and_stop(ui, browser):  # noqa: F811
    """Headless Chromium: pick the tiny preset, see a bad learning rate's message at its field, fix it, start a
    run and watch it finish, open its card; start a second, stop it mid-way, see it listed as resumable. Each run
    is then checked through the named endpoints too (status, runs, a second start refused, quantize after
    training, stop and evaluate refused on a stopped run)."""
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    wait = WebDriverWait(browser, 60, poll_frequency=0.3, ignored_exceptions=(StaleElementReferenceException,))
    text = lambda css: browser.find_element(By.CSS_SELECTOR, css).text  # noqa: E731
    shots = os.environ.get("SMOLFORGE_UI_SCREENSHOTS")
    browser.get(ui.url)
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#sf-training-learning-rate input"))

    def pick_preset(name: str, method: str) -> None:
        browser.find_element(By.CSS_SELECTOR, "#sf-preset input").click()
        option = f'#sf-preset li[data-testid="dropdown-option"][aria-label="{name}"]'
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, option))
        browser.find_element(By.CSS_SELECTOR, option).click()
        wait.until(lambda d: d.find_element(By.CSS_SELECTOR, "#sf-training-method input").get_attribute("value")
                   == method)

    pick_preset("tiny-grpo", "grpo")  # the form follows the preset...
    pick_preset("tiny", "sft")  # ...and back
    _field(browser, "training.learning_rate", "0")
    _click(browser, "#sf-validate")
    wait.until(lambda d: "Input should be greater than 0" in text("#sf-training-learning-rate"))
    assert "training.learning_rate" in text("#sf-problems") and "1 problem" in text("#sf-problems")

    _open(browser, "Evaluation")  # a closed section's fields are not on the page until it opens
    for setting, value in (("training.learning_rate", "0.003"), ("experiment_name", "in-browser"),
                           ("training.max_steps", "8"), ("training.logging_steps", "2"), ("evaluation.tasks", "")):
        _field(browser, setting, value)
    _click(browser, "#sf-validate")
    wait.until(lambda d: "No problems" in text("#sf-problems"))
    assert "Input should be" not in text("#sf-training-learning-rate")
    assert "experiment_name: in-browser" in text("#sf-yaml") and "max_steps: 8" in text("#sf-yaml")
    _click(browser, "#sf-preview")  # `smolforge data check` of the config
    wait.until(lambda d: "451 for training, 51 for evaluation" in text("#sf-data"))
    assert "format: messages" in text("#sf-data") and "row 1: {" in text("#sf-data")
    if shots:
        browser.save_screenshot(f"{shots}/configure.png")

    _tab(browser, "Run")
    _click(browser, "#sf-start")
    wait.until(lambda d: d.find_element(By.CSS_SELECTOR, "#sf-current input, #sf-current textarea")
               .get_attribute("value") == str(ui.runs / "in-browser"))
    WebDriverWait(browser, 300, poll_frequency=0.5).until(lambda d: "finished" in text("#sf-status"))
    assert "step 8/8" in text("#sf-status") and "Done: train loss" in \
        browser.find_element(By.CSS_SELECTOR, "#sf-console textarea").get_attribute("value")
    if shots:
        browser.save_screenshot(f"{shots}/finished.png")
    _finished_run_through_the_api(ui, str(ui.runs / "in-browser"))

    _tab(browser, "Runs")
    _click(browser, "#sf-refresh")
    wait.until(lambda d: "in-browser" in text("#sf-runs"))
    chosen = browser.find_element(By.CSS_SELECTOR, "#sf-chosen input")
    chosen.send_keys(str(ui.runs / "in-browser"))
    chosen.send_keys(Keys.ENTER)
    wait.until(lambda d: "in-browser" in text("#sf-card") and "## " not in text("#sf-card"))
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#sf-plot img"))  # the card's loss curve, served
    assert browser.execute_script("const i = document.querySelector('#sf-plot img'); return i.complete && "
                                  "i.naturalWidth > 0")

    _tab(browser, "Configure")
    _field(browser, "experiment_name", "in-browser-2")
    _field(browser, "training.max_steps", "400")
    _field(browser, "training.save_steps", "4")
    _tab(browser, "Run")
    _click(browser, "#sf-start")
    WebDriverWait(browser, 120, poll_frequency=0.3).until(lambda d: re.search(r"step (\d+)/400", text("#sf-status"))
                                                          and int(re.search(r"step (\d+)/400",
                                                                            text("#sf-status")).group(1)) >= 8)
    _click(browser, "#sf-stop")
    WebDriverWait(browser, 120, poll_frequency=0.5).until(lambda d: "stopped" in text("#sf-status"))
    assert f"smolforge run {ui.runs / 'in-browser-2'} --resume" in text("#sf-status")
    _tab(browser, "Runs")
    _click(browser, "#sf-refresh")
    wait.until(lambda d: "in-browser-2" in text("#sf-runs") and "stopped" in text("#sf-runs"))
    _stopped_run_through_the_api(ui, str(ui.runs / "in-browser-2"))


def _finished_run_through_the_api(ui, run_dir: str) -> None:
    """The run the browser started and watched, as the named endpoints report it (one run serves both: each run
    is a fresh `smolforge run` process)."""
    info = ui.client.predict(run_dir, api_name="/status")
    assert info["state"] == "finished" and info["exit_code"] in (0, None), info
    assert info["step"] == info["max_steps"] == 8 and info["loss"] is not None
    assert [p["step"] for p in info["points"] if "loss" in p] == [1, 2, 4, 6, 8]  # the trainer logs step 1 too
    assert info["card"] == str(Path(run_dir) / "model" / "README.md") and "Done: train loss" in info["console"]
    (row,) = [r for r in ui.client.predict(api_name="/runs") if r["name"] == "in-browser"]
    assert row["state"] == "finished" and row["method"] == "sft (full)" and row["headline"].startswith("eval loss")

    # what the UI started, `smolforge run` of the same YAML reproduces; starting it again in the same folder is
    # refused as the CLI refuses it
    started = (ui.runs / ".smolforge-ui" / "in-browser.yaml").read_text()
    assert yaml.safe_load(started)["training"]["max_steps"] == 8
    with pytest.raises(Exception, match="already holds a run"):
        ui.client.predict(started, api_name="/start")

    # after training: the CLI's own quantize, its output and exit code; the card now lists the variant
    done = ui.client.predict(run_dir, "quantize", "int8", api_name="/after_training")
    assert done["exit_code"] == 0 and "int8" in done["output"], done
    assert "int8" in (Path(run_dir) / "model" / "README.md").read_text()
    with pytest.raises(Exception, match="Unknown action 'train'"):
        ui.client.predict(run_dir, "train", "", api_name="/after_training")


def _stopped_run_through_the_api(ui, run_dir: str) -> None:
    """The run the browser stopped, as the named endpoints report it."""
    info = ui.client.predict(run_dir, api_name="/status")
    assert info["state"] == "stopped" and info["resumable"] and info["checkpoint_step"] >= 4, info
    assert info["resume_command"] == f"smolforge run {run_dir} --resume"
    with pytest.raises(Exception, match="is not running"):
        ui.client.predict(run_dir, api_name="/stop")
    with pytest.raises(Exception, match="has not finished training"):
        ui.client.predict(run_dir, "evaluate", "", api_name="/after_training")
