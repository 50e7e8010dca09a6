"""One Logger shared by every handler (JSON logs; the Lambda's request id is injected)."""
from __future__ import annotations

from aws_lambda_powertools import Logger

logger = Logger(service="batchgate")
