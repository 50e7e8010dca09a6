"""SQS event source mappings, run the way Lambda runs them (moto would run them inside SendMessage).

One thread per mapping receives up to the mapping's batch size, builds a real SQS event, invokes the
function in-process on a pool bounded by the mapping's MaximumConcurrency, deletes what succeeded and
leaves `batchItemFailures` (or the whole batch, on a function error) for redelivery.

An invocation that outlived its function's timeout counts as a timeout, as in Lambda, which would have
killed it: nothing of its batch is deleted. The in-process runtime cannot kill a thread, and a late
answer would otherwise ack a message that came back after its visibility timeout and is now held by
another invocation (SQS deletes by any receipt handle the message ever had), leaving that one's chunk
without a message if it dies.
"""
from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import boto3

from batchgate.observability import logger
from batchgate_local.deploy import EventSourceMappingSpec
from batchgate_local.iam import as_function
from batchgate_local.lambdas import InProcessLambdas

DEFAULT_CONCURRENCY = 4  # Lambda would scale further; a laptop need not


class SqsPoller:
    def __init__(self, mapping: EventSourceMappingSpec, lambdas: InProcessLambdas, region: str,
                 wait_seconds: int = 1, retry_visibility_seconds: int | None = None):
        self.mapping = mapping
        self.lambdas = lambdas
        self.region = region
        self.wait_seconds = wait_seconds
        # Failed records come back after the queue's visibility timeout, as in AWS; local mode may
        # shorten that so a crash is retried in seconds rather than after 6x the worker timeout.
        self.retry_visibility_seconds = retry_visibility_seconds
        self.concurrency = mapping.maximum_concurrency or DEFAULT_CONCURRENCY
        self._slots = threading.Semaphore(self.concurrency)
        self.timed_out = 0  # invocations that outlived their timeout (Lambda would have killed them)
        self._count_lock = threading.Lock()
        self._pool = ThreadPoolExecutor(self.concurrency, thread_name_prefix="batchgate-sqs")
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"batchgate-poller-{mapping.uuid[:8]}", daemon=True)
        self._sqs = boto3.client("sqs", region_name=region)
        self._url = self._sqs.get_queue_url(QueueName=mapping.queue_arn.rsplit(":", 1)[1])["QueueUrl"]
        # Lambda's event source mapping reads, receives and deletes with the function's role
        # (local/iam.py checks those calls); the visibility change below is local mode's own.
        self._function = lambdas.spec(mapping.function_arn).logical_id
        self._esm_sqs = boto3.client("sqs", region_name=region)
        if lambdas.guard is not None:
            lambdas.guard.register(self._esm_sqs)
        with as_function(self._function):
            self._esm_sqs.get_queue_attributes(QueueUrl=self._url, AttributeNames=["All"])

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=self.wait_seconds + 5)
        self._pool.shutdown(wait=True, cancel_futures=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            if not self._slots.acquire(timeout=0.5):
                continue
            try:
                messages = self._receive()
            except Exception:  # the server is going away, or a transient error: try again
                self._slots.release()
                if not self._stop.is_set():
                    logger.exception("local SQS poller: receive failed")
                    self._stop.wait(1)
                continue
            if not messages:
                self._slots.release()
                continue
            self._pool.submit(self._process, messages)

    def _receive(self) -> list[dict]:
        messages: list[dict] = []
        wait = self.wait_seconds
        while len(messages) < self.mapping.batch_size and not self._stop.is_set():
            with as_function(self._function):
                got = self._esm_sqs.receive_message(
                    QueueUrl=self._url, MaxNumberOfMessages=min(10, self.mapping.batch_size - len(messages)),
                    WaitTimeSeconds=wait, AttributeNames=["All"], MessageAttributeNames=["All"],
                ).get("Messages", [])
            if not got:
                break
            messages.extend(got)
            wait = 0  # gather what is already there, then go
        return messages

    def _process(self, messages: list[dict]) -> None:
        try:
            event = {"Records": [self._record(m) for m in messages]}
            started = time.monotonic()
            result = self.lambdas.invoke(self.mapping.function_arn, event)
            by_id = {m["MessageId"]: m for m in messages}
            timeout = self.lambdas.spec(self.mapping.function_arn).timeout_seconds
            if time.monotonic() - started > timeout:
                with self._count_lock:
                    self.timed_out += 1
                logger.warning("local SQS poller: the invocation outlived its %s s timeout; its batch is "
                               "left for redelivery, as Lambda would", timeout)
                return  # Lambda's timeout: nothing deleted, the messages wait out their visibility
            if result.error:
                failed = set(by_id)
            elif self.mapping.report_batch_item_failures and isinstance(result.payload, dict):
                ids = [f.get("itemIdentifier") for f in result.payload.get("batchItemFailures") or []]
                # An unknown or empty identifier fails the whole batch, as Lambda does.
                failed = set(by_id) if any(i not in by_id for i in ids) else set(ids)
            else:
                failed = set()
            done = [m for mid, m in by_id.items() if mid not in failed]
            for start in range(0, len(done), 10):
                with as_function(self._function):
                    self._esm_sqs.delete_message_batch(QueueUrl=self._url, Entries=[
                        {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]}
                        for i, m in enumerate(done[start:start + 10])])
            if failed and self.retry_visibility_seconds is not None:
                for mid in failed:
                    self._sqs.change_message_visibility(QueueUrl=self._url, ReceiptHandle=by_id[mid]["ReceiptHandle"],
                                                        VisibilityTimeout=self.retry_visibility_seconds)
        except Exception:
            if not self._stop.is_set():
                logger.exception("local SQS poller: processing failed")
        finally:
            self._slots.release()

    def _record(self, m: dict) -> dict:
        attrs = {}
        for name, value in (m.get("MessageAttributes") or {}).items():
            attrs[name] = {"stringValue": value.get("StringValue"), "binaryValue": value.get("BinaryValue"),
                           "stringListValues": [], "binaryListValues": [], "dataType": value.get("DataType")}
        return {
            "messageId": m["MessageId"], "receiptHandle": m["ReceiptHandle"], "body": m["Body"],
            "attributes": m.get("Attributes") or {}, "messageAttributes": attrs,
            "md5OfBody": m.get("MD5OfBody"), "eventSource": "aws:sqs",
            "eventSourceARN": self.mapping.queue_arn, "awsRegion": self.region,
        }
