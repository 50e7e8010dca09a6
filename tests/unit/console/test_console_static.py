"""The console's static files as its handler serves them: the three files with their types and a strict
policy, a redirect that keeps the stage prefix, 404 for anything else (no path reaches the disk), 304
on a matching ETag; and the local gateway routing `/thing/` to `/thing` as API Gateway does."""
from __future__ import annotations

import re

import pytest

from batchgate.handlers import console
from batchgate_local.apigw.routes import ApiModel


def _event(path: str, **headers: str) -> dict:
    return {"resource": "/console/{proxy+}", "path": path, "httpMethod": "GET", "headers": headers or None}


class _Context:
    function_name, memory_limit_in_mb, aws_request_id = "console", 256, "req-1"
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:console"


def _get(path: str, **headers: str) -> dict:
    return console.handler(_event(path, **headers), _Context())


@pytest.mark.parametrize(("path", "content_type"), [
    ("/console/", "text/html; charset=utf-8"), ("/console/index.html", "text/html; charset=utf-8"),
    ("/console/app.js", "text/javascript; charset=utf-8"), ("/console/app.css", "text/css; charset=utf-8"),
])
def test_the_files_come_with_their_type_and_a_strict_policy(path, content_type):
    answer = _get(path)
    h = answer["headers"]
    assert answer["statusCode"] == 200 and answer["isBase64Encoded"] is False and answer["body"]
    assert h["Content-Type"] == content_type
    assert h["X-Content-Type-Options"] == "nosniff" and h["Cache-Control"] == "no-cache" and h["ETag"]
    csp = dict(part.strip().split(" ", 1) for part in h["Content-Security-Policy"].split(";"))
    assert csp["default-src"] == "'none'" and csp["script-src"] == "'self'" and csp["connect-src"] == "'self'"
    assert csp["frame-ancestors"] == "'none'" and "unsafe-inline" not in h["Content-Security-Policy"]


def test_the_page_has_no_inline_script_or_style():
    html = (console.STATIC_DIR / "index.html").read_text()
    assert re.findall(r"<script\b[^>]*>", html) == ['<script src="app.js" defer>']
    tags = re.findall(r"<[a-z][^>]*>", html)
    assert "<style" not in html and not [t for t in tags if re.search(r"\s(style|on[a-z]+)=", t)]
    js = (console.STATIC_DIR / "app.js").read_text()
    assert "innerHTML" not in js and "eval(" not in js and "localStorage" not in js and "sessionStorage" not in js


def test_console_without_slash_redirects_relative_so_a_stage_prefix_survives():
    answer = _get("/console")
    assert answer["statusCode"] == 301 and answer["headers"]["Location"] == "console/"


@pytest.mark.parametrize("path", ["/console/nope", "/console/../v1/batches", "/console/%2e%2e/app.js",
                                  "/console/app.js/", "/console/.env", "/console//etc/passwd", "/console/APP.JS",
                                  "/console/" + "a" * 5000])
def test_anything_else_is_a_404_envelope(path):
    answer = _get(path)
    assert answer["statusCode"] == 404 and answer["headers"]["Content-Type"] == "application/json"
    assert '"unknown_url"' in answer["body"] and len(answer["body"]) < 600


def test_a_matching_etag_is_a_304_without_body():
    etag = _get("/console/app.js")["headers"]["ETag"]
    answer = _get("/console/app.js", **{"If-None-Match": f'"other", {etag}'})
    assert answer["statusCode"] == 304 and answer["body"] == ""
    assert _get("/console/app.js", **{"if-none-match": '"stale"'})["statusCode"] == 200


def test_the_local_gateway_routes_a_trailing_slash_like_api_gateway():
    resources = {
        "Api": {"Type": "AWS::ApiGateway::RestApi", "Properties": {}},
        "Console": {"Type": "AWS::ApiGateway::Resource",
                    "Properties": {"ParentId": {"Fn::GetAtt": ["Api", "RootResourceId"]}, "PathPart": "console"}},
        "Proxy": {"Type": "AWS::ApiGateway::Resource",
                  "Properties": {"ParentId": {"Ref": "Console"}, "PathPart": "{proxy+}"}},
        "ConsoleGet": {"Type": "AWS::ApiGateway::Method",
                       "Properties": {"HttpMethod": "GET", "ResourceId": {"Ref": "Console"}}},
        "ProxyGet": {"Type": "AWS::ApiGateway::Method",
                     "Properties": {"HttpMethod": "GET", "ResourceId": {"Ref": "Proxy"}}},
    }
    api = ApiModel(resources)
    assert api.find("GET", "/console")[0].resource == "/console"
    assert api.find("GET", "/console/")[0].resource == "/console"
    route, params = api.find("GET", "/console/app.js")
    assert route.resource == "/console/{proxy+}" and params == {"proxy": "app.js"}
    assert api.find("GET", "/consoles") is None
