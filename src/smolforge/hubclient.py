"""Talking to the Hub: which endpoint, retries with backoff, and errors a user can act on.

huggingface_hub retries its own upload requests (preupload, LFS) but not `create_repo`,
`model_info`, card validation or the commit itself, so every step smolforge takes is wrapped in
`with_retry`: connection errors, timeouts, 408/429/5xx are retried with exponential backoff (the
same classes the library's `http_backoff` retries); 401/403 and other 4xx are not, and become one
paragraph saying what to fix. Every message is redacted before it is shown.
"""

from __future__ import annotations

import functools
import logging
import os
import time
from collections.abc import Callable
from typing import TypeVar

from smolforge.credentials import redact
from smolforge.errors import PublishError, SmolforgeError, first_line

log = logging.getLogger("smolforge.publish")
T = TypeVar("T")

DEFAULT_ENDPOINT = "https://huggingface.co"
TRANSIENT_STATUS = (408, 429, 500, 502, 503, 504)
UNREACHABLE_ENV = "SMOLFORGE_HUB_UNREACHABLE"  # set (to the endpoint) when smolforge went offline because of it
RETRY_DELAY_ENV = "SMOLFORGE_PUBLISH_RETRY_DELAY"  # first backoff wait in seconds (default 2; tests use less)


class HubUnreachable(PublishError):
    """The Hub could not be reached (offline mode, connection errors, 5xx after every retry)."""


def endpoint_from_env(configured: str | None = None) -> str:
    """The Hub a run talks to without checking it: publish.endpoint, HF_ENDPOINT, or huggingface.co."""
    return (configured or os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT).strip().rstrip("/")


@functools.lru_cache(maxsize=8)
def reachable(url: str, timeout: float = 4.0) -> bool:
    """Whether the Hub's API answers at all (any HTTP status counts: 401 without a token is fine)."""
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(urllib.request.Request(url + "/api/whoami-v2", method="GET"), timeout=timeout):
            return True
    except urllib.error.HTTPError:
        return True
    except (OSError, ValueError):
        return False


def resolve_endpoint(flag: str | None, configured: str | None) -> str:
    """--endpoint, then publish.endpoint, then HF_ENDPOINT, then huggingface.co."""
    url = (flag or configured or os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT).strip().rstrip("/")
    if not url.startswith(("http://", "https://")) or len(url.split("://", 1)[1]) == 0:
        source = "--endpoint" if flag else ("publish.endpoint" if configured else "HF_ENDPOINT")
        raise SmolforgeError(f"{source}: {url!r} is not an http(s) URL. Give the Hub's base URL, e.g. "
                             f"{DEFAULT_ENDPOINT} or http://127.0.0.1:8080 for a Hub-compatible server.")
    return url


def _chain(e: BaseException):
    seen = set()
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        yield e
        e = e.__cause__ or e.__context__


def status_of(e: BaseException) -> int | None:
    from huggingface_hub.errors import HfHubHTTPError

    for x in _chain(e):
        if isinstance(x, HfHubHTTPError) and getattr(x, "response", None) is not None:
            return x.response.status_code
    return None


def classify(e: BaseException) -> str:
    """offline | transient | auth | forbidden | other."""
    import httpx2
    from huggingface_hub.errors import OfflineModeIsEnabled

    for x in _chain(e):
        if isinstance(x, OfflineModeIsEnabled):
            return "offline"
        if isinstance(x, (httpx2.TimeoutException, httpx2.NetworkError, httpx2.RemoteProtocolError)):
            return "transient"
    status = status_of(e)
    if status in TRANSIENT_STATUS:
        return "transient"
    if status == 401:
        return "auth"
    if status == 403:
        return "forbidden"
    return "other"


def short(e: BaseException) -> str:
    """The first line of the most specific message in the chain, redacted."""
    from huggingface_hub.errors import HfHubHTTPError

    for x in _chain(e):
        if isinstance(x, HfHubHTTPError):
            status = status_of(x)
            server = getattr(x, "server_message", None)
            return redact(f"HTTP {status}" + (f": {first_line(server)}" if server and server.strip() else ""))
    text = str(e).strip().splitlines()
    return redact(f"{type(e).__name__}: {text[0]}" if text else type(e).__name__)


class Retrier:
    """Runs Hub calls with retries; turns the final failure into a SmolforgeError naming the fix."""

    def __init__(self, endpoint: str, retry_command: str, token_source: str, retries: int = 4, say=None):
        self.endpoint, self.command, self.token_source = endpoint, retry_command, token_source
        self.retries = max(0, retries)
        self.delay = float(os.environ.get(RETRY_DELAY_ENV) or 2.0)
        self.say = say or (lambda text: None)

    def __call__(self, what: str, fn: Callable[[], T]) -> T:
        for attempt in range(self.retries + 1):
            try:
                return fn()
            except SmolforgeError:
                raise
            except Exception as e:  # classified below; a failure that is not the Hub's keeps its traceback
                kind = classify(e)
                if kind == "other" and status_of(e) is None and not isinstance(e, (OSError, ValueError)):
                    raise
                if kind == "transient" and attempt < self.retries:
                    wait = self.delay * 2 ** attempt
                    msg = f"{what}: {short(e)}; retrying in {wait:g} s (retry {attempt + 1} of {self.retries})"
                    log.warning(msg)
                    self.say(msg)
                    time.sleep(wait)
                    continue
                raise self.error(what, e, kind, attempt + 1) from None
        raise AssertionError("unreachable")

    def error(self, what: str, e: BaseException, kind: str, attempts: int) -> SmolforgeError:
        log.error("%s failed: %s", what, short(e))
        retry = f"Nothing was lost; the run folder is unchanged. Retry with: {self.command}"
        if kind == "offline":
            if os.environ.get(UNREACHABLE_ENV):
                return HubUnreachable(f"{what}: {os.environ[UNREACHABLE_ENV]} could not be reached when this run "
                                      f"started, so it worked offline. {retry}")
            return HubUnreachable(f"{what}: offline mode is on (HF_HUB_OFFLINE or TRANSFORMERS_OFFLINE is set), so "
                                  f"the Hub cannot be reached. Unset it when you are online. {retry}")
        if kind == "transient":
            return HubUnreachable(f"{what}: {self.endpoint} could not be reached after {attempts} attempt"
                                  f"{'s' if attempts != 1 else ''} ({short(e)}). {retry}")
        if kind == "auth":
            return SmolforgeError(f"{what}: the Hub rejected the token from {self.token_source} (401 Unauthorized): "
                                  "it is invalid or expired. Create a token with write access at "
                                  "https://huggingface.co/settings/tokens, then set HF_TOKEN, run `hf auth login`, or "
                                  f"pass --token-file FILE. {retry}")
        if kind == "forbidden":
            return SmolforgeError(f"{what}: the token from {self.token_source} has no write access there (403 "
                                  f"Forbidden: {short(e)}). Use a token with write access to that namespace, or a "
                                  f"repo id in your own namespace (--repo-id you/name). {retry}")
        if status_of(e) == 412:
            return PublishError(f"{what}: the repo changed on the Hub while smolforge was publishing ({short(e)}), "
                                "so nothing was overwritten. Run the command again; it checks the new state first: "
                                f"{self.command}")
        return PublishError(f"{what} failed: {short(e)}. {retry}")
