"""POST /v1/batches synchronous checks: each case names its param, code and exact message."""
from __future__ import annotations

import pytest

from batchgate import errors, ids
from batchgate.domain import batches as domain
from batch_fakes import MemoryWorkflow

FILE = "file-" + "A" * 24
OK = {"input_file_id": FILE, "endpoint": "/v1/chat/completions", "completion_window": "24h"}
ENDPOINTS_MSG = ("Supported values are: '/v1/responses', '/v1/chat/completions', '/v1/embeddings', "
                 "'/v1/completions', '/v1/moderations', '/v1/images/generations', '/v1/images/edits', "
                 "and '/v1/videos'.")


def without(name):
    return {k: v for k, v in OK.items() if k != name}


CASES = [
    ("body is an array", [1], "body", "invalid_type",
     "Invalid type for 'body': expected an object, but got an array instead."),
    ("missing input_file_id", without("input_file_id"), "input_file_id", "missing_required_parameter",
     "Missing required parameter: 'input_file_id'."),
    ("null input_file_id", {**OK, "input_file_id": None}, "input_file_id", "missing_required_parameter",
     "Missing required parameter: 'input_file_id'."),
    ("input_file_id a number", {**OK, "input_file_id": 7}, "input_file_id", "invalid_type",
     "Invalid type for 'input_file_id': expected a string, but got an integer instead."),
    ("missing endpoint", without("endpoint"), "endpoint", "missing_required_parameter",
     "Missing required parameter: 'endpoint'."),
    ("endpoint a list", {**OK, "endpoint": ["/v1/embeddings"]}, "endpoint", "invalid_type",
     "Invalid type for 'endpoint': expected a string, but got an array instead."),
    ("unknown endpoint", {**OK, "endpoint": "/v1/invalid"}, "endpoint", "invalid_value",
     f"Invalid value: '/v1/invalid'. {ENDPOINTS_MSG}"),
    ("endpoint without /v1", {**OK, "endpoint": "/chat/completions"}, "endpoint", "invalid_value",
     f"Invalid value: '/chat/completions'. {ENDPOINTS_MSG}"),
    ("missing completion_window", without("completion_window"), "completion_window",
     "missing_required_parameter", "Missing required parameter: 'completion_window'."),
    ("completion_window a number", {**OK, "completion_window": 24}, "completion_window", "invalid_type",
     "Invalid type for 'completion_window': expected a string, but got an integer instead."),
    ("completion_window 1h", {**OK, "completion_window": "1h"}, "completion_window", "invalid_value",
     "Invalid value: '1h'. Supported values are: '24h'."),
    ("completion_window empty", {**OK, "completion_window": ""}, "completion_window", "invalid_value",
     "Invalid value: ''. Supported values are: '24h'."),
    ("metadata a string", {**OK, "metadata": "x"}, "metadata", "invalid_type",
     "Invalid type for 'metadata': expected an object, but got a string instead."),
    ("metadata value an array", {**OK, "metadata": {"tags": ["a"]}}, "metadata.tags", "invalid_type",
     "Invalid type for 'metadata.tags': expected a string, but got an array instead."),
    ("metadata value a number", {**OK, "metadata": {"n": 1}}, "metadata.n", "invalid_type",
     "Invalid type for 'metadata.n': expected a string, but got an integer instead."),
    ("metadata 17 pairs", {**OK, "metadata": {f"k{i}": "v" for i in range(17)}}, "metadata",
     "object_above_max_properties",
     "Invalid 'metadata': too many properties. Expected an object with at most 16 properties, but got "
     "an object with 17 properties instead."),
    ("metadata key 65 chars", {**OK, "metadata": {"k" * 65: "v"}}, "metadata." + "k" * 65,
     "property_name_above_max_length",
     f"Invalid property name in 'metadata': '{'k' * 65}' is too long. Expected a string with maximum "
     "length 64, but got a string with length 65 instead."),
    ("metadata value 513 chars", {**OK, "metadata": {"k": "v" * 513}}, "metadata.k",
     "string_above_max_length",
     "Invalid 'metadata.k': string too long. Expected a string with maximum length 512, but got a "
     "string with length 513 instead."),
    ("output_expires_after a number", {**OK, "output_expires_after": 3600}, "output_expires_after",
     "invalid_type", "Invalid type for 'output_expires_after': expected an object, but got an integer instead."),
    ("output_expires_after without anchor", {**OK, "output_expires_after": {"seconds": 3600}},
     "output_expires_after.anchor", "missing_required_parameter",
     "Missing required parameter: 'output_expires_after.anchor'."),
    ("output_expires_after other anchor",
     {**OK, "output_expires_after": {"anchor": "completed_at", "seconds": 3600}},
     "output_expires_after.anchor", "invalid_value",
     "Invalid value: 'completed_at'. Supported values are: 'created_at'."),
    ("output_expires_after without seconds", {**OK, "output_expires_after": {"anchor": "created_at"}},
     "output_expires_after.seconds", "missing_required_parameter",
     "Missing required parameter: 'output_expires_after.seconds'."),
    ("seconds a string", {**OK, "output_expires_after": {"anchor": "created_at", "seconds": "3600"}},
     "output_expires_after.seconds", "invalid_type",
     "Invalid type for 'output_expires_after.seconds': expected an integer, but got a string instead."),
    ("seconds a boolean", {**OK, "output_expires_after": {"anchor": "created_at", "seconds": True}},
     "output_expires_after.seconds", "invalid_type",
     "Invalid type for 'output_expires_after.seconds': expected an integer, but got a boolean instead."),
    ("seconds below 3600", {**OK, "output_expires_after": {"anchor": "created_at", "seconds": 3599}},
     "output_expires_after.seconds", "integer_below_min_value",
     "Invalid 'output_expires_after.seconds': integer below minimum value. Expected a value >= 3600, "
     "but got 3599 instead."),
    ("seconds above 30 days", {**OK, "output_expires_after": {"anchor": "created_at", "seconds": 2592001}},
     "output_expires_after.seconds", "integer_above_max_value",
     "Invalid 'output_expires_after.seconds': integer above maximum value. Expected a value <= 2592000, "
     "but got 2592001 instead."),
]


@pytest.mark.parametrize(("body", "param", "code", "message"), [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])
def test_given_a_bad_body_when_parsed_then_a_400_names_the_param(body, param, code, message):
    with pytest.raises(errors.InvalidRequest) as caught:
        domain.parse_create(body)
    err = caught.value
    assert (err.status, err.param, err.code, err.message) == (400, param, code, message)
    assert err.envelope()["error"]["type"] == "invalid_request_error"


@pytest.mark.parametrize("endpoint", domain.ENDPOINTS)
def test_every_supported_endpoint_is_accepted(endpoint):
    assert domain.parse_create({**OK, "endpoint": endpoint}).endpoint == endpoint


def test_limits_are_inclusive():
    request = domain.parse_create({
        **OK, "metadata": {f"{i:0>64}": "v" * 512 for i in range(16)},
        "output_expires_after": {"anchor": "created_at", "seconds": 2592000}})
    assert len(request.metadata) == 16
    assert request.output_expires_after_seconds == 2592000
    low = domain.parse_create({**OK, "output_expires_after": {"anchor": "created_at", "seconds": 3600}})
    assert low.output_expires_after_seconds == 3600


def test_null_optionals_are_accepted_and_unknown_params_ignored():
    request = domain.parse_create({**OK, "metadata": None, "output_expires_after": None, "extra": 1})
    assert request.metadata is None and request.output_expires_after_seconds is None


def test_the_first_problem_in_parameter_order_wins():
    with pytest.raises(errors.InvalidRequest) as caught:
        domain.parse_create({"endpoint": "/nope", "completion_window": "1h"})
    assert caught.value.param == "input_file_id"


# -- the input file ------------------------------------------------------------------------------
def test_unknown_file_is_404_and_nothing_is_created(files, batches, workflow):
    with pytest.raises(errors.NotFound) as caught:
        domain.create_batch("t1", OK, files=files, batches=batches, workflow=workflow, now=100,
                            window_seconds=86400)
    assert caught.value.envelope() == {"error": {
        "message": f"No such File object: {FILE}", "type": "invalid_request_error",
        "param": "input_file_id", "code": None}}
    assert batches.items == {} and workflow.started == []


def test_another_tenants_file_is_404(files, batches, workflow):
    files.add("t2", FILE)
    with pytest.raises(errors.NotFound):
        domain.create_batch("t1", OK, files=files, batches=batches, workflow=workflow, now=100,
                            window_seconds=86400)


def test_a_malformed_file_id_is_404_without_a_lookup(files, batches, workflow):
    files.get = lambda *a: pytest.fail("looked up a malformed id")
    with pytest.raises(errors.NotFound) as caught:
        domain.create_batch("t1", {**OK, "input_file_id": "../x"}, files=files, batches=batches,
                            workflow=workflow, now=100, window_seconds=86400)
    assert caught.value.message == "No such File object: ../x"


def test_a_file_with_another_purpose_is_400(files, batches, workflow):
    files.add("t1", FILE, purpose="assistants")
    with pytest.raises(errors.InvalidRequest) as caught:
        domain.create_batch("t1", OK, files=files, batches=batches, workflow=workflow, now=100,
                            window_seconds=86400)
    err = caught.value
    assert (err.status, err.param, err.code) == (400, "input_file_id", "invalid_value")
    assert "'assistants'" in err.message and "purpose 'batch'" in err.message
    assert batches.items == {}


# -- storing and starting --------------------------------------------------------------------------
def test_a_good_request_stores_a_validating_batch_and_starts_its_workflow(files, batches, workflow):
    files.add("t1", FILE)
    item = domain.create_batch("t1", {**OK, "metadata": {"a": "b"}}, files=files, batches=batches,
                               workflow=workflow, now=0x69C3C347, window_seconds=86400)
    assert ids.batch_created_ms(item.id) // 1000 == 0x69C3C347   # the id encodes its creation time
    assert item.status == "validating"
    assert item.expires_at == 0x69C3C347 + 86400
    assert (item.total, item.completed, item.failed) == (0, 0, 0)
    assert item.metadata == {"a": "b"}
    assert batches.get("t1", item.id) == item
    assert workflow.started == [(item.id, "t1")]


def test_when_the_workflow_cannot_start_the_batch_is_failed_and_the_answer_is_500(files, batches):
    files.add("t1", FILE)
    with pytest.raises(errors.ServerError) as caught:
        domain.create_batch("t1", OK, files=files, batches=batches, workflow=MemoryWorkflow(fail_start=True),
                            now=100, window_seconds=86400)
    assert caught.value.status == 500
    (stored,) = batches.items.values()
    assert stored.status == "failed" and stored.failed_at
    assert stored.errors[0]["code"] == "batch_start_failed"


def test_the_same_idempotency_key_returns_the_same_batch(files, batches, workflow):
    files.add("t1", FILE)
    first = domain.create_batch("t1", OK, files=files, batches=batches, workflow=workflow, now=100,
                                window_seconds=86400, idempotency_key="k1")
    again = domain.create_batch("t1", OK, files=files, batches=batches, workflow=workflow, now=101,
                                window_seconds=86400, idempotency_key="k1")
    assert again.id == first.id
    assert len(batches.items) == 1 and len(workflow.started) == 1


def test_an_idempotency_key_reused_with_other_parameters_is_refused(files, batches, workflow):
    files.add("t1", FILE)
    domain.create_batch("t1", OK, files=files, batches=batches, workflow=workflow, now=100,
                        window_seconds=86400, idempotency_key="k1")
    with pytest.raises(errors.InvalidRequest) as caught:
        domain.create_batch("t1", {**OK, "endpoint": "/v1/embeddings"}, files=files, batches=batches,
                            workflow=workflow, now=101, window_seconds=86400, idempotency_key="k1")
    assert caught.value.code == "idempotency_key_reused"
    assert len(batches.items) == 1
