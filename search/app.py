"""Older name of the HTTP API module, kept so ``from search.app import create_app`` keeps working."""

from search.http.routes.classify import NDJSON  # noqa: F401
from search.http.routes.deps import decode_cursor, encode_cursor, require_api_key  # noqa: F401
from search.http_api import *  # noqa: F401,F403
from search.http_api import STATUS_OF, VERSION, WEB_DIR, create_app  # noqa: F401
