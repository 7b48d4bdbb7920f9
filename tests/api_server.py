"""Test support for the HTTP API: a small indexed archive and the real app on uvicorn at 127.0.0.1:<ephemeral port>."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import httpx
import uvicorn

from indexer.settings import Settings, load_settings
from search.demo_audio import synthesize, write_audio

ARCHIVE = [  # (relative path, kind, seconds, seed)
    ("line1/tone-a.wav", "tone", 25.0, 1),
    ("line1/noise-b.flac", "noise", 12.0, 2),
    ("line2/轴承异响.wav", "tone", 6.0, 3),
    ("line2/chirp.ogg", "noise", 14.0, 4),
]


def write_archive(root: Path, files=ARCHIVE) -> Path:
    for rel, kind, seconds, seed in files:
        write_audio(root / rel, synthesize(kind, seconds, 48_000, seed), 48_000)
    return root


def api_settings(index_dir: Path, model_dir: Path, **overrides) -> Settings:
    values = dict(index=index_dir, model=str(model_dir), device="cpu", decode_workers=1)
    values.update(overrides)
    return load_settings(**values)


def build_index(settings: Settings, paths: list[Path]) -> None:
    from search.sound_index import SoundIndex

    with SoundIndex.open(settings.index, settings=settings, create=True) as sx:
        sx.index([str(p) for p in paths], progress=False)


class LiveServer:
    """The app served by a real uvicorn in a thread, on a socket bound before start (port 0: ephemeral)."""

    def __init__(self, app, host: str = "127.0.0.1"):
        from search.http.server import bind_socket

        self.app = app
        self.sock = bind_socket(host, 0)
        self.url = f"http://{host}:{self.sock.getsockname()[1]}"
        self.server = uvicorn.Server(
            uvicorn.Config(app, log_level="warning", lifespan="on", timeout_graceful_shutdown=5)
        )
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    def __enter__(self) -> "LiveServer":
        self.thread.start()
        # Until it listens or its thread ends: no deadline of its own (the test's timeout is the hang guard).
        while not self.server.started:
            if not self.thread.is_alive():
                raise RuntimeError("the server did not start")
            time.sleep(0.02)
        return self

    def client(self, **kwargs) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=60, **kwargs)

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(30)


# Debian's chromium for the page tests, headless, with nothing reaching outside this machine.
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--autoplay-policy=no-user-gesture-required",
]


def wait_until(predicate, poll_s: float = 0.1):
    """Poll ``predicate`` until it returns something true, and return that.

    No deadline of its own: how long the work takes depends on the machine's load, so the test's pytest timeout
    (a hang guard, see pyproject.toml) is the only bound.
    """
    while not (value := predicate()):
        time.sleep(poll_s)
    return value


def job_done(http: httpx.Client, job_id: str) -> dict:
    """A server job's info once it is no longer queued or running."""
    return wait_until(
        lambda: (info := http.get(f"/jobs/{job_id}").json())["status"] not in ("queued", "running") and info
    )
