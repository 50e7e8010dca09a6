"""The batch workflow: Validate -> Dispatch (wait for the last chunk, a cancel or the deadline) -> Finalize.

Every batch ends: a step that still fails after its retries is caught and the batch is finalized as
`failed` (a `cancelling` one as `cancelled`) with what ran kept and a readable entry in `errors`; if
Finalize itself keeps failing, Abort (the Finalize function again, status only) ends it; only if that
fails too does the execution fail (and the failed-executions alarm fires).

JSONPath only and plain Lambda tasks (no JSONata, no aws-sdk:* integrations) so moto can run the
very definition that is deployed. Execution name = batch id, input {"batch_id", "tenant"}.
"""
from __future__ import annotations

from aws_cdk import Duration, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_logs as logs
from aws_cdk import aws_stepfunctions as sfn
from aws_cdk import aws_stepfunctions_tasks as tasks
from constructs import Construct

from batchgate.contract import WorkflowError
from infra.constructs.function import BatchgateFunction, FunctionDefaults
from infra.constructs.nag import acknowledge

HANDLERS = {
    "validate": "batchgate.handlers.wf_validate.handler",
    "dispatch": "batchgate.handlers.wf_dispatch.handler",
    "finalize": "batchgate.handlers.wf_finalize.handler",
}
CANCELLED_ERROR = WorkflowError.CANCELLED
CHUNKS_BUSY_ERROR = WorkflowError.CHUNKS_BUSY
DISPATCH_ATTEMPTS = 6   # tries of the Dispatch step before the batch fails (each re-armed: see Revalidate)


class BatchWorkflowConstruct(Construct):
    def __init__(self, scope: Construct, id: str, *, defaults: FunctionDefaults) -> None:
        super().__init__(scope, id)
        config = defaults.config

        def function(name: str, timeout_seconds: int) -> BatchgateFunction:
            return BatchgateFunction(
                self, f"{name.capitalize()}Function", defaults=defaults, handler=HANDLERS[name],
                memory_mb=config.functions.workflow_memory_mb, timeout_seconds=timeout_seconds,
            )

        self.validate_function = function("validate", config.functions.workflow_timeout_seconds)
        self.dispatch_function = function("dispatch", 120)
        self.finalize_function = function("finalize", config.functions.workflow_timeout_seconds)

        batch_ref = {"batch_id": sfn.JsonPath.string_at("$.batch_id"), "tenant": sfn.JsonPath.string_at("$.tenant")}

        validate = tasks.LambdaInvoke(
            self, "Validate",
            lambda_function=self.validate_function.function,
            payload_response_only=True,
            retry_on_service_exceptions=True,
            comment="Check every line, write the chunk items -> {batch_id, tenant, outcome, seconds_left}",
        )
        dispatch = tasks.LambdaInvoke(
            self, "Dispatch",
            lambda_function=self.dispatch_function.function,
            integration_pattern=sfn.IntegrationPattern.WAIT_FOR_TASK_TOKEN,
            payload=sfn.TaskInput.from_object({**batch_ref, "task_token": sfn.JsonPath.task_token}),
            # The batch's own deadline: a timeout here is the batch expiring. Each attempt is armed
            # with the seconds left *now* (Revalidate below), never by a retry re-arming the old value.
            task_timeout=sfn.Timeout.at("$.seconds_left"),
            result_path=sfn.JsonPath.DISCARD,
            retry_on_service_exceptions=False,
            comment="Store the task token, queue one message per chunk; resumed by the last chunk or a cancel",
        )
        finalize = tasks.LambdaInvoke(
            self, "Finalize",
            lambda_function=self.finalize_function.function,
            payload_response_only=True,
            # No payload: the function gets the whole state, {batch_id, tenant, reason} and, on the
            # failure path, the caught `error`.
            retry_on_service_exceptions=True,
            comment="Seal chunks, assemble output and error files, set the terminal status",
        )
        abort = tasks.LambdaInvoke(
            self, "Abort",
            lambda_function=self.finalize_function.function,
            payload_response_only=True,
            payload=sfn.TaskInput.from_object({**batch_ref, "reason": "abort",
                                               "error": sfn.JsonPath.object_at("$.error")}),
            retry_on_service_exceptions=True,
            comment="Finalize kept failing: set the terminal status only, so the batch still ends",
        )
        # Workers still hold leases on chunks: wait for them (up to ~15 min overall).
        finalize.add_retry(errors=[CHUNKS_BUSY_ERROR], interval=Duration.seconds(5), backoff_rate=1.5,
                           max_attempts=20, max_delay=Duration.seconds(60))
        # Any other failure of a step (a crash, a timeout, AWS errors past botocore's retries) runs
        # it again: every step is safe to re-run, and an execution that fails strands its batch.
        # Dispatch has no retrier: a retry would re-arm its timeout with the same seconds_left and
        # push the expiry back by however long the failed attempts took (issue 8, defect 8). Its
        # failures go round Revalidate instead, which reads the seconds left from expires_at.
        revalidate = tasks.LambdaInvoke(
            self, "Revalidate",
            lambda_function=self.validate_function.function,
            payload=sfn.TaskInput.from_object(batch_ref),
            result_selector={"outcome": sfn.JsonPath.string_at("$.Payload.outcome"),
                             "seconds_left": sfn.JsonPath.number_at("$.Payload.seconds_left")},
            result_path="$.revalidated",
            retry_on_service_exceptions=True,
            comment="Dispatch failed: the batch's status and the seconds left until expires_at, for the next try",
        )
        for step in (validate, revalidate, finalize, abort):
            step.add_retry(errors=[sfn.Errors.ALL], interval=Duration.seconds(2), backoff_rate=2,
                           max_attempts=6, max_delay=Duration.seconds(60))

        def reason(name: str, value: str) -> sfn.Pass:
            return sfn.Pass(self, name, result=sfn.Result.from_string(value), result_path="$.reason")

        completed, cancelled, expired = reason("Completed", "completed"), reason("Cancelled", "cancelled"), \
            reason("Expired", "expired")
        broken = reason("StepFailed", "failed")
        for state in (completed, cancelled, expired, broken):
            state.next(finalize)
        # Dispatch's own retry loop: count the failure, give up after DISPATCH_ATTEMPTS, wait, re-read
        # the batch (a cancel may have landed) and re-arm with the seconds left.
        first_try = sfn.Pass(self, "FirstDispatch", result=sfn.Result.from_number(1),
                             result_path="$.dispatch_attempts")
        count = sfn.Pass(self, "CountDispatch", result_path="$.dispatch_attempts",
                         parameters={"n": sfn.JsonPath.math_add(sfn.JsonPath.number_at("$.dispatch_attempts"), 1)})
        rearm = sfn.Pass(self, "Rearm", parameters={
            "batch_id": sfn.JsonPath.string_at("$.batch_id"), "tenant": sfn.JsonPath.string_at("$.tenant"),
            "outcome": sfn.JsonPath.string_at("$.revalidated.outcome"),
            "seconds_left": sfn.JsonPath.number_at("$.revalidated.seconds_left"),
            "dispatch_attempts": sfn.JsonPath.number_at("$.dispatch_attempts.n")})
        backoff = sfn.Wait(self, "DispatchBackoff", time=sfn.WaitTime.duration(Duration.seconds(5)))
        first_try.next(dispatch)
        dispatch.add_catch(cancelled, errors=[CANCELLED_ERROR], result_path="$.error")
        dispatch.add_catch(expired, errors=[sfn.Errors.TIMEOUT], result_path="$.error")
        dispatch.add_catch(count, errors=[sfn.Errors.ALL], result_path="$.error")
        dispatch.next(completed)
        count.next(sfn.Choice(self, "DispatchAgain")
                   .when(sfn.Condition.number_greater_than_equals("$.dispatch_attempts.n", DISPATCH_ATTEMPTS), broken)
                   .otherwise(backoff))
        backoff.next(revalidate)
        revalidate.next(rearm)
        rearm.next(sfn.Choice(self, "StillValid")
                   .when(sfn.Condition.string_equals("$.outcome", "valid"), dispatch)
                   .when(sfn.Condition.string_equals("$.outcome", "cancelled"), cancelled)
                   .otherwise(broken))
        # The catch-alls (after the retries above are spent): every batch ends.
        validate.add_catch(broken, errors=[sfn.Errors.ALL], result_path="$.error")
        revalidate.add_catch(broken, errors=[sfn.Errors.ALL], result_path="$.error")
        finalize.add_catch(abort, errors=[sfn.Errors.ALL], result_path="$.error")
        abort.add_catch(sfn.Fail(self, "Stranded", error=WorkflowError.STRANDED,
                                 cause="Finalize and Abort kept failing; the batch is not terminal"),
                        errors=[sfn.Errors.ALL])

        outcome = (
            sfn.Choice(self, "Outcome")
            .when(sfn.Condition.string_equals("$.outcome", "valid"), first_try)
            .when(sfn.Condition.string_equals("$.outcome", "cancelled"), cancelled)
            .when(sfn.Condition.string_equals("$.outcome", "failed"), sfn.Succeed(self, "ValidationFailed"))
            .otherwise(broken)
        )

        log_options = None
        if config.observability:
            # Under /aws/vendedlogs/: Step Functions' log delivery keeps its resource policy small there.
            self.log_group = logs.LogGroup(
                self, "Logs", log_group_name=f"/aws/vendedlogs/states/batchgate-{config.name}-workflow",
                retention=config.log_retention, removal_policy=config.removal_policy
            )
            # Every state transition and error name, but no execution data: Dispatch's parameters carry
            # the task token, and anyone who can read the logs could resume or fail the batch with it.
            # A batch's reasons are in its `errors`; its data is in DynamoDB and S3.
            log_options = sfn.LogOptions(destination=self.log_group, level=sfn.LogLevel.ALL,
                                         include_execution_data=False)
        self.state_machine = sfn.StateMachine(
            self, "StateMachine",
            definition_body=sfn.DefinitionBody.from_chainable(validate.next(outcome)),
            state_machine_type=sfn.StateMachineType.STANDARD,
            comment="One execution per batch (name = batch id)",
            tracing_enabled=config.observability,
            logs=log_options,
        )

        # Dispatch fails its own token with Batch.Cancelled when the batch was cancelled meanwhile.
        # A separate policy: the function must not depend on the state machine that invokes it.
        iam.Policy(
            self, "DispatchTaskResponse",
            roles=[self.dispatch_function.role],
            statements=[iam.PolicyStatement(actions=["states:SendTaskFailure"],
                                            resources=[self.state_machine.state_machine_arn])],
        )
        self._acknowledge(config.observability)

    def _acknowledge(self, observability: bool) -> None:
        stack = Stack.of(self)
        functions = (self.validate_function, self.dispatch_function, self.finalize_function)
        acknowledge(
            self.state_machine,
            "The CDK's lambda:InvokeFunction grant covers versions of the workflow's own functions only.",
            *(f"AwsSolutions-IAM5[Resource::<{stack.get_logical_id(fn.function.node.default_child)}.Arn>:*]"
              for fn in functions),
        )
        if observability:
            acknowledge(
                self.state_machine,
                "Step Functions log delivery and X-Ray actions support no resource-level permissions.",
                "AwsSolutions-IAM5[Resource::*]",
            )
        else:
            acknowledge(self.state_machine, "Local environment (moto): no logs or tracing.",
                        "AwsSolutions-SF1", "AwsSolutions-SF2")
