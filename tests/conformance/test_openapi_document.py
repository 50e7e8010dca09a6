"""The published OpenAPI document: generated, valid, served without a key, and covering exactly the
routes the API Gateway template serves."""
from __future__ import annotations

import fnmatch
import importlib.util
import json
from pathlib import Path

import httpx
import pytest
import schemathesis

from batchgate import openapi
from infra.constructs.api import OPEN_ROUTES, ROUTES
from infra.paths import FUNCTION_EXCLUDES

ROOT = Path(__file__).resolve().parents[2]
DOCUMENT = ROOT / "functions" / "batchgate" / "openapi.json"


def _generator():
    spec = importlib.util.spec_from_file_location("openapi_build", ROOT / "docs" / "openapi" / "build.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_committed_document_is_the_generator_output():
    gen = _generator()
    assert DOCUMENT.read_text() == gen.render(gen.build()), \
        "functions/batchgate/openapi.json is stale: run .venv/bin/python docs/openapi/build.py"


def test_the_document_is_valid_openapi_3_1():
    document = json.loads(DOCUMENT.read_text())
    schemathesis.openapi.from_dict(document).validate()  # raises on an invalid document
    assert document["openapi"].startswith("3.1")


def test_an_invalid_document_is_refused():
    """The check above can fail."""
    document = json.loads(DOCUMENT.read_text())
    document["paths"]["/batches"]["get"]["responses"] = "nothing"
    with pytest.raises(Exception):
        schemathesis.openapi.from_dict(document).validate()


def test_the_document_covers_exactly_the_served_routes():
    documented = {(f"/v1{path}", method.upper()) for path, ops in json.loads(DOCUMENT.read_text())["paths"].items()
                  for method in ops}
    served = {(f"/v1/{path}", method) for path, methods, _ in [*ROUTES, *OPEN_ROUTES] for method in methods}
    assert documented == served


def test_every_keyed_route_documents_401_and_the_open_one_needs_no_key():
    document = json.loads(DOCUMENT.read_text())
    for path, ops in document["paths"].items():
        for method, op in ops.items():
            if path == "/openapi.json":
                assert op["security"] == []
            else:
                assert "security" not in op and "401" in op["responses"], (method, path)
    assert document["security"] == [{"ApiKeyAuth": []}]


def test_the_handler_serves_the_file():
    assert openapi.document() == json.loads(DOCUMENT.read_text())


def test_served_at_v1_openapi_json_without_a_key(local_service):
    answer = httpx.get(f"{local_service.base_url}/openapi.json")

    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("application/json")
    assert answer.headers["x-request-id"].startswith("req_")
    assert answer.json() == json.loads(DOCUMENT.read_text())


def test_other_routes_still_need_a_key(local_service):
    answer = httpx.get(f"{local_service.base_url}/batches")

    assert answer.status_code == 401
    assert answer.json()["error"]["code"] == "invalid_api_key"


def test_the_document_ships_with_the_lambda_code():
    shipped = "batchgate/openapi.json"
    assert not any(fnmatch.fnmatch(shipped, pattern) or shipped.startswith(pattern.rstrip("*/") + "/")
                   for pattern in FUNCTION_EXCLUDES)


def test_links_name_existing_operations():
    document = json.loads(DOCUMENT.read_text())
    operations = {op["operationId"]: op for ops in document["paths"].values() for op in ops.values()}
    for op in operations.values():
        for link in op["responses"]["200"].get("links", {}).values():
            target = operations[link["operationId"]]
            names = {p["name"] for p in target.get("parameters", [])}
            assert set(link["parameters"]) <= names, link
