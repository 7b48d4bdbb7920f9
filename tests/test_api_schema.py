"""Schemathesis against the live server's OpenAPI schema: no request a client can send gives a 5xx."""

from __future__ import annotations

import itertools

import pytest
import schemathesis
from api_server import LiveServer, api_settings, build_index, write_archive
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

KEY = "schema-test-key"


@pytest.fixture(scope="module")
def live(tmp_path_factory, tiny_model_dir):
    from search.http.app import create_app

    root = tmp_path_factory.mktemp("schema")
    archive = write_archive(root / "archive")
    settings_ = api_settings(root / "index", tiny_model_dir, api_key=KEY, max_upload_mb=1.0)
    build_index(settings_, [archive])
    with LiveServer(create_app(settings_)) as server:
        yield server


@pytest.fixture(scope="module")
def api_schema(live):
    schema = schemathesis.openapi.from_url(f"{live.url}/openapi.json", headers={"X-API-Key": KEY})
    # Random paths would make the server index (or evaluate) whatever they name ("/", "."): jobs are covered in
    # test_api.py, evaluation in test_eval_api.py.
    return schema.exclude(method="POST", path="/jobs/index").exclude(method="POST", path="/eval")


def test_no_request_gives_a_server_error(api_schema, live):
    # Driven by hand (not schema.parametrize): one bounded Hypothesis run per operation.
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) >= 10
    failures: list[str] = []
    for operation, mode in itertools.product(operations, (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)):

        @settings(
            max_examples=10, deadline=None, derandomize=True, database=None, suppress_health_check=list(HealthCheck)
        )
        @given(case=operation.as_strategy(generation_mode=mode))
        def check(case):
            response = case.call(base_url=live.url, headers={"X-API-Key": KEY}, timeout=60)
            if response.status_code >= 500 or (response.status_code == 422 and not response.json().get("detail")):
                failures.append(
                    f"{case.method} {case.formatted_path} {case.query} {str(case.body)[:200]} -> "
                    f"{response.status_code}: {response.text[:300]}"
                )

        try:
            check()
        except Unsatisfiable:  # nothing to get wrong (no parameters, no body): only the positive run applies
            assert mode is GenerationMode.NEGATIVE
    assert failures == []
