"""`soundsift serve`: bind, take ownership of the index, and run the app on uvicorn (one worker, no reload)."""

from __future__ import annotations

import ipaddress
import socket
import sys
import threading

from indexer.errors import BadInput
from indexer.settings import Settings


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening socket on host:port (port 0: an ephemeral one); bound before the index is opened so its URL is known."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise BadInput(
            f"cannot listen on {host}:{port}: {exc.strerror or exc}; pick another --port or --host"
        ) from None
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def public_url(host: str, port: int) -> str:
    """The URL a local client (the CLI's job handoff) uses to reach this server."""
    if host in ("0.0.0.0", ""):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def run_server(
    settings: Settings, reindex_every: str | None = None, reindex_paths: list[str] | None = None, follow: bool = False
) -> None:
    """Serve the API and the web page until interrupted; re-index every ``reindex_every`` (e.g. '1h') if given."""
    import uvicorn

    from search.http.app import create_app
    from search.http.jobs import parse_interval
    from search.sound_index import SoundIndex

    try:
        interval = parse_interval(reindex_every) if reindex_every else None
    except ValueError as exc:
        raise BadInput(f"--reindex-every: {exc}") from None
    if settings.ray:  # re-index jobs decode and embed there: join the cluster now, so a bad address fails at start
        from indexer.ray_pipeline import connect

        connect(settings.ray)
    sock = bind_socket(settings.host, settings.port)
    url = public_url(settings.host, sock.getsockname()[1])
    try:
        # Opened here rather than in lifespan so a second server gets a one-line error naming the owner.
        sound_index = SoundIndex.open(settings.index, settings=settings, create=True, role="serve", url=url)
    except BaseException:
        sock.close()
        raise
    # The model is loaded: write the ONNX text tower now if it is missing, beside the requests (readers then need no torch).
    threading.Thread(target=sound_index.write_exports, name="soundsift-exports", daemon=True).start()
    app = create_app(
        settings,
        sound_index=sound_index,
        url=url,
        reindex_every_s=interval,
        reindex_paths=reindex_paths,
        follow_paths=(reindex_paths or []) if follow else None,
    )
    if not settings.api_key and not _is_loopback(settings.host):
        print(
            f"warning: listening on {settings.host} without an API key; set --api-key or SOUNDSIFT_API_KEY",
            file=sys.stderr,
            flush=True,
        )
    print(
        f"soundsift: serving {url} (index {settings.index}){f', re-index every {reindex_every}' if interval else ''}",
        file=sys.stderr,
        flush=True,
    )
    config = uvicorn.Config(
        app,
        workers=1,
        reload=False,
        lifespan="on",
        log_level="warning",
        server_header=False,
        timeout_graceful_shutdown=10,
    )
    uvicorn.Server(config).run(sockets=[sock])
