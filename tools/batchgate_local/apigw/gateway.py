"""What API Gateway does with one request to the REST API (Lambda proxy integration, REQUEST/TOKEN
authorizer), given the request's method, path, headers and whole body: the 10 MB payload quota, routing
by the template, the authorizer call, the proxy event (base64 for the binary media types), the
in-process invoke under Lambda's 6 MB quotas, the answer turned back into HTTP (decoded from base64 only
for a binary first Accept value) and the template's gateway responses. No sockets here: server.py
brings the requests."""
from __future__ import annotations

import base64
import json
import re
import threading
import time
import uuid
from email.utils import formatdate
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from batchgate.contract import error_envelope, uploads_hint
from batchgate_local.apigw.routes import ApiModel, Route
from batchgate_local.lambdas import InProcessLambdas

API_GATEWAY_MAX_BODY = 10 * 1024 * 1024     # API Gateway request payload quota
LAMBDA_MAX_PAYLOAD = 6 * 1024 * 1024         # synchronous invoke request/response quota (6,291,456)
# Local mode's own 413s say what API Gateway's and the handlers' say: the Uploads API, in HTTP terms.
UPLOADS_HINT = uploads_hint(4 * 1024 * 1024)
PARTS_HINT = "Upload parts must fit one Lambda request. " + UPLOADS_HINT
UNAUTHORIZED_ENVELOPE = error_envelope("Incorrect API key provided.", code="invalid_api_key")

Answer = tuple[int, list[tuple[str, str]], bytes]   # status, headers, body


def hint(path: str) -> str:
    """What a 413 tells the client to do instead: the Uploads API (smaller parts, for a part)."""
    return PARTS_HINT if path.startswith("/v1/uploads/") else UPLOADS_HINT


def envelope(message: str, type_: str = "invalid_request_error", code: str | None = None,
             param: str | None = None) -> dict:
    return error_envelope(message, type=type_, param=param, code=code)


def refusal(status: int, message: str, code: str | None = None, type_: str = "invalid_request_error") -> Answer:
    """An answer to a request refused before any route (bad framing, too big, too slow), as the edge
    in front of API Gateway gives it: OpenAI's error envelope, a fresh request id."""
    return status, [("Content-Type", "application/json"), ("x-request-id", f"req_{uuid.uuid4().hex}")], \
        json.dumps(envelope(message, type_=type_, code=code)).encode()


def too_large(path: str) -> Answer:
    return refusal(413, f"Request body too large: the limit is 10 MB per request. {hint(path)}",
                   "request_too_large")


class Gateway:
    """API Gateway for one RestApi: `handle` turns one HTTP request into an HTTP answer."""

    def __init__(self, api: ApiModel, lambdas: InProcessLambdas, stage: str = "local",
                 account: str = "123456789012", region: str = "us-east-1"):
        self.api = api
        self.lambdas = lambdas
        self.stage = stage
        self.account = account
        self.region = region
        # On AWS, concurrent requests reach separate Lambda instances. In this one process they
        # would share each handler module's state (the Powertools resolver keeps the current event
        # on its app object), so the gateway runs one request per function at a time.
        functions = {r.function for r in api.routes if r.function} | {a.function for a in api.authorizers.values()}
        self._instance_locks = {function: threading.Lock() for function in functions}

    def handle(self, method: str, raw_path: str, headers: list[tuple[str, str]], body: bytes) -> Answer:
        request_id = str(uuid.uuid4())
        split = urlsplit(raw_path)
        path = split.path or "/"
        if len(body) > API_GATEWAY_MAX_BODY:
            return self._error(413, envelope(
                f"Request body too large: {len(body)} bytes; the limit is 10 MB per request. {hint(path)}",
                code="request_too_large"), request_id)
        found = self.api.find(method, path)
        if found is None:
            return self._gateway_or(("MISSING_AUTHENTICATION_TOKEN", "RESOURCE_NOT_FOUND"), 404, envelope(
                f"Invalid URL ({method} {path})", code="unknown_url"), request_id,
                context={"httpMethod": method, "path": path})
        route, path_params = found
        if route.function is None:
            return 204, [("x-request-id", f"req_{request_id.replace('-', '')}")], b""

        event = self._event(route, method, path, split.query, headers, body, path_params, request_id)
        if route.authorizer:
            denied = self._authorize(route, event)
            if denied:
                return denied
        encoded = json.dumps(event).encode()
        if len(encoded) > LAMBDA_MAX_PAYLOAD:
            return self._error(413, envelope(
                f"Request too large for the API: {len(body)} bytes of body ({len(encoded)} bytes once encoded "
                f"for Lambda, whose limit is {LAMBDA_MAX_PAYLOAD}). {hint(path)}", code="request_too_large"),
                request_id)
        result = self._invoke(route.function, event)
        if result.error:
            return self._error(502, envelope("Internal server error", type_="server_error"), request_id)
        answer = result.payload
        if len(result.payload_bytes()) > LAMBDA_MAX_PAYLOAD:
            return self._error(502, envelope(
                "The response is larger than the 6 MB Lambda response limit.", type_="server_error",
                code="response_too_large"), request_id)
        accept = next((v for k, v in headers if k.lower() == "accept"), None)
        return self._http_answer(answer, request_id, decode=self.api.decodes_answer_for(accept))

    def _event(self, route: Route, method: str, path: str, query: str, headers: list[tuple[str, str]],
               body: bytes, path_params: dict[str, str], request_id: str) -> dict:
        single: dict[str, str] = {}
        multi: dict[str, list[str]] = {}
        for k, v in headers:
            single[k] = v
            multi.setdefault(k, []).append(v)
        qs_single: dict[str, str] = {}
        qs_multi: dict[str, list[str]] = {}
        for k, v in parse_qsl(query, keep_blank_values=True):
            qs_single[k] = v
            qs_multi.setdefault(k, []).append(v)
        content_type = next((v for k, v in headers if k.lower() == "content-type"), None)
        is_binary = self.api.is_binary(content_type)
        if not body:
            text, b64 = None, False
        elif is_binary:
            text, b64 = base64.b64encode(body).decode(), True
        else:
            text, b64 = body.decode("utf-8", errors="replace"), False
        now = time.time()
        source_ip = next((v for k, v in headers if k.lower() == "x-forwarded-for"), "127.0.0.1")
        return {
            "resource": route.resource, "path": path, "httpMethod": method,
            "headers": single or None, "multiValueHeaders": multi or None,
            "queryStringParameters": qs_single or None, "multiValueQueryStringParameters": qs_multi or None,
            "pathParameters": path_params or None, "stageVariables": None,
            "requestContext": {
                "accountId": self.account, "apiId": "local", "stage": self.stage, "requestId": request_id,
                "extendedRequestId": request_id, "resourceId": "local", "resourcePath": route.resource,
                "httpMethod": method, "path": f"/{self.stage}{path}", "protocol": "HTTP/1.1",
                "requestTime": formatdate(now, usegmt=True), "requestTimeEpoch": int(now * 1000),
                "domainName": "127.0.0.1", "domainPrefix": "127",
                "identity": {"sourceIp": source_ip.split(",")[0].strip(),
                             "userAgent": next((v for k, v in headers if k.lower() == "user-agent"), None)},
            },
            "body": text, "isBase64Encoded": b64,
        }

    def _invoke(self, function: str, event: dict):
        with self._instance_locks[function]:
            return self.lambdas.invoke(function, event)

    def _authorize(self, route: Route, event: dict):
        spec = self.api.authorizers[route.authorizer]
        request_id = event["requestContext"]["requestId"]
        lowered = {k.lower(): v for k, v in (event["headers"] or {}).items()}
        # API Gateway answers 401 without calling the authorizer when an identity source is missing.
        if any(not lowered.get(h) for h in spec.identity_headers):
            return self._gateway_or(("UNAUTHORIZED",), 401, UNAUTHORIZED_ENVELOPE, request_id)
        method_arn = (f"arn:aws:execute-api:{self.region}:{self.account}:local/{self.stage}/"
                      f"{event['httpMethod']}{event['path']}")
        if spec.type == "TOKEN":
            auth_event = {"type": "TOKEN", "authorizationToken": lowered[spec.identity_headers[0]],
                          "methodArn": method_arn}
        else:
            auth_event = {"type": "REQUEST", "methodArn": method_arn,
                          **{k: event[k] for k in ("resource", "path", "httpMethod", "headers", "multiValueHeaders",
                                                   "queryStringParameters", "multiValueQueryStringParameters",
                                                   "pathParameters", "stageVariables", "requestContext")}}
        result = self._invoke(spec.function, auth_event)
        if result.error:
            # `raise Exception("Unauthorized")` is the documented way to answer 401; anything else is a 500.
            if result.payload.get("errorMessage") == "Unauthorized":
                return self._gateway_or(("UNAUTHORIZED",), 401, UNAUTHORIZED_ENVELOPE, request_id)
            return self._gateway_or(("AUTHORIZER_FAILURE",), 500, envelope(
                "The server had an error while processing your request.", type_="server_error"), request_id)
        policy = result.payload or {}
        statements = (policy.get("policyDocument") or {}).get("Statement") or []
        effects = {s.get("Effect") for s in statements}
        if "Allow" not in effects or "Deny" in effects:
            return self._gateway_or(("ACCESS_DENIED",), 401, UNAUTHORIZED_ENVELOPE, request_id)
        event["requestContext"]["authorizer"] = {**(policy.get("context") or {}),
                                                 "principalId": policy.get("principalId")}
        return None

    def _http_answer(self, answer: Any, request_id: str, decode: bool = True) -> Answer:
        if not isinstance(answer, dict) or "statusCode" not in answer:
            return self._error(502, envelope("Internal server error", type_="server_error"), request_id)
        headers: list[tuple[str, str]] = []
        seen: set[str] = set()
        for k, values in (answer.get("multiValueHeaders") or {}).items():
            for v in values:
                headers.append((k, str(v)))
            seen.add(k.lower())
        for k, v in (answer.get("headers") or {}).items():
            if k.lower() not in seen:
                headers.append((k, str(v)))
                seen.add(k.lower())
        if "x-request-id" not in seen:
            headers.append(("x-request-id", f"req_{request_id.replace('-', '')}"))
        body = answer.get("body") or ""
        # A base64 answer is decoded only for a request whose first Accept value is a binary media
        # type; anyone else gets the base64 text, as from API Gateway.
        raw = base64.b64decode(body) if answer.get("isBase64Encoded") and decode else body.encode("utf-8")
        return int(answer["statusCode"]), headers, raw

    def _gateway_or(self, types: tuple[str, ...], status: int, default: dict, request_id: str,
                    context: dict[str, str] | None = None):
        """The template's gateway response of the first type it defines (its `$context` variables
        filled in as API Gateway would), else `default`."""
        variables = {"requestId": request_id, "error.messageString": json.dumps(default["error"]["message"]),
                     **(context or {})}
        for t in types:
            gr = self.api.gateway_responses.get(t)
            if gr and gr.body is not None:
                body = re.sub(r"\$context\.([A-Za-z.]+[A-Za-z])",
                              lambda m: variables.get(m.group(1), m.group(0)), gr.body)
                headers = [("Content-Type", "application/json"), *gr.headers.items()]
                return self._with_request_id(gr.status or status, headers, body.encode(), request_id)
        return self._error(status, default, request_id)

    def _error(self, status: int, body: dict, request_id: str):
        return self._with_request_id(status, [("Content-Type", "application/json")], json.dumps(body).encode(),
                                     request_id)

    @staticmethod
    def _with_request_id(status, headers, body, request_id):
        return status, [*headers, ("x-request-id", f"req_{request_id.replace('-', '')}")], body
