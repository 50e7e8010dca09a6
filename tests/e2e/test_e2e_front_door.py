"""The local API Gateway stand-in, on a small hand-written template (no moto, no CDK): routing from
the template, the REQUEST authorizer, binary bodies, size limits, answers turned back into HTTP."""
from __future__ import annotations

import base64
import json

import pytest

from batchgate.local.front_door import ApiModel, FrontDoor
from batchgate.local.lambdas import InvokeResult, error_payload

ROOT = {"Fn::GetAtt": ["Api", "RootResourceId"]}
URI = lambda fn: {"Fn::Join": ["", ["arn:", {"Ref": "AWS::Partition"}, ":apigateway:", {"Ref": "AWS::Region"},  # noqa: E731
                                    ":lambda:path/2015-03-31/functions/", {"Fn::GetAtt": [fn, "Arn"]}, "/invocations"]]}


def _resource(parent, part):
    return {"Type": "AWS::ApiGateway::Resource", "Properties": {"ParentId": parent, "PathPart": part,
                                                                "RestApiId": {"Ref": "Api"}}}


def _method(resource, verb, fn="FilesFn", auth=True):
    props = {"HttpMethod": verb, "ResourceId": resource, "RestApiId": {"Ref": "Api"},
             "Integration": {"Type": "AWS_PROXY", "IntegrationHttpMethod": "POST", "Uri": URI(fn)}}
    if auth:
        props.update(AuthorizationType="CUSTOM", AuthorizerId={"Ref": "Authz"})
    return {"Type": "AWS::ApiGateway::Method", "Properties": props}


TEMPLATE = {
    "Api": {"Type": "AWS::ApiGateway::RestApi", "Properties": {"BinaryMediaTypes": ["multipart/form-data"]}},
    "FilesFn": {"Type": "AWS::Lambda::Function", "Properties": {}},
    "AuthFn": {"Type": "AWS::Lambda::Function", "Properties": {}},
    "Authz": {"Type": "AWS::ApiGateway::Authorizer", "Properties": {
        "Type": "REQUEST", "IdentitySource": "method.request.header.Authorization", "AuthorizerUri": URI("AuthFn")}},
    "V1": _resource(ROOT, "v1"),
    "Files": _resource({"Ref": "V1"}, "files"),
    "File": _resource({"Ref": "Files"}, "{file_id}"),
    "Content": _resource({"Ref": "File"}, "content"),
    "FilesGet": _method({"Ref": "Files"}, "GET"),
    "FilesPost": _method({"Ref": "Files"}, "POST"),
    "FileGet": _method({"Ref": "File"}, "GET"),
    "ContentGet": _method({"Ref": "Content"}, "GET"),
    "Unauth": {"Type": "AWS::ApiGateway::GatewayResponse", "Properties": {
        "ResponseType": "UNAUTHORIZED", "StatusCode": "401",
        "ResponseTemplates": {"application/json": '{"error":{"message":"nope $context.requestId","type":"x",'
                                                  '"param":null,"code":"invalid_api_key"}}'}}},
}


class FakeLambdas:
    """Records events; the authorizer allows `Bearer good` as tenant t1."""

    def __init__(self):
        self.events: list[tuple[str, dict]] = []
        self.answer = None

    def invoke(self, name, event):
        self.events.append((name, event))
        if name == "AuthFn":
            if event["headers"].get("Authorization") != "Bearer good":
                return InvokeResult(error_payload(Exception("Unauthorized")), error=True)
            return InvokeResult({"principalId": "k", "context": {"tenant": "t1"}, "policyDocument": {
                "Statement": [{"Effect": "Allow", "Action": "execute-api:Invoke", "Resource": event["methodArn"]}]}})
        if self.answer is not None:
            return InvokeResult(self.answer)
        return InvokeResult({"statusCode": 200, "headers": {"Content-Type": "application/json"},
                             "body": json.dumps({"ok": True})})


@pytest.fixture
def door():
    lambdas = FakeLambdas()
    return FrontDoor(ApiModel(TEMPLATE), lambdas), lambdas


def _call(door, method, path, body=b"", headers=None):
    front, _ = door
    hdrs = [("Authorization", "Bearer good"), *(headers or {}).items()]
    return front.handle(method, path, hdrs, body)


def test_routes_come_from_the_template(door):
    status, _, body = _call(door, "GET", "/v1/files/file-abc/content?x=1&x=2")

    _, lambdas = door
    name, event = lambdas.events[-1]
    assert status == 200 and json.loads(body) == {"ok": True}
    assert name == "FilesFn"
    assert event["resource"] == "/v1/files/{file_id}/content"
    assert event["pathParameters"] == {"file_id": "file-abc"}
    assert event["multiValueQueryStringParameters"] == {"x": ["1", "2"]}
    assert event["queryStringParameters"] == {"x": "2"}
    assert event["requestContext"]["authorizer"]["tenant"] == "t1"
    assert event["requestContext"]["resourcePath"] == "/v1/files/{file_id}/content"


def test_unknown_route_and_method_are_404(door):
    assert _call(door, "GET", "/v1/nothing")[0] == 404
    assert _call(door, "DELETE", "/v1/files")[0] == 404


def test_bad_or_missing_key_is_401_from_the_gateway_response(door):
    front, lambdas = door

    status, headers, body = front.handle("GET", "/v1/files", [("Authorization", "Bearer bad")], b"")
    missing = front.handle("GET", "/v1/files", [], b"")

    assert status == 401 and json.loads(body)["error"]["code"] == "invalid_api_key"
    assert "$context" not in body.decode()
    assert missing[0] == 401
    assert [n for n, _ in lambdas.events] == ["AuthFn"]  # no key: the authorizer is not even called
    assert any(k == "x-request-id" for k, _ in headers)


def test_binary_media_types_arrive_base64(door):
    _call(door, "POST", "/v1/files", b"\x00\xffdata", {"Content-Type": "multipart/form-data; boundary=x"})
    binary = door[1].events[-1][1]
    _call(door, "POST", "/v1/files", b'{"a": 1}', {"Content-Type": "application/json"})
    text = door[1].events[-1][1]

    assert binary["isBase64Encoded"] is True and base64.b64decode(binary["body"]) == b"\x00\xffdata"
    assert text["isBase64Encoded"] is False and text["body"] == '{"a": 1}'


def test_request_over_lambda_limit_is_413_naming_uploads(door):
    body = b"x" * (4 * 1024 * 1024 + 700 * 1024)  # fits API Gateway, not Lambda once base64-encoded

    status, _, answer = _call(door, "POST", "/v1/files", body, {"Content-Type": "multipart/form-data; boundary=x"})

    assert status == 413
    assert "Uploads API" in json.loads(answer)["error"]["message"]
    assert [n for n, _ in door[1].events] == ["AuthFn"]


def test_request_over_api_gateway_limit_is_413(door):
    status, _, answer = _call(door, "POST", "/v1/files", b"x" * (10 * 1024 * 1024 + 1))

    assert status == 413 and "Uploads API" in json.loads(answer)["error"]["message"]


def test_response_over_lambda_limit_is_502(door):
    door[1].answer = {"statusCode": 200, "body": "x" * (6 * 1024 * 1024 + 10)}

    status, _, answer = _call(door, "GET", "/v1/files")

    assert status == 502 and json.loads(answer)["error"]["type"] == "server_error"


def test_base64_answers_and_headers_are_decoded(door):
    door[1].answer = {"statusCode": 302, "isBase64Encoded": True, "body": base64.b64encode(b"\x01\x02").decode(),
                      "headers": {"Location": "http://127.0.0.1:1/x"},
                      "multiValueHeaders": {"Set-Cookie": ["a=1", "b=2"]}}

    status, headers, body = _call(door, "GET", "/v1/files")

    assert status == 302 and body == b"\x01\x02"
    assert ("Location", "http://127.0.0.1:1/x") in headers
    assert [v for k, v in headers if k == "Set-Cookie"] == ["a=1", "b=2"]
    assert any(k == "x-request-id" for k, _ in headers)


def test_handler_crash_is_502(door):
    front, lambdas = door
    lambdas.invoke = lambda name, event: (InvokeResult({"principalId": "k", "context": {"tenant": "t"},
                                                        "policyDocument": {"Statement": [{"Effect": "Allow"}]}})
                                          if name == "AuthFn" else InvokeResult(error_payload(ValueError("x")), True))

    assert _call(door, "GET", "/v1/files")[0] == 502


def test_error_payload_names_engine_errors_for_step_functions():
    class Cancelled(Exception):
        error_name = "Batch.Cancelled"

    assert error_payload(Cancelled("stop"))["errorType"] == "Batch.Cancelled"
    assert error_payload(KeyError("k"))["errorType"] == "KeyError"
