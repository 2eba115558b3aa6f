"""The demo app as a person uses it: `smolforge demo RUN --serve`, then headless Chromium chats with it.

Chromium and chromedriver are Debian packages (`make browser-deps`, run by `make test`). The page
must load everything from the local server: Chromium resolves no other host, and the test asserts
that every request the page made went to 127.0.0.1.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
from types import SimpleNamespace

import pytest

from tests.conftest import SMOLFORGE
from tests.servers import free_port, wait_until_served

TEMPERATURE, TOP_P, MAX_NEW_TOKENS = 0.7, 0.95, 24
QUESTIONS = ["Hello! Who are you?", "Tell me more."]


@pytest.fixture(scope="module")
def browser_bins() -> tuple[str, str]:
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not (chromium and driver):
        reason = "headless Chromium is not installed: run `make browser-deps` (apt-get install chromium " \
                 "chromium-driver)"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    return chromium, driver


@pytest.fixture(scope="module")
def demo_server(tiny_run, tmp_path_factory, browser_bins, scenario):
    """`smolforge demo RUN --serve` in a child process, until the page answers."""
    work = tmp_path_factory.mktemp("demo-serve")
    port = free_port()
    log = (work / "serve.log").open("w")
    proc = subprocess.Popen(
        [SMOLFORGE, "demo", str(tiny_run), "--output", str(work / "app"), "--serve", "--port", str(port),
         "--seed", str(scenario.seed), "--temperature", str(TEMPERATURE), "--top-p", str(TOP_P),
         "--max-new-tokens", str(MAX_NEW_TOKENS)],
        cwd=work, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}/"
    try:
        wait_until_served(proc, url, work / "serve.log", "the demo server", 90)
        yield SimpleNamespace(url=url, port=port, log=work / "serve.log")
    finally:
        os.killpg(proc.pid, signal.SIGTERM)  # its own session: the server and nothing else
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()
    text = (work / "serve.log").read_text()
    assert f"Serving on http://127.0.0.1:{port}" in text and "0.0.0.0" not in text
    assert "gradio.live" not in text and "share=True" not in text  # no share link, and no hint to make one
    assert "Skipping import" not in text and "Traceback" not in text  # library noise stays off the console


@pytest.fixture
def browser(browser_bins, tmp_path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    chromium, driver = browser_bins
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--disable-dev-shm-usage", "--window-size=1280,1500", f"--user-data-dir={tmp_path / 'profile'}",
                "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"performance": "ALL"})
    drv = webdriver.Chrome(service=Service(driver), options=options)
    drv.set_page_load_timeout(30)
    yield drv
    drv.quit()


def _generate(tokenizer, model, messages: list[dict], seed: int) -> str:
    import torch

    inputs = tokenizer.apply_chat_template(messages, add_generation_prompt=True, enable_thinking=False,
                                           return_tensors="pt", return_dict=True)
    torch.manual_seed(seed)
    out = model.generate(**inputs, do_sample=True, temperature=TEMPERATURE, top_p=TOP_P,
                         max_new_tokens=MAX_NEW_TOKENS, pad_token_id=tokenizer.pad_token_id)
    return tokenizer.decode(out[0, inputs["input_ids"].shape[1]:], skip_special_tokens=False)


@pytest.fixture(scope="module")
def scenario(tiny_run) -> SimpleNamespace:
    """A seed and the replies the app must give, computed here with plain transformers (same template,
    history and sampling). The seed is one where the second reply depends on the first turn, so the
    browser check proves the page sends the history; and where no reply is empty or opens a thought."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_run / "model")
    model = AutoModelForCausalLM.from_pretrained(tiny_run / "model").eval()
    for seed in range(30):
        first = _generate(tokenizer, model, [{"role": "user", "content": QUESTIONS[0]}], seed)
        history = [{"role": "user", "content": QUESTIONS[0]},
                   {"role": "assistant", "content": first.replace("<|im_end|>", "").strip()}]
        second = _generate(tokenizer, model, [*history, {"role": "user", "content": QUESTIONS[1]}], seed)
        alone = _generate(tokenizer, model, [{"role": "user", "content": QUESTIONS[1]}], seed)
        replies = [first.replace("<|im_end|>", "").strip(), second.replace("<|im_end|>", "").strip()]
        if all(replies) and not any("think>" in r or "<|" in r for r in replies) and second != alone:
            return SimpleNamespace(seed=seed, replies=replies)
    raise AssertionError("no seed below 30 gives the tiny model two plain, history-dependent replies")


def visible(text: str) -> str:
    """Text as the page shows it: markdown markers and runs of whitespace do not survive rendering."""
    return " ".join(re.sub(r"[*_`#>~\\|]", " ", text).split())


def test_chat_in_headless_chromium(demo_server, browser, scenario, tmp_path):
    from selenium.common.exceptions import StaleElementReferenceException, TimeoutException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ready
    from selenium.webdriver.support.ui import WebDriverWait

    textarea = (By.CSS_SELECTOR, "#smolforge-input textarea")
    submit = (By.CSS_SELECTOR, "#smolforge-input button.submit-button")
    settings = (By.XPATH, "//button[contains(@class, 'label-wrap')][contains(., 'Settings')]")

    expected = scenario.replies
    browser.get(demo_server.url)
    wait = WebDriverWait(browser, 30, ignored_exceptions=(StaleElementReferenceException,))  # gradio re-renders
    wait.until(ready.presence_of_element_located(textarea))
    assert browser.title  # the page rendered, not an error body

    def bot_texts() -> list[str]:
        return [e.text for e in browser.find_elements(By.CSS_SELECTOR, ".message.bot")]

    for turn, (question, reply) in enumerate(zip(QUESTIONS, expected, strict=True)):
        wait.until(ready.element_to_be_clickable(textarea)).send_keys(question)  # enabled again after a reply
        wait.until(ready.element_to_be_clickable(submit)).click()
        try:
            wait.until(lambda d, n=turn, r=reply: len(bot_texts()) > n and visible(bot_texts()[n]) == visible(r))
        except TimeoutException:
            browser.save_screenshot(str(tmp_path / "failure.png"))
            raise AssertionError(f"turn {turn + 1}: expected the reply {reply!r}, the page shows {bot_texts()} "
                                 f"(screenshot {tmp_path / 'failure.png'}; server log {demo_server.log})") from None

    def user_texts() -> list[str]:
        return [visible(e.text) for e in browser.find_elements(By.CSS_SELECTOR, ".message.user")]

    wait.until(lambda d: user_texts() == [visible(q) for q in QUESTIONS] and len(bot_texts()) == len(QUESTIONS))

    # The settings panel: system prompt, the SmolLM3 think switch and the sampling controls.
    wait.until(ready.element_to_be_clickable(settings)).click()
    wait.until(lambda d: d.find_element(By.XPATH, "//span[contains(text(), 'Think before answering')]").is_displayed())
    page = browser.find_element(By.TAG_NAME, "body").text
    for label in ("System prompt", "Temperature", "Top-p", "Max new tokens", "Seed"):
        assert label in page
    shot = tmp_path / "demo.png"
    browser.save_screenshot(str(shot))
    assert shot.stat().st_size > 10_000

    hosts = set()
    for entry in browser.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.requestWillBeSent":
            url = message["params"]["request"]["url"]
            if re.match(r"(https?|wss?)://", url):
                hosts.add(url.split("/")[2])
    assert hosts == {f"127.0.0.1:{demo_server.port}"}
