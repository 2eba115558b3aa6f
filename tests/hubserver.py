"""A small Hugging Face Hub API server on 127.0.0.1, for driving the real `huggingface_hub` client.

`respx`/`responses` cannot intercept huggingface_hub 2.x (it has its own HTTP stack), so the
tests talk to a real socket. This implements the part of the Hub's API that `create_repo`,
`model_info`, `upload_folder` (regular files and the legacy LFS protocol; run clients with
HF_HUB_DISABLE_XET=1), `hf_hub_download` and card validation call:

    GET  /api/whoami-v2
    POST /api/repos/create                                  409 when the repo exists
    POST /api/validate-yaml
    GET  /api/models/{ns}/{name}[/revision/{rev}]           404 + X-Error-Code: RepoNotFound
                                                            (and the same routes under /api/spaces/, /api/datasets/)
    GET  /api/models/{ns}/{name}/tree/{rev}[/{path}]
    POST /api/models/{ns}/{name}/preupload/{rev}            uploadMode lfs for >= 10 MB or binary files
    POST /{ns}/{name}.git/info/lfs/objects/batch            + PUT upload, POST verify
    POST /api/models/{ns}/{name}/commit/{rev}               NDJSON; 412 on a stale parentCommit
    HEAD|GET /{ns}/{name}/resolve/{rev}/{path}              X-Repo-Commit, ETag, Content-Length

Everything received is recorded (`requests`) so tests can check what reached the server, and
faults can be injected (`fail_next`, `reject_yaml`). Repos live in memory.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

import yaml

LFS_MIN_SIZE = 10 * 1024 * 1024
FRONT_MATTER = re.compile(r"\A\ufeff?---[ \t]*\r?\n(.*?)\r?\n---[ \t]*(\r?\n|\Z)", re.S)


def repo_key(kind: str, repo_id: str) -> str:
    """Where a repo lives in `HubState.repos`: models by their id, spaces/datasets under a prefix."""
    return repo_id if kind == "models" else f"{kind}/{repo_id}"


def git_blob_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob " + str(len(data)).encode() + b"\0" + data).hexdigest()


@dataclass
class StoredFile:
    data: bytes
    lfs: bool

    @property
    def oid(self) -> str:
        """What the client compares with its local oid: sha256 for LFS files, git's blob sha1 otherwise."""
        return hashlib.sha256(self.data).hexdigest() if self.lfs else git_blob_sha1(self.data)


@dataclass
class Commit:
    oid: str
    summary: str
    description: str
    files: dict[str, StoredFile]


@dataclass
class Repo:
    repo_id: str
    private: bool
    commits: list[Commit] = field(default_factory=list)

    @property
    def head(self) -> Commit | None:
        return self.commits[-1] if self.commits else None

    @property
    def files(self) -> dict[str, StoredFile]:
        return self.head.files if self.head else {}

    @property
    def sha(self) -> str:
        return self.head.oid if self.head else "0" * 40


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


class HubServer:
    """Start with `with HubServer(token=...) as hub:`; `hub.url` is the endpoint to give the client."""

    def __init__(self, token: str = "hf_testtoken", user: str = "alice", orgs: tuple[str, ...] = (),
                 port: int = 0):
        self.tokens = {token: user}
        self.user, self.orgs = user, set(orgs)
        self.port = port
        self.repos: dict[str, Repo] = {}
        self.lfs_blobs: dict[str, bytes] = {}
        self.requests: list[Received] = []
        self.fail_next: list[int] = []  # status codes returned (in order) to the next requests, whatever they are
        self.reject_yaml: str | None = None  # validate-yaml answers 400 with this message
        self.echo_auth = False  # 401/403 messages quote the Authorization header (a careless server): must be masked
        self._lock = threading.Lock()
        self._httpd: ThreadingHTTPServer | None = None

    # ---- lifecycle
    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> HubServer:
        handler = type("Handler", (_Handler,), {"hub": self})
        self._httpd = ThreadingHTTPServer(("127.0.0.1", self.port), handler)
        self._httpd.daemon_threads = True
        self.port = self._httpd.server_address[1]
        threading.Thread(target=self._httpd.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self) -> HubServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # ---- helpers for tests
    def file(self, repo_id: str, path: str) -> bytes:
        return self.repos[repo_id].files[path].data

    def edit_file(self, repo_id: str, path: str, data: bytes, summary: str = "Edit on the Hub") -> None:
        """Simulate someone editing a file in the Hub's web editor (a new commit)."""
        repo = self.repos[repo_id]
        files = dict(repo.files)
        files[path] = StoredFile(data, lfs=False)
        repo.commits.append(Commit(_new_oid(repo), summary, "", files))

    def received_bytes(self) -> bytes:
        """Everything the server received except the Authorization header: paths, other headers, bodies."""
        parts = []
        for r in self.requests:
            parts.append(f"{r.method} {r.path}\n".encode())
            parts += [f"{k}: {v}\n".encode() for k, v in r.headers.items() if k.lower() != "authorization"]
            parts.append(r.body)
        return b"".join(parts)


def _new_oid(repo: Repo) -> str:
    return hashlib.sha1(f"{repo.repo_id}{len(repo.commits)}{time.time_ns()}".encode()).hexdigest()




class _Handler(BaseHTTPRequestHandler):
    hub: HubServer
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:  # quiet
        pass

    # ---- plumbing
    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            out = b""
            while True:
                size = int(self.rfile.readline().strip().split(b";")[0], 16)
                if size == 0:
                    self.rfile.readline()
                    return out
                out += self.rfile.read(size)
                self.rfile.readline()
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def _send(self, status: int, body: bytes | dict | list | str = b"", headers: dict | None = None,
              head: bool = False) -> None:
        if isinstance(body, (dict, list)):
            body, ctype = json.dumps(body).encode(), "application/json"
        elif isinstance(body, str):
            body, ctype = body.encode(), "text/plain"
        else:
            ctype = "application/octet-stream"
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def _error(self, status: int, message: str, code: str | None = None) -> None:
        if self.hub.echo_auth and status in (401, 403):
            message += f" (got Authorization: {self.headers.get('Authorization')})"
        self._send(status, {"error": message}, {"X-Error-Code": code} if code else {"X-Error-Message": message})

    def _user(self) -> str | None:
        auth = self.headers.get("Authorization", "")
        return self.hub.tokens.get(auth[7:]) if auth.startswith("Bearer ") else None

    def _handle(self, method: str) -> None:
        body = self._body()
        hub = self.hub
        with hub._lock:
            hub.requests.append(Received(method, self.path, dict(self.headers.items()), body))
            fail = hub.fail_next.pop(0) if hub.fail_next else None
        if fail is not None:
            return self._error(fail, f"injected failure {fail}")
        url = urlsplit(self.path)
        path, query = unquote(url.path), parse_qs(url.query)
        try:
            with hub._lock:
                self._route(method, path, query, body)
        except _Stop:
            pass

    def do_GET(self):  # noqa: N802
        self._handle("GET")

    def do_HEAD(self):  # noqa: N802
        self._handle("HEAD")

    def do_POST(self):  # noqa: N802
        self._handle("POST")

    def do_PUT(self):  # noqa: N802
        self._handle("PUT")

    # ---- routes
    def _route(self, method: str, path: str, query: dict, body: bytes) -> None:
        hub = self.hub
        if path == "/api/whoami-v2" and method == "GET":
            user = self._user()
            if user is None:
                return self._error(401, "Invalid credentials in Authorization header")
            return self._send(200, {"type": "user", "name": user, "orgs": [{"name": o} for o in hub.orgs],
                                    "auth": {"type": "access_token", "accessToken": {"role": "write"}}})
        if path == "/api/repos/create" and method == "POST":
            return self._create(json.loads(body or b"{}"))
        if path == "/api/validate-yaml" and method == "POST":
            return self._validate_yaml(json.loads(body or b"{}"))
        m = re.fullmatch(r"/api/(models|spaces|datasets)/([^/]+/[^/]+)(?:/revision/([^/]+))?", path)
        if m and method == "GET":
            return self._info(repo_key(m.group(1), m.group(2)))
        m = re.fullmatch(r"/api/(models|spaces|datasets)/([^/]+/[^/]+)/tree/([^/]+)(?:/(.*))?", path)
        if m and method == "GET":
            return self._tree(repo_key(m.group(1), m.group(2)), m.group(4) or "")
        m = re.fullmatch(r"/api/(models|spaces|datasets)/([^/]+/[^/]+)/preupload/([^/]+)", path)
        if m and method == "POST":
            return self._preupload(repo_key(m.group(1), m.group(2)), json.loads(body))
        m = re.fullmatch(r"/(?:(spaces|datasets)/)?([^/]+/[^/]+)\.git/info/lfs/objects/batch", path)
        if m and method == "POST":
            return self._lfs_batch(repo_key(m.group(1) or "models", m.group(2)), json.loads(body))
        m = re.fullmatch(r"/lfs-upload/([0-9a-f]{64})", path)
        if m and method == "PUT":
            if hashlib.sha256(body).hexdigest() != m.group(1):
                return self._error(400, "uploaded content does not match its oid")
            hub.lfs_blobs[m.group(1)] = body
            return self._send(200)
        if path == "/lfs-verify" and method == "POST":
            oid = json.loads(body)["oid"]
            return self._send(200, {}) if oid in hub.lfs_blobs else self._error(404, f"object {oid} not uploaded")
        m = re.fullmatch(r"/api/(models|spaces|datasets)/([^/]+/[^/]+)/commit/([^/]+)", path)
        if m and method == "POST":
            return self._commit(repo_key(m.group(1), m.group(2)), body)
        m = re.fullmatch(r"/(?:(spaces|datasets)/)?([^/]+/[^/]+)/resolve/([^/]+)/(.+)", path)
        if m and method in ("GET", "HEAD"):
            return self._resolve(repo_key(m.group(1) or "models", m.group(2)), m.group(4), head=method == "HEAD")
        return self._error(404, f"no route for {method} {path}")

    def _repo(self, repo_id: str, write: bool = False) -> Repo:
        """The repo, or an error response: 404 for a missing (or hidden private) repo, 401/403 for writes."""
        user = self._user()
        repo = self.hub.repos.get(repo_id)
        if write and user is None:
            self._error(401, "Invalid credentials in Authorization header")
            raise _Stop
        if repo is None or (repo.private and user is None):
            self._error(404, "Repository not found", "RepoNotFound")
            raise _Stop
        if write and repo_id.split("/")[-2] not in {user, *self.hub.orgs}:
            self._error(403, f"You don't have the rights to write to {repo_id}")
            raise _Stop
        return repo

    def _create(self, payload: dict) -> None:
        user = self._user()
        if user is None:
            return self._error(401, "Invalid credentials in Authorization header")
        ns = payload.get("organization") or user
        if ns not in {user, *self.hub.orgs}:
            return self._error(403, f"You don't have the rights to create a model under the namespace {ns}")
        kind = {"space": "spaces", "dataset": "datasets"}.get(payload.get("type") or "model", "models")
        repo_id = repo_key(kind, f"{ns}/{payload['name']}")
        if repo_id in self.hub.repos:
            return self._send(409, {"error": "You already created this model repo", "url": f"{self.hub.url}/{repo_id}"})
        private = payload.get("visibility", "private" if payload.get("private") else "public") == "private"
        self.hub.repos[repo_id] = Repo(repo_id, private)
        return self._send(200, {"url": f"{self.hub.url}/{repo_id}", "name": repo_id, "id": repo_id})

    def _validate_yaml(self, payload: dict) -> None:
        if self.hub.reject_yaml:
            return self._send(400, {"errors": [{"message": self.hub.reject_yaml}]})
        m = FRONT_MATTER.match(payload.get("content", ""))
        try:
            meta = yaml.safe_load(m.group(1)) if m else {}
        except yaml.YAMLError as e:
            return self._send(400, {"errors": [{"message": f"Invalid YAML: {e}"}]})
        if meta is not None and not isinstance(meta, dict):
            return self._send(400, {"errors": [{"message": "metadata must be a YAML mapping"}]})
        return self._send(200, {"errors": [], "warnings": []})

    def _info(self, repo_id: str) -> None:
        repo = self._repo(repo_id)
        self._send(200, {"id": repo_id, "modelId": repo_id, "private": repo.private, "sha": repo.sha,
                         "siblings": [{"rfilename": p} for p in sorted(repo.files)], "tags": [],
                         "author": repo_id.split("/")[0]})

    def _tree(self, repo_id: str, prefix: str) -> None:
        repo = self._repo(repo_id)
        out = []
        for p, f in sorted(repo.files.items()):
            if prefix and not p.startswith(prefix.rstrip("/") + "/"):
                continue
            entry = {"type": "file", "path": p, "size": len(f.data), "oid": git_blob_sha1(f.data)}
            if f.lfs:
                entry["lfs"] = {"oid": f.oid, "size": len(f.data), "pointerSize": 134}
            out.append(entry)
        self._send(200, out)

    def _preupload(self, repo_id: str, payload: dict) -> None:
        repo = self._repo(repo_id, write=True)
        files = []
        for f in payload["files"]:
            sample = base64.b64decode(f["sample"])
            lfs = f["size"] >= LFS_MIN_SIZE or b"\0" in sample
            existing = repo.files.get(f["path"])
            files.append({"path": f["path"], "uploadMode": "lfs" if lfs else "regular", "shouldIgnore": False,
                          "oid": existing.oid if existing and existing.lfs == lfs else None})
        self._send(200, {"files": files, "commitOid": repo.sha})

    def _lfs_batch(self, repo_id: str, payload: dict) -> None:
        self._repo(repo_id, write=True)
        objects = []
        for o in payload["objects"]:
            obj = {"oid": o["oid"], "size": o["size"]}
            if o["oid"] not in self.hub.lfs_blobs:
                obj["actions"] = {"upload": {"href": f"{self.hub.url}/lfs-upload/{o['oid']}"},
                                  "verify": {"href": f"{self.hub.url}/lfs-verify"}}
            objects.append(obj)
        self._send(200, {"transfer": "basic", "objects": objects, "hash_algo": "sha256"})

    def _commit(self, repo_id: str, body: bytes) -> None:
        repo = self._repo(repo_id, write=True)
        lines = [json.loads(line) for line in body.decode().splitlines() if line.strip()]
        header = next(x["value"] for x in lines if x["key"] == "header")
        parent = header.get("parentCommit")
        if parent is not None and parent != repo.sha:
            return self._error(412, f"A commit has happened since. Please refresh and try again (head is {repo.sha})")
        files = dict(repo.files)
        for item in lines:
            key, value = item["key"], item["value"]
            if key == "file":
                files[value["path"]] = StoredFile(base64.b64decode(value["content"]), lfs=False)
            elif key == "lfsFile":
                blob = self.hub.lfs_blobs.get(value["oid"])
                if blob is None:
                    return self._error(422, f"LFS object {value['oid']} was never uploaded")
                files[value["path"]] = StoredFile(blob, lfs=True)
            elif key == "deletedFile":
                files.pop(value["path"], None)
            elif key == "deletedFolder":
                files = {p: f for p, f in files.items() if not p.startswith(value["path"].rstrip("/") + "/")}
        oid = _new_oid(repo)
        repo.commits.append(Commit(oid, header.get("summary", ""), header.get("description", ""), files))
        self._send(200, {"success": True, "commitOid": oid, "commitUrl": f"{self.hub.url}/{repo_id}/commit/{oid}",
                         "pullRequestUrl": None})

    def _resolve(self, repo_id: str, path: str, head: bool) -> None:
        repo = self._repo(repo_id)
        f = repo.files.get(path)
        if f is None:
            return self._send(404, {"error": "Entry not found"}, {"X-Error-Code": "EntryNotFound"}, head=head)
        self._send(200, f.data, {"X-Repo-Commit": repo.sha, "ETag": f'"{f.oid}"'}, head=head)


class _Stop(Exception):
    """An error response was already sent."""
