"""Counting the AWS calls Batchgate makes, per function and per service.operation, from botocore's
own events on the clients `batchgate.aws` hands out (so moto's internals, local mode's deploy and the
benchmark's own reads are not counted), and timing each in-process Lambda invocation."""
from __future__ import annotations

import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field

_attribution = threading.local()
ESM = "sqs_event_source_mapping"  # what Lambda's poller does for the chunk queue


def current_function() -> str:
    return getattr(_attribution, "function", None) or "other"


@dataclass
class CallLog:
    calls: Counter = field(default_factory=Counter)            # (function, "service.Operation") -> n
    write_items: Counter = field(default_factory=Counter)      # function -> DynamoDB items written
    transact_items: Counter = field(default_factory=Counter)   # function -> items written in transactions
    event_entries: int = 0
    invocations: dict = field(default_factory=lambda: defaultdict(list))  # function -> [seconds]
    lock: threading.Lock = field(default_factory=threading.Lock)

    def clear(self) -> None:
        with self.lock:
            self.calls.clear()
            self.write_items.clear()
            self.transact_items.clear()
            self.event_entries = 0
            self.invocations.clear()

    # botocore `before-parameter-build` handler: once per API call (retries are not new calls), with
    # the caller's parameters (before-call would see the serialized request instead)
    def before_call(self, model=None, params=None, **_) -> None:
        fn = current_function()
        op = f"{model.service_model.service_name}.{model.name}"
        with self.lock:
            self.calls[(fn, op)] += 1
            if op == "dynamodb.BatchWriteItem":
                self.write_items[fn] += sum(len(v) for v in (params or {}).get("RequestItems", {}).values())
            elif op in ("dynamodb.PutItem", "dynamodb.UpdateItem", "dynamodb.DeleteItem"):
                self.write_items[fn] += 1
            elif op == "dynamodb.TransactWriteItems":
                self.transact_items[fn] += len((params or {}).get("TransactItems", []))
            elif op == "events.PutEvents":
                self.event_entries += len((params or {}).get("Entries", []))

    # for the event source mapping's client: an empty receive is idle polling, not work for a line
    def after_call(self, model=None, parsed=None, **_) -> None:
        op = f"{model.service_model.service_name}.{model.name}"
        if op == "sqs.ReceiveMessage" and not (parsed or {}).get("Messages"):
            return
        with self.lock:
            self.calls[(ESM, op)] += 1

    def instrument(self, client) -> None:
        client.meta.events.register("before-parameter-build", self.before_call, unique_id="bench-call-count")

    def instrument_esm(self, client) -> None:
        client.meta.events.register("after-call", self.after_call, unique_id="bench-esm-count")

    # -- views ---------------------------------------------------------------------------------
    def by_operation(self, functions: set[str] | None = None) -> Counter:
        out: Counter = Counter()
        for (fn, op), n in self.calls.items():
            if functions is None or fn in functions:
                out[op] += n
        return out

    def by_function(self) -> Counter:
        out: Counter = Counter()
        for (fn, _), n in self.calls.items():
            out[fn] += n
        return out


class Instrumented:
    """Context manager: counts calls on every client batchgate.aws builds and attributes them to the
    in-process Lambda function running on the calling thread."""

    def __init__(self, log: CallLog):
        self.log = log

    def __enter__(self) -> CallLog:
        from batchgate import aws
        from batchgate_local import lambdas

        self._aws = aws
        self._orig = (aws.client, aws.resource)
        log = self.log

        def client(service):
            c = self._orig[0](service)
            log.instrument(c)
            return c

        def resource(service):
            r = self._orig[1](service)
            log.instrument(r.meta.client)
            return r

        client.cache_clear = self._orig[0].cache_clear
        resource.cache_clear = self._orig[1].cache_clear
        aws.client, aws.resource = client, resource

        self._lambdas = lambdas.InProcessLambdas
        self._orig_invoke = lambdas.InProcessLambdas.invoke
        orig_invoke = self._orig_invoke

        def invoke(runtime, name_or_arn, event):
            spec = runtime.spec(name_or_arn)
            name = spec.handler.rsplit(".", 2)[-2]  # batchgate.handlers.<module>.handler
            outer = getattr(_attribution, "function", None)
            _attribution.function = name
            t = time.perf_counter()
            try:
                return orig_invoke(runtime, name_or_arn, event)
            finally:
                with log.lock:
                    log.invocations[name].append(time.perf_counter() - t)
                _attribution.function = outer

        lambdas.InProcessLambdas.invoke = invoke
        return log

    def __exit__(self, *exc) -> None:
        self._aws.client, self._aws.resource = self._orig
        self._lambdas.invoke = self._orig_invoke
