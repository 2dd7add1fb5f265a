"""A small stand-in for the Hugging Face Hub, served on 127.0.0.1, for testing ``embkit.hub``.

It answers the endpoints that the installed ``huggingface_hub`` client really calls (read from its
source: ``file_download.py``, ``hf_api.py``, ``_snapshot_download.py``, ``_commit_api.py``), with the
headers and JSON shapes the client checks:

- ``GET /api/models/{repo}[/revision/{rev}]``: repo info (``sha``, ``siblings``, ``gated``);
- ``GET /api/models/{repo}/tree/{rev}[/{path}]``: file listing (``type``, ``oid``, ``size``, ``lfs``);
- ``HEAD|GET /{repo}/resolve/{rev}/{path}``: small files answered directly with ``ETag`` (the git blob
  id), ``X-Repo-Commit`` and ``Content-Length``; "LFS" files (binary extensions) answered with a 302
  ``Location`` to a second server on another port (the "CDN", which the client does not follow with
  its auth header) plus ``X-Linked-Etag`` (the sha256) and ``X-Linked-Size``;
- ``GET /cdn/{sha256}``: the bytes, honouring ``Range`` (206 + ``Content-Range``), so resumes work;
- errors as the Hub sends them: 404 + ``X-Error-Code: RepoNotFound | RevisionNotFound | EntryNotFound``,
  401/403 + ``X-Error-Code: GatedRepo`` for gated files without an accepted token;
- upload: ``POST /api/repos/create``, ``POST /api/validate-yaml``, ``POST /api/models/{repo}/preupload/{rev}``
  (every file "regular": the server decides, and small files are regular on the real Hub too),
  ``POST /api/models/{repo}/commit/{rev}`` (NDJSON, base64 content; ``?create_pr=1`` opens a pull request:
  the commit lands on a new ``refs/pr/N`` and the answer carries ``pullRequestUrl``),
  ``POST /api/models/{repo}/branch/{branch}`` (``startingPoint``; 409 when it exists), ``GET /api/whoami-v2``;
- dataset repos (``add_repo(..., repo_type="dataset")``) under ``/api/datasets/…`` and ``/datasets/{repo}/resolve/…``.

Faults can be injected: ``interrupt(repo, path, mode)`` makes downloads of a file close the connection
mid-body, once (the client resumes with a Range request) or always (the client gives up).
Every request is logged in ``state.log`` for tests to assert on.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import socket
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

#: Extensions stored "in LFS": served through the CDN redirect, as the Hub does for binary files.
LFS_EXTENSIONS = (".safetensors", ".bin", ".pt", ".ckpt", ".pth", ".png", ".webp")
#: Tokens the fake Hub accepts: read access to gated repos, and write access for uploads.
READ_TOKEN = "hf_reader"
WRITE_TOKEN = "hf_writer"
USER = "tester"


def run_client(hub: "HubServer", code: str, hf_home, *, cwd=None, timeout: float = 120):
    """Run ``code`` in a fresh Python pointed at ``hub`` (no HF_* settings of the caller's),
    with its Hub cache in ``hf_home``; asserts it succeeded and returns the finished process."""
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    env.update(HF_ENDPOINT=hub.endpoint, HF_HOME=str(hf_home))
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=cwd, timeout=timeout)
    assert proc.returncode == 0, proc.stderr
    return proc


def git_blob_oid(data: bytes) -> str:
    """The id git gives a blob: sha1 of ``blob <size>\\0<data>``."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def lfs_pointer(data: bytes) -> bytes:
    """The pointer file git-lfs commits in place of the content."""
    sha = hashlib.sha256(data).hexdigest()
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha}\nsize {len(data)}\n".encode()


def is_lfs(path: str) -> bool:
    return path.lower().endswith(LFS_EXTENSIONS)


@dataclass
class Repo:
    """A model repo: commits (sha → {path: bytes}), refs (branch or tag → sha), access settings."""

    repo_id: str
    commits: dict[str, dict[str, bytes]] = field(default_factory=dict)
    refs: dict[str, str] = field(default_factory=dict)
    gated: bool = False
    private: bool = False
    messages: list[str] = field(default_factory=list)

    def resolve(self, rev: str) -> str | None:
        if rev in self.refs:
            return self.refs[rev]
        if rev in self.commits:
            return rev
        return None


@dataclass
class HubState:
    """Everything the fake Hub knows; shared by both servers and readable by tests."""

    repos: dict[str, Repo] = field(default_factory=dict)
    blobs: dict[str, bytes] = field(default_factory=dict)  # sha256 → content (the "CDN")
    interrupts: dict[str, str] = field(default_factory=dict)  # sha256 → "once" | "always"
    log: list[dict] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    counter: int = 0

    def commit(self, repo_id: str, files: dict[str, bytes], *, branch: str = "main", message: str = "commit",
               base: bool = True) -> str:
        """Add a commit on ``branch`` (files merged over the branch's current tree when ``base``)."""
        with self.lock:
            repo = self.repos.setdefault(repo_id, Repo(repo_id))
            tree = dict(repo.commits.get(repo.refs.get(branch, ""), {})) if base else {}
            tree.update(files)
            self.counter += 1
            sha = hashlib.sha1(f"{repo_id}:{branch}:{self.counter}:{message}".encode()).hexdigest()
            repo.commits[sha] = tree
            repo.refs[branch] = sha
            repo.messages.append(message)
            for path, data in files.items():
                if is_lfs(path):
                    self.blobs[hashlib.sha256(data).hexdigest()] = data
            return sha


class HubServer:
    """The two servers (Hub and CDN) on 127.0.0.1, started in daemon threads."""

    def __init__(self) -> None:
        self.state = HubState()
        self.hub = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self, "hub"))
        self.cdn = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self, "cdn"))
        self.hub.daemon_threads = self.cdn.daemon_threads = True
        self.threads = [threading.Thread(target=s.serve_forever, daemon=True) for s in (self.hub, self.cdn)]

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.hub.server_address[1]}"

    @property
    def cdn_endpoint(self) -> str:
        return f"http://127.0.0.1:{self.cdn.server_address[1]}"

    def start(self) -> "HubServer":
        for t in self.threads:
            t.start()
        return self

    def stop(self) -> None:
        for s in (self.hub, self.cdn):
            s.shutdown()
            s.server_close()

    # -- helpers for tests ---------------------------------------------------------------------------
    def add_repo(self, repo_id: str, files: dict[str, bytes], *, gated: bool = False, message: str = "initial",
                 repo_type: str = "model") -> str:
        """Create a repo (a model, or a dataset) holding ``files`` on ``main``; returns the commit sha."""
        key = repo_key(repo_id, repo_type)
        sha = self.state.commit(key, files, message=message)
        self.state.repos[key].gated = gated
        return sha

    def tag(self, repo_id: str, name: str, sha: str) -> None:
        self.state.repos[repo_id].refs[name] = sha

    def interrupt(self, repo_id: str, path: str, mode: str = "once") -> None:
        """Make downloads of an LFS file break mid-body: ``once`` (then serve), or ``always``."""
        repo = self.state.repos[repo_id]
        data = repo.commits[repo.refs["main"]][path]
        self.state.interrupts[hashlib.sha256(data).hexdigest()] = mode

    def files(self, repo_id: str, rev: str = "main", repo_type: str = "model") -> dict[str, bytes]:
        repo = self.state.repos[repo_key(repo_id, repo_type)]
        return dict(repo.commits[repo.resolve(rev)])

    def requests(self, method: str | None = None, contains: str = "") -> list[dict]:
        return [r for r in self.state.log if (method is None or r["method"] == method) and contains in r["path"]]


REPO = r"(?P<repo>[\w.\-]+/[\w.\-]+)"
#: ``/api/models/…`` or ``/api/datasets/…``; file URLs of datasets start with ``/datasets/``.
KIND = r"(?P<kind>models|datasets)"


def repo_key(repo_id: str, repo_type: str = "model") -> str:
    """Where a repo lives in ``HubState.repos``: models by id, datasets as ``datasets/<id>``."""
    return repo_id if repo_type == "model" else f"{repo_type}s/{repo_id}"


def _handler(server: HubServer, role: str):
    state = server.state

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, fmt, *args):  # keep pytest output clean
            pass

        # -- plumbing ----------------------------------------------------------------------------------
        def _record(self) -> None:
            with state.lock:
                state.log.append({
                    "method": self.command,
                    "path": self.path,
                    "role": role,
                    "auth": self.headers.get("Authorization"),
                    "range": self.headers.get("Range"),
                })

        def _body(self) -> bytes:
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                chunks = []
                while True:
                    size = int(self.rfile.readline().strip().split(b";")[0], 16)
                    if size == 0:
                        self.rfile.readline()
                        break
                    chunks.append(self.rfile.read(size))
                    self.rfile.readline()
                return b"".join(chunks)
            return self.rfile.read(int(self.headers.get("Content-Length") or 0))

        def _send(self, status: int, body: bytes = b"", headers: dict | None = None, *, ctype: str = "application/json") -> None:
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def _json(self, status: int, obj, headers: dict | None = None) -> None:
            self._send(status, json.dumps(obj).encode(), headers)

        def _error(self, status: int, code: str, message: str, headers: dict | None = None) -> None:
            h = {"X-Error-Code": code, "X-Error-Message": message, **(headers or {})}
            self._json(status, {"error": message}, h)

        def _token(self) -> str | None:
            auth = self.headers.get("Authorization") or ""
            return auth[7:] if auth.startswith("Bearer ") else None

        def _repo(self, repo_id: str) -> Repo | None:
            repo = state.repos.get(repo_id)
            if repo is None:
                self._error(404, "RepoNotFound", "Repository not found")
            return repo

        def _commit(self, repo: Repo, rev: str) -> str | None:
            sha = repo.resolve(rev)
            if sha is None:
                self._error(404, "RevisionNotFound", f"Invalid rev id: {rev}")
            return sha

        # -- dispatch ------------------------------------------------------------------------------------
        def do_HEAD(self):
            self._record()
            self._route()

        def do_GET(self):
            self._record()
            self._route()

        def do_POST(self):
            self._record()
            self._route()

        def _route(self) -> None:
            # Always drain the request body: a leftover body would corrupt the next request on a kept-alive connection.
            self.body = self._body() if self.command == "POST" else b""
            url = urlsplit(self.path)
            path = url.path  # matched as sent: a quoted revision (refs%2Fpr%2F1) is one path segment
            query = parse_qs(url.query)
            if role == "cdn":
                m = re.fullmatch(r"/cdn/(?P<sha>[0-9a-f]{64})", path)
                return self._cdn(m.group("sha")) if m else self._error(404, "NotFound", "no such blob")
            routes = [
                ("GET", r"/api/whoami-v2", self._whoami),
                ("POST", r"/api/repos/create", self._create_repo),
                ("POST", r"/api/validate-yaml", lambda: self._json(200, {"errors": [], "warnings": []})),
                ("GET", rf"/api/{KIND}/{REPO}/tree/(?P<rev>[^/]+)(?:/(?P<sub>.*))?", self._tree),
                ("GET", rf"/api/{KIND}/{REPO}(?:/revision/(?P<rev>[^/]+))?", self._info),
                ("POST", rf"/api/{KIND}/{REPO}/preupload/(?P<rev>[^/]+)", self._preupload),
                ("POST", rf"/api/{KIND}/{REPO}/commit/(?P<rev>[^/]+)", self._commit_files),
                ("POST", rf"/api/{KIND}/{REPO}/branch/(?P<branch>[^/]+)", self._create_branch),
                ("HEAD", rf"/(?:(?P<kind>datasets)/)?{REPO}/resolve/(?P<rev>[^/]+)/(?P<file>.+)", self._resolve),
                ("GET", rf"/(?:(?P<kind>datasets)/)?{REPO}/resolve/(?P<rev>[^/]+)/(?P<file>.+)", self._resolve),
            ]
            for method, pattern, fn in routes:
                m = re.fullmatch(pattern, path)
                if method == self.command and m:
                    kwargs = {k: unquote(v) if v else v for k, v in m.groupdict().items()}
                    kind = kwargs.pop("kind", None)
                    if kind == "datasets":
                        kwargs["repo"] = repo_key(kwargs["repo"], "dataset")
                    if fn in (self._tree, self._commit_files):
                        kwargs["query"] = query
                    return fn(**kwargs)
            self._error(404, "NotFound", f"fake hub has no route for {self.command} {path}")

        # -- read endpoints ------------------------------------------------------------------------------
        def _whoami(self):
            if self._token() not in (READ_TOKEN, WRITE_TOKEN):
                return self._error(401, "Unauthorized", "Invalid credentials in Authorization header")
            self._json(200, {"type": "user", "name": USER, "orgs": [], "auth": {"type": "access_token"}})

        def _info(self, repo: str, rev: str | None = None):
            r = self._repo(repo)
            if r is None:
                return
            sha = self._commit(r, rev or "main")
            if sha is None:
                return
            self._json(200, {
                "id": repo.removeprefix("datasets/"), "modelId": repo, "author": repo.split("/")[0], "sha": sha, "private": r.private,
                "gated": "auto" if r.gated else False, "disabled": False, "tags": [], "downloads": 0, "likes": 0,
                "lastModified": "2024-01-01T00:00:00.000Z",
                "siblings": [{"rfilename": p} for p in sorted(r.commits[sha])],
            })

        def _tree(self, repo: str, rev: str, sub: str | None = None, query: dict | None = None):
            r = self._repo(repo)
            if r is None:
                return
            sha = self._commit(r, rev)
            if sha is None:
                return
            recursive = (query or {}).get("recursive", ["false"])[0].lower() == "true"
            prefix = (sub.strip("/") + "/") if sub else ""
            entries, folders = [], set()
            for p, data in sorted(r.commits[sha].items()):
                if not p.startswith(prefix):
                    continue
                rest = p[len(prefix):]
                parts = rest.split("/")
                for i in range(1, len(parts)):
                    if recursive or i == 1:
                        folders.add(prefix + "/".join(parts[:i]))
                if not recursive and len(parts) > 1:
                    continue
                entries.append(self._file_entry(p, data))
            dirs = [{"type": "directory", "oid": hashlib.sha1(f.encode()).hexdigest(), "size": 0, "path": f} for f in sorted(folders)]
            self._json(200, dirs + entries)

        @staticmethod
        def _file_entry(path: str, data: bytes) -> dict:
            if is_lfs(path):
                pointer = lfs_pointer(data)
                return {"type": "file", "oid": git_blob_oid(pointer), "size": len(data), "path": path,
                        "lfs": {"oid": hashlib.sha256(data).hexdigest(), "size": len(data), "pointerSize": len(pointer)}}
            return {"type": "file", "oid": git_blob_oid(data), "size": len(data), "path": path}

        def _resolve(self, repo: str, rev: str, file: str):
            r = self._repo(repo)
            if r is None:
                return
            sha = self._commit(r, rev)
            if sha is None:
                return
            if r.gated and self._token() != READ_TOKEN:
                status = 403 if self._token() else 401
                return self._error(status, "GatedRepo", f"Access to model {repo} is restricted. You must have access to it and be authenticated to access it. Please log in.")
            tree = r.commits[sha]
            if file not in tree:
                return self._error(404, "EntryNotFound", f"{file} does not exist on \"{rev}\"", {"X-Repo-Commit": sha})
            data = tree[file]
            common = {"X-Repo-Commit": sha, "Accept-Ranges": "bytes"}
            if is_lfs(file):
                digest = hashlib.sha256(data).hexdigest()
                headers = {**common, "ETag": f'"{git_blob_oid(lfs_pointer(data))}"', "X-Linked-Etag": f'"{digest}"',
                           "X-Linked-Size": str(len(data)), "Location": f"{server.cdn_endpoint}/cdn/{digest}"}
                return self._send(302, b"", headers)
            self._ranged(data, {**common, "ETag": f'"{git_blob_oid(data)}"'}, ctype="text/plain; charset=utf-8")

        def _cdn(self, digest: str):
            data = state.blobs.get(digest)
            if data is None:
                return self._error(404, "NotFound", "no such blob")
            mode = state.interrupts.get(digest)
            if mode and self.command == "GET":
                if mode == "once":
                    state.interrupts.pop(digest, None)
                # A resumed request (Range) of an "always" file gets no bytes at all, so the client's
                # retry counter runs down instead of being reset by progress.
                cut = 0 if self.headers.get("Range") else len(data) // 2
                return self._cut(data, cut)
            self._ranged(data, {"ETag": f'"{digest}"'}, ctype="application/octet-stream")

        def _ranged(self, data: bytes, headers: dict, *, ctype: str):
            rng = self.headers.get("Range")
            m = re.fullmatch(r"bytes=(\d+)-(\d*)", rng or "")
            if m and self.command == "GET":
                start = int(m.group(1))
                end = int(m.group(2)) if m.group(2) else len(data) - 1
                if start >= len(data):
                    return self._send(416, b"", {"Content-Range": f"bytes */{len(data)}"})
                return self._send(206, data[start:end + 1], {**headers, "Content-Range": f"bytes {start}-{end}/{len(data)}"}, ctype=ctype)
            self._send(200, data, headers, ctype=ctype)

        def _cut(self, data: bytes, cut: int):
            """Announce the whole body, send ``cut`` bytes of it, and drop the connection."""
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data[:cut])
            self.wfile.flush()
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

        # -- write endpoints -----------------------------------------------------------------------------
        def _writer(self) -> bool:
            if self._token() != WRITE_TOKEN:
                self._error(401, "Unauthorized", "Invalid credentials in Authorization header")
                return False
            return True

        def _writable(self, repo_id: str) -> Repo | None:
            """The repo a write request names, after the token check (None: the error is sent)."""
            return self._repo(repo_id) if self._writer() else None

        def _create_repo(self):
            payload = json.loads(self.body or b"{}")
            if not self._writer():
                return
            repo_id = f"{payload.get('organization') or USER}/{payload['name']}"
            if repo_id in state.repos:
                # The Hub's 409 carries the repo url too: create_repo(exist_ok=True) reads it.
                msg = "You already created this model repo"
                return self._json(409, {"error": msg, "url": f"{server.endpoint}/{repo_id}"}, {"X-Error-Message": msg})
            with state.lock:
                repo = state.repos[repo_id] = Repo(repo_id, private=payload.get("visibility") == "private" or bool(payload.get("private")))
            state.commit(repo_id, {".gitattributes": b"*.safetensors filter=lfs diff=lfs merge=lfs -text\n"}, message="initial commit")
            repo.created = payload  # type: ignore[attr-defined]
            self._json(200, {"url": f"{server.endpoint}/{repo_id}", "name": repo_id, "id": repo_id})

        def _preupload(self, repo: str, rev: str):
            payload = json.loads(self.body or b"{}")
            r = self._writable(repo)
            if r is None:
                return
            tree = r.commits.get(r.resolve(rev) or "", {})
            files = []
            for f in payload.get("files", []):
                old = tree.get(f["path"])
                files.append({"path": f["path"], "uploadMode": "regular", "shouldIgnore": False,
                              "oid": git_blob_oid(old) if old is not None else None})
            self._json(200, {"files": files, "commitOid": r.resolve(rev)})

        def _create_branch(self, repo: str, branch: str):
            payload = json.loads(self.body or b"{}")
            r = self._writable(repo)
            if r is None:
                return
            if branch in r.refs:
                return self._error(409, "Conflict", f"Reference already exists: refs/heads/{branch}")
            start = r.resolve(payload.get("startingPoint") or "main")
            if start is None:
                return self._error(404, "RevisionNotFound", f"Invalid rev id: {payload.get('startingPoint')}")
            r.refs[branch] = start
            self._json(200, {})

        def _commit_files(self, repo: str, rev: str, query: dict | None = None):
            body = self.body
            r = self._writable(repo)
            if r is None:
                return
            if r.resolve(rev) is None:
                return self._error(404, "RevisionNotFound", f"Invalid rev id: {rev}")
            pr_url = None
            if (query or {}).get("create_pr", ["0"])[0] in ("1", "true", "True"):
                # a pull request is a ref refs/pr/N starting at the base revision; the commit lands there
                with state.lock:
                    number = 1 + sum(1 for ref in r.refs if ref.startswith("refs/pr/"))
                    r.refs[f"refs/pr/{number}"] = r.resolve(rev)
                pr_url = f"{server.endpoint}/{repo}/discussions/{number}"
                rev = f"refs/pr/{number}"
            header, files = {}, {}
            for line in body.splitlines():
                if not line.strip():
                    continue
                item = json.loads(line)
                if item["key"] == "header":
                    header = item["value"]
                elif item["key"] == "file":
                    value = item["value"]
                    files[value["path"]] = base64.b64decode(value["content"])
                else:
                    return self._error(400, "BadRequest", f"fake hub does not support {item['key']} operations")
            sha = state.commit(repo, files, branch=rev, message=header.get("summary", ""))
            self._json(200, {"success": True, "commitOid": sha, "commitUrl": f"{server.endpoint}/{repo}/commit/{sha}",
                             **({"pullRequestUrl": pr_url} if pr_url else {})})

    return Handler


def main() -> None:  # pragma: no cover - manual use: python tests/hub_server.py
    """Serve an empty fake Hub and print its endpoint (export it as HF_ENDPOINT)."""
    srv = HubServer().start()
    print(f"HF_ENDPOINT={srv.endpoint}  (cdn {srv.cdn_endpoint}); Ctrl-C to stop", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        srv.stop()


if __name__ == "__main__":  # pragma: no cover
    main()
