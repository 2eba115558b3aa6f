"""Hugging Face access for the wizard: which token, whose it is, can it write, is the Hub there.

The token is only ever held in memory, passed to huggingface_hub as an argument, and registered
with `credentials.redact`; it is never printed, written to the YAML or put on a command line.
"""

from __future__ import annotations

from dataclasses import dataclass

from smolforge import processenv
from smolforge.credentials import cached_username, find_token, register_secret, whoami
from smolforge.hubclient import endpoint_from_env, reachable
from smolforge.wizard import checks, prompts


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

    register_secret(token)
    try:
        info = whoami(token, endpoint_from_env())
    except HfHubHTTPError as e:
        status = getattr(getattr(e, "response", None), "status_code", None)
        if status == 401:
            raise TokenRejected("the Hub rejected this token (401)") from None
        raise OSError(f"the Hub answered {status}") from None
    except Exception as e:  # httpx2 connection errors and friends: treat as offline
        raise OSError(type(e).__name__) from None
    return info.get("name"), write_access(info)


def store_token(token: str, online: bool) -> None:
    """Save the token in huggingface_hub's login cache (where `get_token()` and `hf auth` find it).

    Online this is `huggingface_hub.login()`. Offline, login() cannot run (it asks the Hub whose token it is
    first), so the two steps it takes after that check are taken here: save the token, make it the active one.
    """
    import io
    from contextlib import redirect_stdout

    if online:
        from huggingface_hub import login

        with redirect_stdout(io.StringIO()):  # login prints its own notes; the wizard says what happened
            login(token=token, add_to_git_credential=False)
        return
    from huggingface_hub._login import _set_active_token
    from huggingface_hub.utils._auth import _save_token

    _save_token(token, "smolforge")
    _set_active_token("smolforge", add_to_git_credential=False)


def step_hub(console) -> HubAccess:
    """Step 1 of the wizard: which token, whose, whether it can write, whether the Hub answers."""
    from rich.markup import escape as esc

    prompts.step(console, 1, "Hugging Face access", "needed to publish and to read gated or private data")
    access = HubAccess()
    token, source = find_token()
    if token:
        access.token, access.source = token, source
        console.print(f"Token found in {esc(source)}.")
    else:
        console.print("No token found (HF_TOKEN or `hf auth login`). You can paste one (it is not shown), or press "
                      "Enter to continue without: an offline run trains and writes the card; nothing is pushed.")
    if processenv.offline_by_env():
        console.print("[dim]Offline mode (HF_HUB_OFFLINE): the Hub is not contacted.[/]")
    else:
        access.online = reachable(endpoint_from_env())
        if not access.online:
            console.print(f"[yellow]The Hub ({esc(endpoint_from_env())}) is not reachable: continuing offline.[/]")
    while True:
        if not access.token:
            typed = prompts.password("Hugging Face token:", checks.parse_token, instruction="(hidden; Enter to skip)")
            if not typed:
                break
            register_secret(typed)
            access.token, access.source, access.typed = typed, "the prompt", True
        if not access.online:
            access.username = cached_username(access.token)
            break
        try:
            access.username, access.can_write = check_token(access.token)
        except TokenRejected as e:
            console.print(f"[red]The token from {access.source} was rejected by the Hub ({esc(str(e))}).[/]")
            rejected_typed = access.typed
            access.token, access.source, access.typed = None, "none", False
            if rejected_typed:
                continue  # ask again
            break
        except OSError as e:
            console.print(f"[yellow]Could not check the token ({esc(str(e))}): continuing offline.[/]")
            access.online = False
            access.username = cached_username(access.token)
        break
    if access.token and access.username:
        write = {True: "can write (create and push repos)", False: "read-only: publishing will fail",
                 None: "write access not checked"}[access.can_write]
        console.print(f"Hugging Face user: [bold]{esc(access.username)}[/] ({write}).")
    if access.typed and access.online and access.username:
        access.store = prompts.confirm("Store this token with `huggingface_hub` login so later runs find it?", True)
    elif access.typed:
        console.print("The Hub is not reachable, so this token cannot be checked now. It is never written to the "
                      "config; unless you store it, `smolforge run` will not find it (set HF_TOKEN then).")
        access.store = prompts.confirm("Store it in the huggingface_hub login cache (as `hf auth login` would) so "
                                       "later runs find it?", True)
    return access
