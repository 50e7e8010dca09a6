"""The one mapping of pydantic validation errors to OpenAI's 400s (models/requests.py), as the
Files, Uploads and Batches request models use it."""
from __future__ import annotations

from typing import Annotated

import pytest
from pydantic import AfterValidator, BaseModel

from batchgate import errors
from batchgate.contract import error_envelope
from batchgate.domain import uploads
from batchgate.models.requests import parse_request, rejected
from batchgate.models.uploads import UploadCreateRequest

UPLOAD = {"filename": "a.jsonl", "purpose": "batch", "bytes": 1, "mime_type": "application/jsonl"}


def _error(model, data, **kw) -> errors.InvalidRequest:
    with pytest.raises(errors.InvalidRequest) as caught:
        parse_request(model, data, **kw)
    return caught.value


def test_a_body_that_is_not_an_object_names_the_body():
    err = _error(UploadCreateRequest, [1])
    assert (err.param, err.code, err.message) == (
        "body", "invalid_type", "Invalid type for 'body': expected an object, but got an array instead.")


def test_strict_reaches_nested_models_so_text_is_not_a_number():
    # POST /v1/uploads is JSON: "3600" is a string, also inside expires_after (whose model is lax,
    # because multipart forms of POST /v1/files carry numbers as text).
    body = {**UPLOAD, "expires_after": {"anchor": "created_at", "seconds": "3600"}}
    err = _error(UploadCreateRequest, body, strict=True)
    assert (err.param, err.code, err.message) == (
        "expires_after.seconds", "invalid_type",
        "Invalid type for 'expires_after.seconds': expected an integer, but got a string instead.")


def test_the_uploads_api_validates_nested_values_strictly():
    class NoStore:
        def create(self, record):
            pytest.fail("stored an invalid upload")

    with pytest.raises(errors.InvalidRequest) as caught:
        uploads.create_upload(NoStore(), "t1", {**UPLOAD, "expires_after": {"anchor": "created_at",
                                                                             "seconds": "3600"}})
    assert (caught.value.param, caught.value.code) == ("expires_after.seconds", "invalid_type")


def test_query_strings_report_type_errors_as_values():
    class Query(BaseModel):
        limit: int

    err = _error(Query, {"limit": "ten"}, values_only=True)
    assert (err.param, err.code) == ("limit", "invalid_value")


def _refuse(value: str) -> str:
    raise rejected("string_above_max_length", "Invalid '{param}': text with {braces} kept as is.", at=value)


class Tagged(BaseModel):
    tags: Annotated[str, AfterValidator(_refuse)]


def test_a_rejected_rule_keeps_its_code_and_message_verbatim_and_extends_the_param():
    err = _error(Tagged, {"tags": "k{code}"})
    assert (err.status, err.param, err.code, err.message) == (
        400, "tags.k{code}", "string_above_max_length", "Invalid '{param}': text with {braces} kept as is.")


@pytest.mark.parametrize("error", [errors.InvalidRequest("m", param="p", code="c"), errors.Unauthorized(),
                                   errors.NotFound("m"), errors.Conflict("m"), errors.PayloadTooLarge("m"),
                                   errors.TooManyRequests("m"), errors.ServerError("m")])
def test_every_api_error_answers_in_the_one_envelope(error):
    assert error.envelope() == error_envelope(error.message, type=error.type, param=error.param, code=error.code)
    assert list(error.envelope()["error"]) == ["message", "type", "param", "code"]
