"""The batch workflow (Step Functions): start one execution per batch, and resume a waiting task."""
from __future__ import annotations

import orjson
from botocore.exceptions import ClientError

from batchgate import aws
from batchgate.observability import logger

# The token is no longer waiting (the task already ended or timed out): nothing left to wake.
_GONE = ("TaskTimedOut", "InvalidToken", "TaskDoesNotExist")


class Workflow:
    def __init__(self, state_machine_arn: str):
        self.state_machine_arn = state_machine_arn

    def start(self, batch_id: str, tenant: str) -> str:
        """Execution named by the batch id, so a batch can never run twice."""
        sfn = aws.client("stepfunctions")
        try:
            resp = sfn.start_execution(
                stateMachineArn=self.state_machine_arn, name=batch_id,
                input=orjson.dumps({"batch_id": batch_id, "tenant": tenant}).decode())
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "ExecutionAlreadyExists":
                raise
            return self.execution_arn(batch_id)
        return resp["executionArn"]

    def execution_arn(self, batch_id: str) -> str:
        return self.state_machine_arn.replace(":stateMachine:", ":execution:", 1) + ":" + batch_id

    def fail_task(self, token: str, error: str, cause: str) -> bool:
        """False when the task is not waiting any more (timed out or already resumed)."""
        try:
            aws.client("stepfunctions").send_task_failure(taskToken=token, error=error, cause=cause)
        except ClientError as exc:
            if exc.response["Error"]["Code"] in _GONE:
                logger.info("task token no longer waiting", extra={"error": error})
                return False
            raise
        return True

    def succeed_task(self, token: str, output: dict) -> bool:
        """False when the task is not waiting any more (timed out or already resumed)."""
        try:
            aws.client("stepfunctions").send_task_success(taskToken=token,
                                                          output=orjson.dumps(output).decode())
        except ClientError as exc:
            if exc.response["Error"]["Code"] in _GONE:
                return False
            raise
        return True
