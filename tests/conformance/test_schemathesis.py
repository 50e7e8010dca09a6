"""schemathesis drives every documented operation of local mode with generated requests: no 5xx, and
every answer matches the published document (status code, content type, body schema, headers).

Path ids are drawn either from the seeded objects (so the 200 answers of real files, uploads and
batches in every state get checked too) or generated freely (so odd ids meet the 404 path). Bounded
and derandomized: the same requests every run, for the same seeded ids.
"""
from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis import checks
from schemathesis.core.failures import FailureGroup

from .conftest import KEY, chat_lines

pytestmark = pytest.mark.e2e

DOCUMENT = Path(__file__).resolve().parents[2] / "functions" / "batchgate" / "openapi.json"
MAX_EXAMPLES = 50
STATEFUL_EXAMPLES = 15
CHECKS = [checks.not_a_server_error, checks.status_code_conformance, checks.content_type_conformance,
          checks.response_schema_conformance, checks.response_headers_conformance]
AUTH = {"Authorization": f"Bearer {KEY}"}


def _known_or_any(ids: list[str]) -> dict:
    return {"anyOf": [{"type": "string", "enum": ids}, {"type": "string"}]}


def with_seeded_ids(document: dict, seeded, deletable: list[str]) -> dict:
    """The document with id parameters (and the batch input file) drawn from real objects half the
    time. Only this test copy is changed; the published document keeps plain strings. DELETE gets
    files of its own, so the seeded ones outlive this test."""
    doc = copy.deepcopy(document)
    known = {"file_id": seeded.file_ids(), "upload_id": seeded.upload_ids(), "batch_id": seeded.batch_ids()}
    for ops in doc["paths"].values():
        for method, op in ops.items():
            for param in op.get("parameters", []):
                if param["in"] == "path" and param["name"] in known:
                    ids = deletable if method == "delete" else known[param["name"]]
                    param["schema"] = _known_or_any(ids)
    doc["components"]["schemas"]["CreateBatchRequest"]["properties"]["input_file_id"] = _known_or_any(
        [seeded.input_file, seeded.other_file])
    return doc


@pytest.fixture(scope="module")
def deletable(client) -> list[str]:
    return [client.files.create(file=chat_lines(1), purpose="batch").id for _ in range(3)]


@pytest.fixture(scope="module")
def api_schema(local_service, seeded, deletable):
    document = with_seeded_ids(json.loads(DOCUMENT.read_text()), seeded, deletable)
    schema = schemathesis.openapi.from_dict(document)
    schema.config.update(base_url=local_service.base_url, headers=AUTH)
    # The key is a fixed header, not a generated parameter: generated requests reach the handlers.
    schema.config.generation.update(with_security_parameters=False)
    return schema


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@settings(max_examples=MAX_EXAMPLES, derandomize=True, deadline=None, database=None,
          suppress_health_check=list(HealthCheck))
def test_every_operation_conforms(case):
    case.call_and_validate(headers=AUTH, checks=CHECKS, timeout=30)


class _Authorized:
    """State machine mixin: every call carries the key; every answer gets the same checks."""

    def get_call_kwargs(self, case):
        return {"headers": AUTH, "timeout": 30}

    def validate_response(self, response, case, additional_checks=None, **kwargs):
        case.validate_response(response, checks=CHECKS, headers=AUTH, transport_kwargs=kwargs)


def test_linked_flows_conform(api_schema):
    """Stateful: follow the document's links (create a file, then fetch, download or delete it; create
    an upload, then add parts, complete or cancel it; create a batch, then retrieve or cancel it)."""
    flows = type("Flows", (_Authorized, api_schema.as_state_machine()), {})
    flows.run(settings=settings(max_examples=STATEFUL_EXAMPLES, stateful_step_count=5, derandomize=True,
                                deadline=None, database=None, suppress_health_check=list(HealthCheck)))


def test_a_contract_violation_is_caught(local_service, seeded):
    """The checks can fail: against a document that says `bytes` is a string, a real answer is refused."""
    document = json.loads(DOCUMENT.read_text())
    document["components"]["schemas"]["OpenAIFile"]["properties"]["bytes"] = {"type": "string"}
    broken = schemathesis.openapi.from_dict(document)
    broken.config.update(base_url=local_service.base_url)
    case = broken["/files/{file_id}"]["GET"].Case(path_parameters={"file_id": seeded.input_file})

    with pytest.raises(FailureGroup, match="violates schema"):
        case.call_and_validate(headers=AUTH, checks=CHECKS, timeout=30)
