"""The CLI as a client of the server that owns an index: search, classify, stats, check and classify-file over HTTP.

The answers are the server's own result documents, parsed into the same models the local commands print, so
a command prints the same thing whether it ran locally or through the server. Only the standard library is
used here (no torch, no HTTP client import cost): a command through a server starts in a fraction of a second.
"""

from __future__ import annotations

import fcntl
import json
import mimetypes
import os
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

from indexer.errors import BadInput, IndexLocked, IndexMissing, SoundsiftError
from indexer.ownership import LOCK_NAME, describe_owner
from search.core.requests import ClassifyArchiveOptions, ClassifyFileOptions, SearchOptions
from search.core.results import ClassifyResponse, ClassifyRow, FileClassification, SearchResponse

NDJSON = "application/x-ndjson"


class ServerUnreachable(SoundsiftError):
    """The server a command was to go through did not answer."""


class ServerError(SoundsiftError):
    """The server answered a request with an error."""


def serving_owner(index_dir: Path) -> str | None:
    """The URL of the server that owns ``index_dir`` now, or None (no owner, an owner without an API, or a stale note).

    The owner note outlives a killed server; the lock does not: a note counts only while its lock is held.
    """
    url = describe_owner(index_dir).get("url")
    if not url:
        return None
    try:
        fd = os.open(index_dir / LOCK_NAME, os.O_RDWR)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return url.rstrip("/")  # held exclusively: the server is there
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


class RemoteIndex:
    """An index behind ``url`` (``soundsift serve``), answering as ``SoundIndex`` does."""

    def __init__(self, url: str, api_key: str | None = None, timeout_s: float = 600.0):
        self.url = url.rstrip("/")
        self.api_key = api_key
        self.timeout_s = timeout_s

    def __enter__(self) -> RemoteIndex:
        return self

    def __exit__(self, *exc) -> None:
        return None  # one request per call: nothing is held open between calls

    # -- transport ---------------------------------------------------------------------------
    def _open(
        self, path: str, body: bytes | None = None, content_type: str | None = None, accept: str = "application/json"
    ):
        headers = {"Accept": accept}
        if self.api_key:
            headers["X-API-Key"] = self.api_key
        if content_type:
            headers["Content-Type"] = content_type
        request = urllib.request.Request(
            self.url + path, data=body, headers=headers, method="POST" if body is not None else "GET"
        )
        try:
            return urllib.request.urlopen(request, timeout=self.timeout_s)
        except urllib.error.HTTPError as exc:
            raise self._http_error(exc) from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", None) or exc
            raise ServerUnreachable(
                f"the server at {self.url} did not answer ({reason}); is `soundsift serve` running there?"
            ) from None

    def _http_error(self, exc: urllib.error.HTTPError) -> SoundsiftError:
        """The one map from the server's error answers to the errors a command prints."""
        try:
            detail = json.loads(exc.read()).get("detail")
        except (ValueError, AttributeError, OSError):
            detail = exc.reason
        if isinstance(detail, list):  # a request the server's schema refused: name the first field
            first = detail[0] if detail else {}
            detail = f"{'.'.join(str(x) for x in first.get('loc', [])[1:])}: {first.get('msg', '')}".strip(": ")
        if exc.code == 401:
            return ServerError(f"the server at {self.url} needs its API key: set SOUNDSIFT_API_KEY or pass --api-key")
        if "/jobs/" in (exc.url or "") and exc.code in (403, 422, 429):  # outside the allowed roots, a bad path, full
            return BadInput(f"the server refused the job: {detail}")
        if exc.code == 422:
            return BadInput(str(detail))
        if exc.code == 404 and "/check" not in (exc.url or ""):
            return IndexMissing(str(detail))
        if exc.code == 409:
            return IndexLocked(str(detail))
        return ServerError(f"the server at {self.url} answered {exc.code}: {detail}")

    def _json(self, path: str, body: dict | None = None):
        data = None if body is None else json.dumps(body, ensure_ascii=False).encode()
        with self._open(path, data, "application/json" if data is not None else None) as response:
            return json.loads(response.read())

    # -- the commands ------------------------------------------------------------------------
    def search(self, queries: list[str], *, options: SearchOptions, extra: dict | None = None) -> SearchResponse:
        """POST /search: the same SearchResponse the local index gives (``extra``: request fields such as like,
        unlike and probe, in the API's form)."""
        body: dict = {
            "queries": list(queries),
            "k": options.k,
            "strict": bool(options.strict),
            "prompt_template": options.prompt_template,
            "localize": options.localize,
        }
        if options.filters is not None and not options.filters.is_empty():
            body["filters"] = options.filters.model_dump(mode="json", exclude_defaults=True)
        if options.fuse:
            body["fuse"] = options.fuse
        body.update(extra or {})
        return SearchResponse.model_validate(self._json("/search", body))

    def iter_classify(
        self, labels: list[str] | str, *, options: ClassifyArchiveOptions
    ) -> tuple[ClassifyResponse, Iterator[ClassifyRow]]:
        """POST /classify streamed as NDJSON: (header, rows), the rows read line by line as they arrive."""
        body: dict = {
            "labels": labels if isinstance(labels, str) else ", ".join(labels),
            "policy": options.policy,
            "by": options.by,
            "top": options.top,
            "threshold": options.threshold,
            "strict": bool(options.strict),
            "prompt_template": options.prompt_template,
        }
        if options.policy_options:
            body["policy_options"] = options.policy_options
        if options.filters is not None and not options.filters.is_empty():
            body["filters"] = options.filters.model_dump(mode="json", exclude_defaults=True)
        if options.probe:  # a probe scores with its own classes
            body["probe"] = options.probe
            body.pop("labels", None)
        if options.label_names is not None:
            body["label_names"] = options.label_names
        response = self._open(
            "/classify", json.dumps(body, ensure_ascii=False).encode(), "application/json", accept=NDJSON
        )
        first = response.readline()
        if not first:
            response.close()
            raise ServerError(f"the server at {self.url} sent no classification")
        header = ClassifyResponse.model_validate({**json.loads(first)["header"], "rows": []})

        def rows() -> Iterator[ClassifyRow]:
            with response:
                for line in response:
                    if line.strip():
                        yield ClassifyRow.model_validate_json(line)

        return header, rows()

    def stats(self) -> dict:
        """GET /stats without what only a server has (its policies and job queue): `soundsift stats`' document."""
        doc = self._json("/stats")
        doc.pop("policies", None)
        doc.pop("jobs", None)
        return doc

    def check(self) -> dict:
        """GET /check: the server audits the index it owns (nothing is changed)."""
        return self._json("/check")

    def classify_file(self, path: Path, labels: str, options: ClassifyFileOptions) -> FileClassification:
        """POST /classify-file with the file uploaded; paths in the answer are the local path, as locally."""
        boundary = uuid.uuid4().hex
        fields = {"labels": labels, "policy": options.policy}
        if options.policy_options:
            fields["policy_options"] = json.dumps(options.policy_options)
        for name, value in (
            ("threshold", options.threshold),
            ("prompt_template", options.prompt_template),
            ("start", options.start),
            ("duration", options.duration),
        ):
            if isinstance(value, (dict, list)):
                fields[name] = json.dumps(value)
            elif value is not None:
                fields[name] = repr(value) if isinstance(value, float) else str(value)
        parts = []
        for name, value in fields.items():
            parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode())
        kind = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        safe_name = path.name.replace('"', "_").replace("\r", "_").replace("\n", "_")
        parts.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{safe_name}"\r\n'
            f"Content-Type: {kind}\r\n\r\n".encode()
        )
        parts.append(path.read_bytes())
        parts.append(f"\r\n--{boundary}--\r\n".encode())
        with self._open("/classify-file", b"".join(parts), f"multipart/form-data; boundary={boundary}") as response:
            result = FileClassification.model_validate_json(response.read())
        result.path = str(path)
        for row in [*result.windows, result.file]:
            row.path = str(path)
        return result

    # -- jobs the server runs for the index it owns ----------------------------------------
    def submit_job(self, kind: str, body: dict) -> dict:
        """POST /jobs/{kind} (index, tag): the job document, queued."""
        return self._json(f"/jobs/{kind}", body)

    def job(self, job_id: str) -> dict:
        """GET /jobs/{id}: the job document now."""
        return self._json(f"/jobs/{job_id}")
