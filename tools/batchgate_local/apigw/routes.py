"""The REST API as the synthesized template declares it: its routes (Resources and Methods, with their
Lambda proxy integrations and authorizers), its REQUEST/TOKEN authorizers, its binary media types and
its gateway responses. Read once at start; the gateway (gateway.py) consults it per request."""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote


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

    def _is_function(self, logical_id: str) -> bool:
        return self.resources.get(logical_id, {}).get("Type") == "AWS::Lambda::Function"

    def _function_of(self, value: Any) -> str | None:
        """The Lambda function an integration/authorizer URI points at (its Fn::GetAtt Arn)."""
        if isinstance(value, dict):
            att = value.get("Fn::GetAtt")
            if isinstance(att, list) and self._is_function(att[0]):
                return att[0]
            if isinstance(att, str) and self._is_function(att.split(".")[0]):
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
        for res in self.resources.values():
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
        # API Gateway routes `/thing/` to the `/thing` resource (the event's `path` keeps the slash).
        path = path.rstrip("/") or "/"
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
