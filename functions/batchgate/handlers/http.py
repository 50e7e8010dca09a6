"""What every API handler shares: the resolver, the tenant of the caller, JSON bodies, and the one
place where domain errors become OpenAI's error envelope (with `x-request-id` on every answer)."""
from __future__ import annotations

import base64
import uuid

import orjson
from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response
from aws_lambda_powertools.event_handler.exceptions import NotFoundError as RouteNotFound

from batchgate import errors, ids
from batchgate.observability import log_keys, logger


def _dumps(obj) -> str:
    return orjson.dumps(obj).decode()


def make_resolver() -> APIGatewayRestResolver:
    app = APIGatewayRestResolver(serializer=_dumps, strip_prefixes=[])

    def request_id_middleware(app: APIGatewayRestResolver, next_middleware):
        response = next_middleware(app)
        response.headers["x-request-id"] = request_id(app)
        return response

    def log_context_middleware(app: APIGatewayRestResolver, next_middleware):
        log_keys(**log_context(app))
        return next_middleware(app)

    app.use(middlewares=[log_context_middleware, request_id_middleware])

    @app.exception_handler(errors.ApiError)
    def _api_error(exc: errors.ApiError):
        return error_response(app, exc)

    @app.not_found
    def _not_found(exc: RouteNotFound):
        return error_response(app, errors.NotFound(
            f"Invalid URL ({app.current_event.http_method} {app.current_event.path})",
            code="unknown_url"))

    @app.exception_handler(Exception)
    def _unexpected(exc: Exception):
        logger.exception("unhandled error")
        return error_response(app, errors.ServerError(
            "The server had an error while processing your request. Sorry about that!"))

    return app


def request_id(app: APIGatewayRestResolver) -> str:
    ctx = app.current_event.request_context
    rid = getattr(ctx, "request_id", None) if ctx else None
    return f"req_{rid.replace('-', '')}" if rid else f"req_{uuid.uuid4().hex}"


def log_context(app: APIGatewayRestResolver) -> dict[str, str]:
    """`tenant` (from the authorizer) and `batch_id` (from a /v1/batches/{id} path) for every log line
    of the request, where the request has them."""
    ctx = app.current_event.request_context
    auth = (ctx.authorizer.raw_event if ctx and ctx.authorizer else None) or {}
    keys = {"tenant": auth["tenant"]} if isinstance(auth.get("tenant"), str) else {}
    parts = (app.current_event.path or "").split("/")
    if len(parts) > 3 and parts[2] == "batches" and ids.BATCH_ID.match(parts[3]):
        keys["batch_id"] = parts[3]
    return keys


def error_response(app: APIGatewayRestResolver, exc: errors.ApiError) -> Response:
    headers = {"x-request-id": request_id(app), **exc.headers}
    return Response(status_code=exc.status, content_type="application/json",
                    body=_dumps(exc.envelope()), headers=headers)


def json_response(obj, status: int = 200) -> Response:
    return Response(status_code=status, content_type="application/json", body=_dumps(obj))


def tenant(app: APIGatewayRestResolver) -> str:
    """The tenant the authorizer resolved from the API key. Missing means the route is unprotected,
    which is a deployment error: refuse rather than guess."""
    ctx = app.current_event.request_context
    auth = (ctx.authorizer.raw_event if ctx and ctx.authorizer else None) or {}
    value = auth.get("tenant")
    if not value:
        raise errors.Unauthorized()
    return value


def body_bytes(app: APIGatewayRestResolver) -> bytes:
    event = app.current_event
    body = event.body or ""
    if event.is_base64_encoded:
        return base64.b64decode(body)
    return body.encode("utf-8") if isinstance(body, str) else body


def json_object(app: APIGatewayRestResolver) -> dict:
    """The request body as a JSON object, or a 400 that says what is wrong with it."""
    raw = body_bytes(app)
    if not raw.strip():
        return {}
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise errors.InvalidRequest(
            "We could not parse the JSON body of your request. (HINT: This likely means you aren't "
            "using your HTTP library correctly. The OpenAI API expects a JSON payload, but what was "
            "sent was not valid JSON.)", code="invalid_json") from None
    if not isinstance(value, dict):
        raise errors.invalid_type("body", "an object", value)
    return value


def header(app: APIGatewayRestResolver, name: str) -> str | None:
    return app.current_event.headers.get(name)  # case-insensitive in Powertools 3
