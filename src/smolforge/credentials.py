"""Hugging Face tokens: where they come from, and keeping them out of everything we write.

A token is read from `--token-file`, `HF_TOKEN`, or huggingface_hub's login cache: never from a
command-line value, because argv is visible to every process on the machine. Every token seen
is registered, and `redact()` removes it (and anything shaped like an HF token) from log lines,
config dumps, results, cards and error messages.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path
from typing import Any

from smolforge.errors import SmolforgeError
from smolforge.paths import cache_root

_HF_TOKEN_SHAPE = re.compile(r"hf_[A-Za-z0-9]{16,}")
_KNOWN: set[str] = set()
MASK = "***"


def register_secret(value: str | None) -> None:
    if value and len(value) >= 6:
        _KNOWN.add(value)


def redact(text: str) -> str:
    for secret in sorted(_KNOWN, key=len, reverse=True):
        text = text.replace(secret, MASK)
    return _HF_TOKEN_SHAPE.sub("hf_" + MASK, text)


def redact_data(data: Any) -> Any:
    """`data` (dicts, lists, strings, numbers) with every string redacted: for structured records, where
    redacting their serialized text could cut a secret that the serializer escaped."""
    if isinstance(data, str):
        return redact(data)
    if isinstance(data, dict):
        return {redact_data(k): redact_data(v) for k, v in data.items()}
    if isinstance(data, list | tuple):
        return [redact_data(v) for v in data]
    return data


class RedactingFilter(logging.Filter):
    """Masks secrets in every record that passes through a handler."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a malformed record: leave it to logging's own error path
            return True
        clean = redact(message)
        if clean != message or record.args:
            record.msg, record.args = clean, None
        return True


def read_token_file(path: str | Path) -> str:
    p = Path(path).expanduser()
    try:
        token = p.read_text(encoding="utf-8").strip()
    except OSError as e:
        raise SmolforgeError(f"--token-file: cannot read {p} ({e.strerror}). Give a file that holds only "
                             "your Hugging Face token, or set the HF_TOKEN environment variable.") from None
    if not token or any(c.isspace() for c in token):
        raise SmolforgeError(f"--token-file: {p} must hold one token on one line (it is empty or has spaces).")
    return token


def find_token(token_file: str | Path | None = None) -> tuple[str | None, str]:
    """(token, where it came from); registers it for redaction."""
    register_secret(os.environ.get("HF_TOKEN"))
    if token_file:
        token = read_token_file(token_file)
        register_secret(token)
        return token, f"--token-file {token_file}"
    for var in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"):
        if os.environ.get(var):
            token = os.environ[var].strip()
            register_secret(token)
            return token, f"the {var} environment variable"
    from huggingface_hub import get_token

    token = get_token()
    if token:
        register_secret(token)
        return token, "the huggingface_hub login cache"
    return None, "none"


def _whoami_cache() -> Path:
    return cache_root() / "whoami.json"


def _token_key(token: str) -> str:
    import hashlib

    return hashlib.sha256(token.encode()).hexdigest()[:16]


def remember_username(token: str, username: str) -> None:
    """Cache the username a token belongs to (keyed by a hash of the token, never the token)."""
    import json

    path = _whoami_cache()
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        data = {}
    data[_token_key(token)] = username
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


def cached_username(token: str | None = None) -> str | None:
    """The HF username for the current token from smolforge's whoami cache (offline, no network)."""
    import json

    if token is None:
        try:
            token, _ = find_token()
        except SmolforgeError:
            return None
    if not token:
        return None
    try:
        data = json.loads(_whoami_cache().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    name = data.get(_token_key(token))
    return name if isinstance(name, str) and name else None


def whoami(token: str, endpoint: str | None = None) -> dict:
    """Ask the Hub who the token belongs to; caches the username for offline card rendering."""
    from huggingface_hub import HfApi

    info = HfApi(endpoint=endpoint, token=token).whoami()
    if info.get("name"):
        remember_username(token, info["name"])
    return info
