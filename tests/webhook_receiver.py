"""A local HTTP receiver standing in for Slack's incoming-webhook endpoint (Slack is not reachable here):
http.server on 127.0.0.1, a free port, in a thread. It records every POSTed JSON body and answers with
a scripted sequence of statuses, or hangs, or trickles its answer a byte at a time."""
from __future__ import annotations

import http.server
import json
import threading
import time
from typing import Optional


class Receiver:
    def __init__(self, statuses: Optional[list[int]] = None, mode: str = "answer", path: str = ""):
        """statuses: answered in order, the last one repeated (default 200). mode: "answer", "hang"
        (accept, read, never answer until stop) or "trickle" (one byte of the answer every 0.5 s).
        path: the webhook's secret path (default: a unique /services/T../B../<hex>)."""
        self.statuses = list(statuses or [200])
        self.mode = mode
        self.got: list[dict] = []
        self.paths: list[str] = []
        self.stopping = threading.Event()
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                outer.got.append(json.loads(body or b"null"))
                outer.paths.append(self.path)
                if outer.mode == "hang":
                    outer.stopping.wait(120)
                    return
                if outer.mode == "trickle":
                    for b in b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok":
                        if outer.stopping.wait(0.5):
                            return
                        self.wfile.write(bytes([b]))
                        self.wfile.flush()
                    return
                status = outer.statuses.pop(0) if len(outer.statuses) > 1 else outer.statuses[0]
                self.send_response(status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.secret_path = path or f"/services/T0SENTINEL/B0SENTINEL/{int(time.time() * 1e6):x}"
        self.url = f"http://127.0.0.1:{self.port}{self.secret_path}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> "Receiver":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stopping.set()
        self.server.shutdown()
        self.server.server_close()

    def texts(self) -> list[str]:
        return [m["text"] for m in self.got]

    def fields(self, i: int = -1) -> dict[str, str]:
        return {f["title"]: f["value"] for f in self.got[i]["attachments"][0]["fields"]}
