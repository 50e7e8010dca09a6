"""AWS errors at the HTTP layer (botocore `before-send`), before moto applies the request: throttling
and 5xx that botocore's standard mode retries, and the ambiguous kind (applied, but the answer lost)."""
from __future__ import annotations

import json
import random
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from botocore.awsrequest import AWSResponse

from batchgate import aws


class RawBody:
    def __init__(self, body: bytes):
        self._body = body

    def stream(self, **_):
        yield self._body

    def read(self, *_):
        return self._body


def _json_error(status: int, code: str, prefix: str) -> tuple[int, dict, bytes]:
    body = json.dumps({"__type": f"{prefix}#{code}", "message": f"injected {code}"}).encode()
    return status, {"content-type": "application/x-amz-json-1.0", "x-amzn-requestid": "fault"}, body


def _xml_error(status: int, code: str) -> tuple[int, dict, bytes]:
    body = (f'<?xml version="1.0" encoding="UTF-8"?><Error><Code>{code}</Code>'
            f"<Message>injected {code}</Message><RequestId>fault</RequestId></Error>").encode()
    return status, {"content-type": "application/xml", "x-amz-request-id": "fault"}, body


# service -> the errors AWS answers under load (all retryable by botocore's standard mode)
AWS_ERRORS: dict[str, list[Callable[[], tuple[int, dict, bytes]]]] = {
    "dynamodb": [
        lambda: _json_error(400, "ProvisionedThroughputExceededException", "com.amazonaws.dynamodb.v20120810"),
        lambda: _json_error(400, "ThrottlingException", "com.amazonaws.dynamodb.v20120810"),
        lambda: _json_error(500, "InternalServerError", "com.amazonaws.dynamodb.v20120810"),
    ],
    "s3": [
        lambda: _xml_error(503, "SlowDown"),
        lambda: _xml_error(500, "InternalError"),
        lambda: _xml_error(503, "ServiceUnavailable"),
    ],
    "sqs": [
        lambda: _json_error(400, "ThrottlingException", "com.amazonaws.sqs"),
        lambda: _json_error(500, "InternalFailure", "com.amazon.coral.service"),
        lambda: _json_error(503, "ServiceUnavailable", "com.amazon.coral.service"),
    ],
}


class AwsFaults:
    """Answers a seeded fraction of the engine's DynamoDB/S3/SQS requests with an AWS error, before
    they reach moto (so the request was not applied), never more than `max_per_call` attempts of one
    API call in a row (botocore makes 5)."""

    def __init__(self, seed: int, rate: float = 0.04, max_per_call: int = 2):
        self.rng = random.Random(seed)
        self.rate, self.max_per_call = rate, max_per_call
        self.enabled = False
        self.injected: Counter = Counter()
        self.calls = 0
        self._lock = threading.Lock()
        self._local = threading.local()

    def _before_call(self, **_) -> None:
        self._local.injected = 0

    def _before_send(self, request, service: str, **_) -> AWSResponse | None:
        with self._lock:
            self.calls += 1
            if (not self.enabled or getattr(self._local, "injected", 0) >= self.max_per_call
                    or self.rng.random() >= self.rate):
                return None
            status, headers, body = self.rng.choice(AWS_ERRORS[service])()
            self.injected[(service, status)] += 1
        self._local.injected = getattr(self._local, "injected", 0) + 1
        return AWSResponse(request.url, status, headers, RawBody(body))

    def register(self, service: str, client) -> None:
        client.meta.events.register(f"before-call.{service}.*", self._before_call)
        client.meta.events.register(f"before-send.{service}.*",
                                    lambda request, _s=service, **kw: self._before_send(request, _s))

    def install(self) -> None:
        """Register on the clients the functions use (batchgate.aws caches one per service)."""
        for service, c in [("dynamodb", aws.client("dynamodb")), ("dynamodb", aws.resource("dynamodb").meta.client),
                           ("s3", aws.client("s3")), ("sqs", aws.client("sqs"))]:
            self.register(service, c)


class AppliedThenLost:
    """An ambiguous failure: the request reaches moto and is applied, but the answer is lost and
    the caller sees a 500 (a DynamoDB InternalServerError or a read timeout after the write
    committed), so botocore retries a write that already happened. Armed for the first `times`
    requests of `operation` whose body contains `needle`."""

    def __init__(self, service: str, operation: str, needle: bytes, times: int = 1):
        self.service, self.operation, self.needle, self.left = service, operation, needle, times
        self.fired = 0
        self._lock = threading.Lock()

    def _before_send(self, request, event_name: str = "", **_) -> AWSResponse | None:
        if not event_name.endswith(f".{self.operation}"):
            return None
        body = request.body if isinstance(request.body, bytes) else str(request.body or "").encode()
        with self._lock:
            if self.left <= 0 or self.needle not in body:
                return None
            self.left -= 1
            self.fired += 1
        from botocore.httpsession import URLLib3Session
        URLLib3Session().send(request)  # applied...
        status, headers, raw = _json_error(500, "InternalServerError", "com.amazonaws.dynamodb.v20120810") \
            if self.service != "s3" else _xml_error(500, "InternalError")
        return AWSResponse(request.url, status, headers, RawBody(raw))  # ...but the caller hears a 500

    @contextmanager
    def installed(self) -> Iterator[AppliedThenLost]:
        """Armed on the functions' clients while the block runs."""
        clients = [aws.client(self.service)]
        if self.service == "dynamodb":
            clients.append(aws.resource("dynamodb").meta.client)
        event = f"before-send.{self.service}.{self.operation}"
        for c in clients:
            c.meta.events.register(event, self._before_send)
        try:
            yield self
        finally:
            for c in clients:
                c.meta.events.unregister(event, self._before_send)
