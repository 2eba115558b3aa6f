"""Hugging Face access for the wizard: which token, whose it is, can it write, is the Hub there.

The token is only ever held in memory, passed to huggingface_hub as an argument, and registered
with `credentials.redact`; it is never printed, written to the YAML or put on a command line.
"""

from __future__ import annotations

import os
import urllib.error
import urllib.request
from dataclasses import dataclass
from functools import lru_cache


@dataclass
class HubAccess:
    token: str | None = None
    source: str = "none"  # where the token came from, for the summary (never the token)
    typed: bool = False  # typed at the hidden prompt (then it may be stored with huggingface_hub.login)
    online: bool = False
    username: str | None = None
    can_write: bool | None = None  # None: not known (offline, or the Hub did not say)
    store: bool = False  # store the typed token with huggingface_hub.login after the final confirm

    def describe(self) -> str:
        if not self.token:
            return "no token (offline run: nothing is pushed)"
        who = f"{self.username}" if self.username else "user unknown (offline)"
        write = {True: "can write", False: "read-only", None: "write access not checked"}[self.can_write]
        return f"token from {self.source}; {who}; {write}"


class TokenRejected(Exception):
    """The Hub answered 401 for this token."""


def endpoint() -> str:
    return (os.environ.get("HF_ENDPOINT") or "https://huggingface.co").rstrip("/")


def offline_by_env() -> bool:
    """huggingface_hub's own reading (HF_HUB_OFFLINE, or TRANSFORMERS_OFFLINE)."""
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


@lru_cache(maxsize=4)
def reachable(url: str, timeout: float = 4.0) -> bool:
    """Any HTTP answer from the Hub's API counts (401 without a token is fine)."""
    try:
        with urllib.request.urlopen(urllib.request.Request(url + "/api/whoami-v2", method="GET"), timeout=timeout):
            return True
    except urllib.error.HTTPError:
        return True
    except (OSError, ValueError):
        return False


def online() -> bool:
    return not offline_by_env() and reachable(endpoint())


def write_access(info: dict) -> bool | None:
    """Whether a whoami answer's token may create and push repos for its user."""
    token = ((info.get("auth") or {}).get("accessToken") or {})
    role = token.get("role")
    if role == "write":
        return True
    if role == "read":
        return False
    if role == "fineGrained":
        for scope in (token.get("fineGrained") or {}).get("scoped") or []:
            entity = scope.get("entity") or {}
            if entity.get("type") == "user" and "repo.write" in (scope.get("permissions") or []):
                return True
        return False
    return None


def check_token(token: str) -> tuple[str | None, bool | None]:
    """(username, can_write) from the Hub; TokenRejected on 401, OSError when unreachable."""
    from huggingface_hub.errors import HfHubHTTPError

    from smolforge.credentials import register_secret, whoami

    register_secret(token)
    try:
        info = whoami(token, endpoint())
    except HfHubHTTPError as e:
        status = getattr(getattr(e, "response", None), "status_code", None)
        if status == 401:
            raise TokenRejected("the Hub rejected this token (401)") from None
        raise OSError(f"the Hub answered {status}") from None
    except Exception as e:  # httpx2 connection errors and friends: treat as offline
        raise OSError(type(e).__name__) from None
    return info.get("name"), write_access(info)


def store_token(token: str) -> None:
    """Save the token in huggingface_hub's login cache (not a git credential)."""
    import io
    from contextlib import redirect_stdout

    from huggingface_hub import login

    with redirect_stdout(io.StringIO()):  # login prints its own notes; the wizard says what happened
        login(token=token, add_to_git_credential=False)
