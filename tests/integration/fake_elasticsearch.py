"""A FAKE Elasticsearch: no Elasticsearch or OpenSearch can be installed on this machine, so this small
HTTP server replays the responses documented for the snapshot APIs (PUT _snapshot/<repo>,
PUT _snapshot/<repo>/<snap>, GET _snapshot/<repo>/<snap>, POST _snapshot/<repo>/<snap>/_restore — refused
over an open index, as Elasticsearch does), POST <indices>/_close and _cat/indices. It proves our requests and
our handling of the documented answers — NOT that a real cluster snapshots correctly."""
from __future__ import annotations

import http.server
import json
import threading
import uuid
from urllib.parse import urlparse


class FakeElasticsearch:
    def __init__(self, indices: dict[str, int], polls_until_success: int = 2, fail_with: str = "",
                 restore_fails: bool = False):
        self.indices = indices
        self.closed: set[str] = set()
        self.restore_fails = restore_fails  # the restore answers 500 (e.g. a node lost mid-restore)
        self.polls_until_success = polls_until_success
        self.fail_with = fail_with  # e.g. "FAILED": the snapshot ends in that state
        self.requests: list[tuple[str, str, dict]] = []
        self.repos: dict[str, dict] = {}
        self.snapshots: dict[str, dict] = {}
        fake = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def _send(self, code: int, body) -> None:
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _body(self) -> dict:
                n = int(self.headers.get("Content-Length") or 0)
                return json.loads(self.rfile.read(n)) if n else {}

            def _snapshot(self, repo: str, snap: str):
                """The snapshot, or None after answering 404 as Elasticsearch does."""
                s = fake.snapshots.get(f"{repo}/{snap}")
                if not s:
                    self._send(404, {"error": {"type": "snapshot_missing_exception"}, "status": 404})
                return s

            def do_GET(self):
                path = urlparse(self.path).path
                fake.requests.append(("GET", self.path, {}))
                if path == "/_cat/indices":
                    self._send(200, [{"index": k, "docs.count": str(v)} for k, v in fake.indices.items()])
                elif path.startswith("/_snapshot/") and path.count("/") == 3:
                    _, _, repo, snap = path.split("/")
                    s = self._snapshot(repo, snap)
                    if not s:
                        return
                    s["polls"] += 1
                    state = "IN_PROGRESS" if s["polls"] < fake.polls_until_success else (fake.fail_with or "SUCCESS")
                    self._send(200, {"snapshots": [{"snapshot": snap, "uuid": s["uuid"], "state": state,
                                                    "indices": s["indices"], "failures": [], "shards": {
                                                        "total": len(s["indices"]), "failed": 0,
                                                        "successful": len(s["indices"])}}]})
                else:
                    self._send(404, {"error": "no such route in the fake", "status": 404})

            def do_PUT(self):
                path = urlparse(self.path).path
                body = self._body()
                fake.requests.append(("PUT", self.path, body))
                parts = path.strip("/").split("/")
                if parts[0] == "_snapshot" and len(parts) == 2:
                    fake.repos[parts[1]] = body
                    self._send(200, {"acknowledged": True})
                elif parts[0] == "_snapshot" and len(parts) == 3:
                    if parts[1] not in fake.repos:
                        self._send(404, {"error": {"type": "repository_missing_exception"}, "status": 404})
                        return
                    idx = [i for i in fake.indices if not i.startswith(".")]
                    fake.snapshots[f"{parts[1]}/{parts[2]}"] = {"uuid": uuid.uuid4().hex, "indices": idx, "polls": 0,
                                                                "docs": {i: fake.indices[i] for i in idx}}
                    self._send(200, {"accepted": True})
                else:
                    self._send(404, {"error": "no such route in the fake", "status": 404})

            def do_POST(self):
                path = urlparse(self.path).path
                body = self._body()
                fake.requests.append(("POST", self.path, body))
                parts = path.strip("/").split("/")
                if len(parts) == 2 and parts[1] == "_close":
                    names = [n for n in parts[0].split(",") if n in fake.indices]
                    fake.closed.update(names)
                    self._send(200, {"acknowledged": True, "shards_acknowledged": True,
                                     "indices": {n: {"closed": True} for n in names}})
                elif parts[0] == "_snapshot" and len(parts) == 4 and parts[3] == "_restore":
                    s = self._snapshot(parts[1], parts[2])
                    if not s:
                        return
                    wanted = [n for n in body.get("indices", "").split(",") if n] or s["indices"]
                    open_ = [n for n in wanted if n in fake.indices and n not in fake.closed]
                    if open_:
                        self._send(500, {"error": {"type": "snapshot_restore_exception", "reason":
                                         f"cannot restore index [{open_[0]}] because an open index with same name "
                                         "already exists in the cluster"}, "status": 500})
                        return
                    if fake.restore_fails:
                        self._send(500, {"error": {"type": "snapshot_restore_exception", "reason": "node left"},
                                         "status": 500})
                        return
                    for n in wanted:
                        fake.indices[n] = s["docs"][n]
                        fake.closed.discard(n)
                    self._send(200, {"snapshot": {"snapshot": parts[2], "indices": wanted, "shards": {
                        "total": len(wanted), "failed": 0, "successful": len(wanted)}}})
                else:
                    self._send(404, {"error": "no such route in the fake", "status": 404})

            def log_message(self, *a):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self):
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
