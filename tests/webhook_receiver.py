"""Test support: a real HTTP receiver on 127.0.0.1 that records every POST (headers and body) and can fail or hang."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Receiver:
    """``with Receiver(fail_first=2) as r: ... r.url ... r.posts``; ``delay_s`` makes every answer that late."""

    def __init__(self, fail_first: int = 0, delay_s: float = 0.0, status: int = 200):
        self.fail_first = fail_first
        self.delay_s = delay_s
        self.status = status
        self.posts: list[tuple[dict, bytes]] = []
        self.attempts = 0
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with receiver._lock:
                    receiver.attempts += 1
                    failing = receiver.attempts <= receiver.fail_first
                if receiver.delay_s:
                    time.sleep(receiver.delay_s)
                if failing:
                    self.send_response(503)
                    self.end_headers()
                    return
                with receiver._lock:
                    receiver.posts.append(({k.lower(): v for k, v in self.headers.items()}, body))
                self.send_response(receiver.status)
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> "Receiver":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()

    def documents(self) -> list[dict]:
        with self._lock:
            return [json.loads(body) for _, body in self.posts]

    def unique(self) -> dict[str, dict]:
        """delivery id -> document: what a receiver de-duplicating on X-Soundsift-Delivery keeps."""
        with self._lock:
            return {h["x-soundsift-delivery"]: json.loads(b) for h, b in self.posts}

    def wait_for(self, count: int, timeout_s: float = 60.0) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if len(self.unique()) >= count:
                return True
            time.sleep(0.05)
        return False


def verifies(secret: str, headers: dict, body: bytes) -> bool:
    """The receiver's side of the signature: HMAC-SHA256 of the raw body, compared in constant time."""
    expected = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, headers.get("x-soundsift-signature", ""))
