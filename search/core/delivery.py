"""Delivery of alerts from the outbox: webhooks (signed, retried with backoff), an NDJSON file, a command on stdin.

A `Deliverer` thread runs beside indexing in the process that owns the index (the CLI run, the server). It
reads due deliveries, sends each outside any transaction, then marks it delivered; a failure is marked
failing with its error and retried after a growing pause. A kill between sending and marking sends it
again with the same delivery id (``delivery_id`` in the body, ``X-Soundsift-Delivery``): at-least-once,
and a receiver that de-duplicates on the id sees each alert once.
"""

from __future__ import annotations

import fcntl
import hashlib
import hmac
import json
import os
import shlex
import subprocess
import threading
import time
import urllib.error
import urllib.request
from typing import Any

from indexer import crashpoints
from indexer.watch_store import AlertRow, PendingDelivery, WatchStore

BACKOFF_MAX_S = 300.0
USER_AGENT = "soundsift-webhook/1"


def window_link(base_url: str | None, alert: AlertRow) -> str | None:
    """The page's view of the alert's window (its file, seeked to the window)."""
    if not base_url:
        return None
    return f"{base_url.rstrip('/')}/#file={alert.file_id}&window={alert.window_id}&t={alert.start:g}"


def alert_document(alert: AlertRow, base_url: str | None = None) -> dict[str, Any]:
    """The JSON every target receives for one alert."""
    return {
        "delivery_id": alert.delivery_id,
        "alert_id": alert.id,
        "watch": alert.watch,
        "path": alert.path,
        "start": alert.start,
        "end": alert.end,
        "score": alert.score,
        "label": alert.label,
        "window_id": alert.window_id,
        "file_id": alert.file_id,
        "run_id": alert.run_id,
        "time": alert.created_at,
        "link": window_link(base_url, alert),
    }


def signature(secret: str, body: bytes) -> str:
    """``sha256=<hex HMAC-SHA256 of the body>``, as GitHub signs webhooks (X-Hub-Signature-256)."""
    return "sha256=" + hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


def post_webhook(url: str, secret: str | None, body: bytes, delivery_id: str, timeout_s: float) -> None:
    """One POST; raises OSError (or HTTPError) unless the receiver answers 2xx within ``timeout_s``."""
    headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT, "X-Soundsift-Delivery": delivery_id}
    if secret:
        headers["X-Soundsift-Signature"] = signature(secret, body)
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    with urllib.request.urlopen(request, timeout=timeout_s) as response:  # noqa: S310 - an http(s) URL, checked at add
        response.read()


def append_ndjson(path: str, document: dict) -> None:
    """Append one line with one write under an exclusive lock, then fsync: readers never see half a line."""
    line = (json.dumps(document, ensure_ascii=False) + "\n").encode("utf-8")
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        written = os.write(fd, line)
        if written != len(line):
            raise OSError(f"short write to {path}")
        os.fsync(fd)
    finally:
        os.close(fd)


def run_command(command: str, body: bytes, delivery_id: str, timeout_s: float) -> None:
    """Run ``command`` with the alert's JSON on stdin; a non-zero exit or a timeout is a failed delivery."""
    env = {**os.environ, "SOUNDSIFT_DELIVERY_ID": delivery_id}
    done = subprocess.run(
        shlex.split(command), input=body, capture_output=True, timeout=timeout_s, env=env, check=False
    )
    if done.returncode != 0:
        tail = done.stderr.decode("utf-8", "replace").strip().splitlines()[-1:] or [""]
        raise OSError(f"exit status {done.returncode}{': ' + tail[0] if tail[0] else ''}")


def send(target: str, config: Any, document: dict, timeout_s: float) -> None:
    """Deliver one alert document to one target (raises on failure)."""
    body = json.dumps(document, ensure_ascii=False).encode("utf-8")
    if target == "webhook":
        post_webhook(config["url"], config.get("secret"), body, document["delivery_id"], timeout_s)
    elif target == "ndjson":
        append_ndjson(str(config), document)
    elif target == "exec":
        run_command(str(config), body, document["delivery_id"], timeout_s)
    else:
        raise ValueError(f"unknown delivery target {target!r}")


def describe_error(exc: BaseException) -> str:
    if isinstance(exc, urllib.error.HTTPError):
        return f"HTTP {exc.code} {exc.reason}"
    if isinstance(exc, urllib.error.URLError):
        return f"cannot reach the receiver: {exc.reason}"
    if isinstance(exc, subprocess.TimeoutExpired):
        return f"timed out after {exc.timeout:g} s"
    if isinstance(exc, TimeoutError):
        return "timed out"
    return f"{type(exc).__name__}: {exc}".strip()


class Deliverer:
    """Delivers due alerts in a daemon thread until stopped; `finish` drains what it can within a time limit."""

    def __init__(
        self,
        store,
        timeout_s: float = 10.0,
        backoff_s: float = 1.0,
        base_url: str | None = None,
        poll_s: float = 0.25,
    ):
        self.watches = WatchStore(store)
        self.timeout_s = timeout_s
        self.backoff_s = backoff_s
        self.base_url = base_url
        self.poll_s = poll_s
        self.sent = 0
        self.failures = 0
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._idle = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> "Deliverer":
        self._thread = threading.Thread(target=self._loop, name="soundsift-deliver", daemon=True)
        self._thread.start()
        return self

    def wake(self) -> None:
        """Look at the outbox now (a commit just wrote alerts)."""
        self._wake.set()

    def deliver_due(self) -> int:
        """Send every delivery due now, once; returns how many went out."""
        sent = 0
        while not self._stop.is_set():
            due = self.watches.pending(time.time(), limit=100)
            if not due:
                break
            for item in due:
                if self._stop.is_set():
                    break
                sent += self._deliver(item)
        return sent

    def _deliver(self, item: PendingDelivery) -> int:
        targets = self.watches.targets_of(item.watch_id)
        config = (targets or {}).get(item.target)
        if not config:
            self.watches.failed(
                item.alert.id, item.target, "the watch no longer has this target", time.time() + BACKOFF_MAX_S
            )
            return 0
        try:
            send(item.target, config, alert_document(item.alert, self.base_url), self.timeout_s)
        except Exception as exc:  # noqa: BLE001 - any failure of a target is recorded and retried
            self.failures += 1
            pause = min(BACKOFF_MAX_S, self.backoff_s * (2 ** min(item.attempts, 16)))
            self.watches.failed(item.alert.id, item.target, describe_error(exc), time.time() + pause)
            return 0
        crashpoints.reached("deliver")  # sent, not yet marked: a kill here sends it again, same id
        self.watches.delivered(item.alert.id, item.target, time.time())
        self.sent += 1
        return 1

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.deliver_due()
            except Exception:  # noqa: BLE001 - the store closed under us, or a transient read error
                if self._stop.is_set():
                    return
            self._idle.set()
            self._wake.wait(self.poll_s)
            self._wake.clear()
            self._idle.clear()

    def finish(self, limit_s: float) -> int:
        """Keep delivering for up to ``limit_s`` while anything is due within it, then stop; returns what is left."""
        deadline = time.monotonic() + max(0.0, limit_s)
        while time.monotonic() < deadline:
            try:
                nxt = self.watches.next_due()
            except Exception:  # noqa: BLE001
                break
            if nxt is None or nxt > time.time() + (deadline - time.monotonic()):
                break  # nothing left, or the next retry falls after the limit
            self.wake()
            time.sleep(min(self.poll_s, max(0.0, deadline - time.monotonic())))
        self.stop(wait_s=max(0.0, deadline - time.monotonic()))
        try:
            return self.watches.undelivered()
        except Exception:  # noqa: BLE001
            return -1

    def stop(self, wait_s: float = 0.0) -> None:
        """Stop the thread; a send in flight is abandoned after ``wait_s`` (it stays pending, same id next time)."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(wait_s)


def deliverer_for(sx, base_url: str | None = None) -> Deliverer:
    """A deliverer for an open index, timed by its settings; links point at ``base_url`` (else the configured server)."""
    s = sx.settings
    if base_url is None:
        host = "127.0.0.1" if s.host in ("0.0.0.0", "", "::") else s.host
        base_url = f"http://{host}:{s.port}"
    return Deliverer(sx.store, timeout_s=s.delivery_timeout_s, backoff_s=s.delivery_backoff_s, base_url=base_url)
