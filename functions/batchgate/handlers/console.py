"""`/console/`: the batch console's static files (index.html, app.js, app.css).

Public like any static page (no authorizer): the files hold no tenant data, and every API call the page
makes carries the key the user typed, so tenancy stays the API's. Only the names in STATIC are served
(no path is ever joined onto the folder, so no traversal); `/console` redirects to `/console/` with a
relative Location, which stays right under a stage prefix (`https://host/<stage>/console`)."""
from __future__ import annotations

import hashlib
import json
from functools import cache
from pathlib import Path
from typing import Any

from batchgate.contract import error_envelope
from batchgate.observability import lambda_handler

STATIC_DIR = Path(__file__).resolve().parents[1] / "console"
STATIC = {
    "index.html": "text/html; charset=utf-8",
    "app.js": "text/javascript; charset=utf-8",
    "app.css": "text/css; charset=utf-8",
}
# No inline script or style, no other origin: the page talks to its own API (`connect-src 'self'`).
# `img-src data:` is for the inline SVG favicon; downloads are blob: links the user clicks.
CONTENT_SECURITY_POLICY = ("default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
                           "img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
}
# Revalidate on every load (the ETag makes that a 304): a deploy is seen at once, no stale app.js.
CACHE_CONTROL = "no-cache"


@cache
def _asset(name: str) -> tuple[str, str]:
    body = (STATIC_DIR / name).read_text(encoding="utf-8")
    return body, '"' + hashlib.sha256(body.encode()).hexdigest()[:32] + '"'


def _answer(status: int, headers: dict[str, str], body: str = "") -> dict[str, Any]:
    return {"statusCode": status, "headers": {**SECURITY_HEADERS, **headers}, "body": body,
            "isBase64Encoded": False}


def serve(path: str, if_none_match: str | None) -> dict[str, Any]:
    """The answer for a request path (`/console`, `/console/`, `/console/app.js`...)."""
    if path == "/console":
        return _answer(301, {"Location": "console/", "Cache-Control": CACHE_CONTROL})
    name = path.removeprefix("/console/") or "index.html"
    if name not in STATIC:
        envelope = error_envelope(f"Invalid URL (GET {path[:200]})", code="unknown_url")
        return _answer(404, {"Content-Type": "application/json", "Cache-Control": CACHE_CONTROL},
                       json.dumps(envelope))
    body, etag = _asset(name)
    headers = {"Content-Type": STATIC[name], "Cache-Control": CACHE_CONTROL, "ETag": etag}
    if if_none_match and etag in [tag.strip() for tag in if_none_match.split(",")]:
        return _answer(304, headers)
    return _answer(200, headers, body)


@lambda_handler()
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    headers = {k.lower(): v for k, v in (event.get("headers") or {}).items()}
    return serve(event.get("path") or "/console/", headers.get("if-none-match"))
