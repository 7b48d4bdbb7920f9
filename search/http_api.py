"""The HTTP API's public module path: ``from search.http_api import create_app`` (the app lives in search/http/app.py)."""

from search.http.app import *  # noqa: F401,F403
from search.http.app import STATUS_OF, VERSION, WEB_DIR, create_app  # noqa: F401
