"""The local stand-in for API Gateway (REST, Lambda proxy integration, REQUEST authorizer).

moto's API Gateway cannot proxy HTTP to Lambda, so this small server does what API Gateway does for
the deployed template: route by the template's Resources and Methods, run the template's REQUEST
authorizer, build the proxy event (base64 for the RestApi's binary media types), invoke the function
in-process, turn its answer back into HTTP, and enforce the same size limits.
"""
from __future__ import annotations

import base64
import json
import re
import threading
import time
import uuid
from dataclasses import dataclass
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from batchgate.domain.files import uploads_hint
from batchgate_local.lambdas import InProcessLambdas
from batchgate.observability import logger

API_GATEWAY_MAX_BODY = 10 * 1024 * 1024     # API Gateway request payload quota
LAMBDA_MAX_PAYLOAD = 6 * 1024 * 1024         # synchronous invoke request/response quota (6,291,456)
# Local mode's own 413s say what API Gateway's and the handlers' say: the Uploads API, in HTTP terms.
UPLOADS_HINT = uploads_hint(4 * 1024 * 1024)
PARTS_HINT = "Upload parts must fit one Lambda request. " + UPLOADS_HINT
UNAUTHORIZED_ENVELOPE = {"error": {"message": "Incorrect API key provided.", "type": "invalid_request_error",
                                   "param": None, "code": "invalid_api_key"}}


def _hint(path: str) -> str:
    return PARTS_HINT if path.startswith("/v1/uploads/") else UPLOADS_HINT


def envelope(message: str, type_: str = "invalid_request_error", code: str | None = None,
             param: str | None = None) -> dict:
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


# ---------------------------------------------------------------------------------------------------
# The route table, read from the template

@dataclass(frozen=True)
class Route:
    method: str            # GET, POST, ... or ANY
    resource: str          # "/v1/files/{file_id}" as API Gateway names it
    pattern: re.Pattern
    function: str | None   # logical id of the proxy-integrated function (None: not a Lambda proxy)
    authorizer: str | None  # logical id of the authorizer resource (None: open route)

    def match(self, method: str, path: str) -> dict[str, str] | None:
        if self.method not in ("ANY", method):
            return None
        m = self.pattern.fullmatch(path)
        return None if m is None else {k: unquote(v) for k, v in m.groupdict().items()}


@dataclass(frozen=True)
class AuthorizerSpec:
    logical_id: str
    function: str           # logical id of the authorizer function
    identity_headers: tuple[str, ...]
    type: str               # REQUEST | TOKEN


@dataclass(frozen=True)
class GatewayResponse:
    status: int
    body: str | None
    headers: dict[str, str]


class ApiModel:
    """Everything the front door needs from the template: routes, authorizers, binary media types
    and gateway responses."""

    def __init__(self, resources: dict[str, dict]):
        self.resources = resources
        rest_apis = [lid for lid, r in resources.items() if r["Type"] == "AWS::ApiGateway::RestApi"]
        if len(rest_apis) != 1:
            raise ValueError(f"local mode serves exactly one RestApi; the template has {rest_apis}")
        self.rest_api = rest_apis[0]
        props = resources[self.rest_api].get("Properties", {})
        self.binary_media_types = [t.lower() for t in props.get("BinaryMediaTypes", [])]
        self.authorizers = {lid: self._authorizer(lid, r) for lid, r in resources.items()
                            if r["Type"] == "AWS::ApiGateway::Authorizer"}
        self.gateway_responses = {r["Properties"]["ResponseType"]: self._gateway_response(r)
                                  for r in resources.values() if r["Type"] == "AWS::ApiGateway::GatewayResponse"}
        self.routes = sorted(self._routes(), key=_specificity)

    def _function_of(self, value: Any) -> str | None:
        """The Lambda function an integration/authorizer URI points at (its Fn::GetAtt Arn)."""
        if isinstance(value, dict):
            att = value.get("Fn::GetAtt")
            if isinstance(att, list) and self.resources.get(att[0], {}).get("Type") == "AWS::Lambda::Function":
                return att[0]
            if isinstance(att, str) and self.resources.get(att.split(".")[0], {}).get("Type") == "AWS::Lambda::Function":
                return att.split(".")[0]
            values = value.values()
        elif isinstance(value, list):
            values = value
        else:
            return None
        for v in values:
            found = self._function_of(v)
            if found:
                return found
        return None

    def _authorizer(self, lid: str, res: dict) -> AuthorizerSpec:
        props = res["Properties"]
        function = self._function_of(props.get("AuthorizerUri"))
        if not function:
            raise ValueError(f"authorizer {lid}: cannot find its Lambda function")
        sources = [s.strip() for s in (props.get("IdentitySource") or "").split(",") if s.strip()]
        headers = tuple(s.split("method.request.header.", 1)[1].lower() for s in sources
                        if s.startswith("method.request.header."))
        return AuthorizerSpec(lid, function, headers, props.get("Type", "REQUEST"))

    @staticmethod
    def _gateway_response(res: dict) -> GatewayResponse:
        props = res["Properties"]
        templates = props.get("ResponseTemplates") or {}
        body = templates.get("application/json") or next(iter(templates.values()), None)
        headers = {k.split("method.response.header.", 1)[-1]: str(v).strip("'")
                   for k, v in (props.get("ResponseParameters") or {}).items()}
        return GatewayResponse(int(props.get("StatusCode") or 0), body, headers)

    def _path_of(self, ref: Any) -> str:
        if isinstance(ref, dict) and "Fn::GetAtt" in ref:
            return ""  # RootResourceId
        if isinstance(ref, dict) and "Ref" in ref:
            res = self.resources[ref["Ref"]]["Properties"]
            return f"{self._path_of(res['ParentId'])}/{res['PathPart']}"
        raise ValueError(f"unsupported ResourceId/ParentId {ref!r}")

    def _routes(self) -> list[Route]:
        routes = []
        for lid, res in self.resources.items():
            if res["Type"] != "AWS::ApiGateway::Method":
                continue
            props = res["Properties"]
            resource = self._path_of(props["ResourceId"]) or "/"
            integration = props.get("Integration") or {}
            function = self._function_of(integration.get("Uri")) if integration.get("Type") == "AWS_PROXY" else None
            authorizer = None
            if props.get("AuthorizationType") == "CUSTOM":
                authorizer = props["AuthorizerId"]["Ref"]
            routes.append(Route(props["HttpMethod"].upper(), resource, _pattern(resource), function, authorizer))
        return routes

    def find(self, method: str, path: str) -> tuple[Route, dict[str, str]] | None:
        for route in self.routes:
            params = route.match(method, path)
            if params is not None:
                return route, params
        return None

    def is_binary(self, media_type: str | None) -> bool:
        """Whether a media type matches one of the API's binary media types (`*` is a wildcard in
        them). Requests: their Content-Type decides whether the body reaches Lambda base64-encoded.
        Responses: the request's first Accept value decides whether API Gateway decodes an
        `isBase64Encoded` answer to bytes or passes the base64 text through."""
        return media_type_matches(media_type, self.binary_media_types)

    def decodes_answer_for(self, accept: str | None) -> bool:
        """API Gateway's rule for Lambda proxy answers: only the FIRST Accept value counts. The SDK
        sends `application/binary`; curl and requests send `*/*`; browsers start with `text/html`."""
        return self.is_binary((accept or "").split(",")[0])


def media_type_matches(media_type: str | None, patterns: list[str] | tuple[str, ...]) -> bool:
    """Whether a Content-Type / Accept value matches a binary media type (`*` a wildcard in them)."""
    if not media_type or not media_type.strip():
        return False
    mt = media_type.split(";")[0].strip().lower()
    return any(t == mt or t == "*/*" or (t.endswith("/*") and mt.startswith(t[:-1])) for t in patterns)


def _pattern(resource: str) -> re.Pattern:
    parts = []
    for seg in resource.strip("/").split("/"):
        if not seg:
            continue
        if seg.startswith("{") and seg.endswith("+}"):
            parts.append(f"(?P<{_group(seg[1:-2])}>.+)")
        elif seg.startswith("{") and seg.endswith("}"):
            parts.append(f"(?P<{_group(seg[1:-1])}>[^/]+)")
        else:
            parts.append(re.escape(seg))
    return re.compile("/" + "/".join(parts))


def _group(name: str) -> str:
    if not name.isidentifier():
        raise ValueError(f"path parameter {name!r} is not supported locally")
    return name


def _specificity(route: Route) -> tuple:
    # API Gateway prefers literal segments over {param}, {param} over {proxy+}, a method over ANY.
    segs = route.resource.strip("/").split("/")
    return (tuple(2 if s.endswith("+}") else 1 if s.startswith("{") else 0 for s in segs),
            route.method == "ANY")


# ---------------------------------------------------------------------------------------------------
# The server

class FrontDoor:
    def __init__(self, api: ApiModel, lambdas: InProcessLambdas, host: str = "127.0.0.1", port: int = 0,
                 stage: str = "local", account: str = "123456789012", region: str = "us-east-1",
                 read_timeout: float = 30.0):
        self.api = api
        self.lambdas = lambdas
        self.stage = stage
        self.account = account
        self.region = region
        handler = type("Handler", (_Handler,), {"front_door": self, "timeout": read_timeout})
        self.server = ThreadingHTTPServer((host, port), handler)
        self.server.daemon_threads = True
        self._thread: threading.Thread | None = None
        # On AWS, concurrent requests reach separate Lambda instances. In this one process they
        # would share each handler module's state (the Powertools resolver keeps the current event
        # on its app object), so the front door runs one request per function at a time.
        functions = {r.function for r in api.routes if r.function} | {a.function for a in api.authorizers.values()}
        self._instance_locks = {function: threading.Lock() for function in functions}

    @property
    def port(self) -> int:
        return self.server.server_address[1]

    def start(self) -> None:
        self._thread = threading.Thread(target=self.server.serve_forever, name="batchgate-front-door",
                                        daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        if self._thread:
            self._thread.join(timeout=5)

    # -- request handling ---------------------------------------------------------------------------

    def handle(self, method: str, raw_path: str, headers: list[tuple[str, str]], body: bytes
               ) -> tuple[int, list[tuple[str, str]], bytes]:
        request_id = str(uuid.uuid4())
        split = urlsplit(raw_path)
        path = split.path or "/"
        if len(body) > API_GATEWAY_MAX_BODY:
            return self._error(413, envelope(
                f"Request body too large: {len(body)} bytes; the limit is 10 MB per request. {_hint(path)}",
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
                f"for Lambda, whose limit is {LAMBDA_MAX_PAYLOAD}). {_hint(path)}", code="request_too_large"),
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
        if not any(s.get("Effect") == "Allow" for s in statements) or any(s.get("Effect") == "Deny" for s in statements):
            return self._gateway_or(("ACCESS_DENIED",), 401, UNAUTHORIZED_ENVELOPE, request_id)
        event["requestContext"]["authorizer"] = {**(policy.get("context") or {}),
                                                 "principalId": policy.get("principalId")}
        return None

    def _http_answer(self, answer: Any, request_id: str, decode: bool = True
                     ) -> tuple[int, list[tuple[str, str]], bytes]:
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


class _Refused(Exception):
    """A request the front door answers itself, before any route: bad framing, too big, too slow."""

    def __init__(self, status: int, message: str, code: str | None = None):
        super().__init__(message)
        self.status, self.code = status, code


_DIGITS = re.compile(rb"[0-9]{1,20}")
_HEX = re.compile(rb"[0-9A-Fa-f]{1,16}")


class _Handler(BaseHTTPRequestHandler):
    front_door: FrontDoor
    protocol_version = "HTTP/1.1"  # keep-alive, as the SDK's httpx client expects
    server_version = "batchgate-local"
    timeout = 30.0  # a client that stops sending mid-request frees its thread (the socket's timeout)

    def _read_body(self) -> bytes:
        """The body, framed by Content-Length or chunked encoding, refused as API Gateway would
        refuse it: bad framing is a 400 and a body over 10 MB a 413, decided before reading it."""
        limit = API_GATEWAY_MAX_BODY
        too_large = _Refused(413, f"Request body too large: the limit is 10 MB per request. {_hint(self.path)}",
                             "request_too_large")
        chunked = "chunked" in (self.headers.get("Transfer-Encoding") or "").lower()
        lengths = self.headers.get_all("Content-Length") or []
        if chunked and lengths:
            raise _Refused(400, "A request may not carry both Content-Length and Transfer-Encoding.")
        if chunked:
            chunks, total = [], 0
            while True:
                size_field = self.rfile.readline(1024).split(b";")[0].strip()
                if not _HEX.fullmatch(size_field):
                    raise _Refused(400, "Invalid chunk size in a chunked request body.")
                size = int(size_field, 16)
                if size == 0:
                    while self.rfile.readline(8192).strip():  # trailers
                        pass
                    return b"".join(chunks)
                total += size
                if total > limit:
                    raise too_large
                chunk = self.rfile.read(size)
                if len(chunk) < size:
                    raise _Refused(400, "The request body ended before its declared size.")
                chunks.append(chunk)
                self.rfile.readline(1024)
        if len(set(lengths)) > 1 or any(not _DIGITS.fullmatch(v.strip().encode()) for v in lengths):
            raise _Refused(400, "Invalid Content-Length header.")
        length = int(lengths[0]) if lengths else 0
        if length > limit:
            raise too_large
        body = self.rfile.read(length) if length else b""
        if len(body) < length:
            raise _Refused(400, "The request body ended before its Content-Length.")
        return body

    def _serve(self) -> None:
        try:
            body = self._read_body()
            status, headers, payload = self.front_door.handle(self.command, self.path, list(self.headers.items()),
                                                              body)
        except _Refused as refused:
            # The rest of the body (if any) was not read: the connection cannot carry another request.
            return self._answer_refusal(refused.status, str(refused), refused.code)
        except TimeoutError:
            return self._answer_refusal(408, "The request body did not arrive in time.", "request_timeout")
        except Exception:  # a bug here must not hang the client
            logger.exception("local front door failed")
            status, headers = 500, [("Content-Type", "application/json")]
            payload = json.dumps(envelope("Local front door error", type_="server_error")).encode()
        self._send(status, headers, payload)

    def _send(self, status: int, headers: list[tuple[str, str]], payload: bytes) -> None:
        self.send_response(status)
        for k, v in headers:
            if k.lower() not in ("content-length", "transfer-encoding", "connection"):
                self.send_header(k, v)
        self.send_header("Content-Length", str(len(payload)))
        if self.close_connection:
            self.send_header("Connection", "close")
        try:
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(payload)
        except (BrokenPipeError, ConnectionResetError):  # the client gave up waiting; nothing to tell it
            self.close_connection = True

    def _answer_refusal(self, status: int, message: str, code: str | None = None) -> None:
        self.close_connection = True
        request_id = f"req_{uuid.uuid4().hex}"
        body = json.dumps(envelope(message, code=code)).encode()
        self._send(status, [("Content-Type", "application/json"), ("x-request-id", request_id)], body)

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """http.server's own refusals (a request line over 64 KB: 414, a header line over 64 KB or
        more than 100 headers: 431, a malformed request line: 400) in OpenAI's error envelope instead
        of HTML. A malformed HTTP version is a 400, as the AWS edge answers it, not a 505."""
        text = {414: "Request URI too long.", 431: "Request header fields too large."}.get(
            code, f"Bad request: {message or 'the request could not be parsed'}.")
        if not getattr(self, "command", None):
            self.command = "GET"  # http.server had not parsed one; any value but HEAD sends the body
        if self.request_version in ("", "HTTP/0.9"):
            self.request_version = "HTTP/1.1"  # a status line and headers, whatever the client sent
        self._answer_refusal(code if 400 <= code < 500 else 400, text)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _serve

    def __getattr__(self, name: str):
        # Any other method (TRACE, QUERY, ...) reaches the route table too, as on API Gateway, which
        # answers a method it has no route for as an unknown route (404), not with http.server's 501.
        if name.startswith("do_"):
            return self._serve
        raise AttributeError(name)

    def log_message(self, format: str, *args: Any) -> None:  # quiet: the SDK user sees the answers
        logger.debug("front door: " + format, *args)
