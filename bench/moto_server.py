"""moto's server in its own process, with this process's boto3 pointed at it. Out of process so the
bytes moto stores (whole result files) are not counted in this process's memory figures, and every
AWS call is a real HTTP round trip as in Lambda."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request

_ENV = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": "us-east-1", "AWS_REGION": "us-east-1"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class MotoServer:
    """Context manager. Sets AWS_ENDPOINT_URL and fake credentials for its lifetime (then restores
    them) and forgets batchgate's cached clients and settings on entry and exit."""

    def __init__(self, env: dict[str, str] | None = None, *, atomic: bool = False):
        self.env = {**_ENV, **(env or {})}
        # atomic: DynamoDB actions under a lock, as AWS applies conditional writes (batchgate_local/atomic.py)
        self.boot = "from batchgate_local import atomic; atomic.install(); " if atomic else ""
        self._saved: dict[str, str | None] = {}

    def __enter__(self) -> MotoServer:
        port = _free_port()
        self.endpoint = f"http://127.0.0.1:{port}"
        self.proc = subprocess.Popen(
            [sys.executable, "-c", self.boot + "from moto.server import main; main()",
             "-H", "127.0.0.1", "-p", str(port)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"{self.endpoint}/moto-api/data.json", timeout=1).read()
                break
            except OSError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    self.proc.kill()
                    raise RuntimeError("moto server did not start") from None
                time.sleep(0.1)
        for k, v in {**self.env, "AWS_ENDPOINT_URL": self.endpoint}.items():
            self._saved.setdefault(k, os.environ.get(k))
            os.environ[k] = v
        for k in ("AWS_PROFILE", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE"):
            if k in os.environ:
                self._saved.setdefault(k, os.environ.pop(k))
        _reset()
        return self

    def __exit__(self, *exc) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        for k, v in self._saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        _reset()


def _reset() -> None:
    from batchgate import aws, settings
    settings.reset_settings()
    aws.reset_clients()


def create_engine_resources(table: str = "state", bucket: str = "bucket") -> None:
    """The state table and bucket as the stateful stack defines them (pk/sk strings)."""
    from batchgate import aws
    aws.client("s3").create_bucket(Bucket=bucket)
    aws.client("dynamodb").create_table(
        TableName=table, BillingMode="PAY_PER_REQUEST",
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"},
                              {"AttributeName": "sk", "AttributeType": "S"}])
