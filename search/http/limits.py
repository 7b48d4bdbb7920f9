"""Request body limits enforced while the body streams in (Content-Length or chunked): 413 past the limit."""

from __future__ import annotations

import json

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

JSON_BODY_LIMIT = 1 << 20  # search, classify and jobs bodies are small JSON documents


class BodyTooLarge(HTTPException):
    """Raised from ``receive`` once a body passes its limit; FastAPI re-raises HTTPExceptions untouched."""

    def __init__(self, limit: int):
        super().__init__(413, f"request body larger than the limit of {limit / (1024 * 1024):.1f} MB")


class BodySizeLimit:
    """Counts body bytes as they arrive; uploads (``upload_paths``) get ``max_upload_bytes``, other bodies 1 MB."""

    def __init__(self, app: ASGIApp, upload_paths: set[str], max_upload_bytes: int):
        self.app = app
        self.upload_paths = upload_paths
        self.max_upload_bytes = max_upload_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.max_upload_bytes if scope["path"] in self.upload_paths else JSON_BODY_LIMIT
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await _refuse(send, limit)
            return
        received = 0
        started = False

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(limit)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except BodyTooLarge:
            if not started:  # raised outside FastAPI's handlers (e.g. while Starlette parses a form)
                await _refuse(send, limit)


async def _refuse(send: Send, limit: int) -> None:
    body = json.dumps({"detail": BodyTooLarge(limit).detail}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
