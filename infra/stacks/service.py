"""Everything stateless: functions, the REST API, the workflow, the workers. Composes constructs only."""
from __future__ import annotations

from aws_cdk import CfnOutput, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_secretsmanager as secretsmanager
from aws_cdk import aws_ssm as ssm
from constructs import Construct

from batchgate.contract import Env, Prefix
from infra.config import EnvironmentConfig
from infra.constructs.alarms import OperationsAlarms
from infra.constructs.api import ApiConstruct
from infra.constructs.console import ConsoleConstruct
from infra.constructs.dashboard import OperationsDashboard
from infra.constructs.function import BatchgateFunction, FunctionDefaults, function_code
from infra.constructs.layer import DependencyLayer
from infra.constructs.nag import acknowledge
from infra.constructs.webhooks import WebhookDelivery
from infra.constructs.worker import ChunkWorkerConstruct
from infra.constructs.workflow import BatchWorkflowConstruct
from infra.stacks.stateful import StatefulStack

SERVICE_NAME = "batchgate"


def common_environment(config: EnvironmentConfig, stateful: StatefulStack) -> dict[str, str]:
    """The BATCHGATE_* variables every function gets (batchgate.settings.Settings reads them)."""
    limits = config.limits
    return {
        Env.ENVIRONMENT: config.name,
        Env.TABLE: stateful.state_table.table_name,
        Env.KEYS_TABLE: stateful.keys_table.table_name,
        Env.BUCKET: stateful.bucket.bucket_name,
        Env.CHUNK_QUEUE_URL: stateful.chunk_queue.queue_url,
        Env.EVENT_BUS: stateful.event_bus_name,
        Env.COMPLETION_WINDOW_SECONDS: str(limits.completion_window_seconds),
        Env.CHUNK_MAX_LINES: str(limits.chunk_max_lines),
        Env.CHUNK_MAX_BYTES: str(limits.chunk_max_bytes),
        Env.MAX_DIRECT_UPLOAD_BYTES: str(limits.max_direct_upload_bytes),
        Env.CONTENT_REDIRECT_BYTES: str(limits.content_redirect_bytes),
        Env.PRESIGN_SECONDS: str(limits.presign_seconds),
        Env.UPSTREAMS: config.upstreams.model_dump_json(exclude_none=True),
        Env.QUOTAS: config.quotas.model_dump_json(exclude_defaults=True),
        Env.BATCH_LANES: str(config.worker.batch_lanes),
        "POWERTOOLS_SERVICE_NAME": SERVICE_NAME,
    }


class ServiceStack(Stack):
    def __init__(
        self, scope: Construct, id: str, *, config: EnvironmentConfig, stateful: StatefulStack, **kwargs
    ) -> None:
        super().__init__(scope, id, **kwargs)
        defaults = FunctionDefaults(
            config=config,
            code=function_code(),
            layer=DependencyLayer(self, "Dependencies").layer,
            environment=common_environment(config, stateful),
        )

        self.workflow = BatchWorkflowConstruct(self, "Workflow", defaults=defaults)
        state_machine = self.workflow.state_machine
        # Only the batches API starts executions; giving the ARN to the workflow's own functions
        # would make them depend on the state machine that depends on them.
        self.api = ApiConstruct(
            self, "Api", defaults=defaults,
            batches_environment={Env.STATE_MACHINE_ARN: state_machine.state_machine_arn},
        )
        self.workers = ChunkWorkerConstruct(self, "Chunks", defaults=defaults, queue=stateful.chunk_queue)
        self.webhooks = WebhookDelivery(self, "Webhooks", defaults=defaults, storage=stateful.webhooks)
        self.console = ConsoleConstruct(self, "Console", defaults=defaults, rest_api=self.api.rest_api)

        self._grant(config, stateful)
        functions = {"Authorizer": self.api.authorizer_function, "Files": self.api.functions["files"],
                     "Uploads": self.api.functions["uploads"], "Batches": self.api.functions["batches"],
                     "Validate": self.workflow.validate_function, "Dispatch": self.workflow.dispatch_function,
                     "Finalize": self.workflow.finalize_function, "Worker": self.workers.worker_function,
                     "WebhookDeliver": self.webhooks.function, "Console": self.console.function}
        alarms: list = []
        if config.alarms.enabled:
            self.alarms = OperationsAlarms(self, "Alarms", config=config.alarms,
                                           dead_letter_queue=stateful.dead_letter_queue,
                                           chunk_queue=stateful.chunk_queue,
                                           functions={n: f.function for n, f in functions.items()},
                                           state_machine=state_machine, rest_api=self.api.rest_api)
            alarms = [*self.alarms.alarms.values(), self.webhooks.add_alarm(self.alarms.topic)]
        self.dashboard = OperationsDashboard(
            self, "Operations", environment=config.name, functions={n: f.function for n, f in functions.items()},
            chunk_queue=stateful.chunk_queue, dead_letter_queue=stateful.dead_letter_queue,
            state_machine=state_machine, rest_api=self.api.rest_api, alarms=alarms)

        CfnOutput(self, "ApiUrl", value=self.api.url,
                  description="OpenAI SDK base_url (the stage URL + /v1)")
        if config.domain:
            CfnOutput(self, "CustomDomainUrl", value=f"https://{config.domain.name}/v1",
                      description="OpenAI SDK base_url on the custom domain")
        CfnOutput(self, "StateMachineArn", value=state_machine.state_machine_arn,
                  description="Batch workflow (execution name = batch id)")

    def _grant(self, config: EnvironmentConfig, stateful: StatefulStack) -> None:
        """Each function gets exactly the actions its code calls, on exactly the resources it calls them
        on. Local mode checks every call against these grants, and the suite fails on a call they deny
        and on a grant no call used (functions/batchgate/local/iam.py, tests/conftest.py)."""
        table, keys = stateful.state_table, stateful.keys_table
        queue, bus = stateful.chunk_queue, stateful.event_bus
        state_machine = self.workflow.state_machine
        api, wf, worker = self.api.functions, self.workflow, self.workers.worker_function

        keys.grant(self.api.authorizer_function.function, "dynamodb:GetItem")
        state_table_actions = {
            api["files"]: ["GetItem", "PutItem", "DeleteItem", "Query"],
            api["uploads"]: ["GetItem", "PutItem", "UpdateItem", "Query", "BatchWriteItem"],
            api["batches"]: ["GetItem", "PutItem", "UpdateItem", "Query"],
            wf.validate_function: ["GetItem", "UpdateItem", "BatchWriteItem"],
            wf.dispatch_function: ["GetItem", "UpdateItem"],
            wf.finalize_function: ["GetItem", "PutItem", "UpdateItem", "Query"],
            # A segment commit is a TransactWriteItems of two Updates, authorized as UpdateItem; the
            # upstreams' global cap blocks (UPSTREAM#<name> items) are leased, renewed and released
            # with conditional UpdateItems (adapters/upstream_cap.py).
            worker: ["GetItem", "UpdateItem"],
        }
        for fn, actions in state_table_actions.items():
            table.grant(fn.function, *(f"dynamodb:{a}" for a in actions))
        # The functions that move a batch's status publish the change.
        for fn in (api["batches"], wf.validate_function, wf.finalize_function):
            bus.grant_put_events_to(fn.function)

        _objects(api["files"], stateful, [f"{Prefix.FILES}*"], ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"])
        # Complete reads the parts and writes files/<tenant>/<file_id> (multipart when large).
        _objects(api["uploads"], stateful, [f"{Prefix.UPLOADS}*"], ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"])
        _objects(api["uploads"], stateful, [f"{Prefix.FILES}*"], ["s3:PutObject", "s3:AbortMultipartUpload"])
        _objects(wf.validate_function, stateful, [f"{Prefix.FILES}*"], ["s3:GetObject"])
        _objects(worker, stateful, [f"{Prefix.FILES}*"], ["s3:GetObject"])
        _objects(worker, stateful, [f"{Prefix.WORK}*"], ["s3:GetObject", "s3:PutObject"])
        _objects(wf.finalize_function, stateful, [f"{Prefix.WORK}*"], ["s3:GetObject", "s3:DeleteObject"])
        _objects(wf.finalize_function, stateful, [f"{Prefix.FILES}*"],
                 ["s3:GetObject", "s3:PutObject", "s3:AbortMultipartUpload"])
        # Both read segment records that may not exist yet, and Finalize lists work/<batch>/ to delete it.
        for fn in (worker, wf.finalize_function):
            _list(fn, stateful, [f"{Prefix.WORK}*"])

        queue.grant(wf.dispatch_function.function, "sqs:SendMessage")
        # A worker that runs short of time hands the rest of its chunk back as a new message.
        queue.grant(worker.function, "sqs:SendMessage")

        state_machine.grant_start_execution(api["batches"].function)
        state_machine.grant(api["batches"].function, "states:SendTaskFailure")  # cancel
        state_machine.grant(worker.function, "states:SendTaskSuccess")  # the last chunk

        self._grant_upstream_keys(config, worker)

    def _grant_upstream_keys(self, config: EnvironmentConfig, worker: BatchgateFunction) -> None:
        for name, upstream in config.upstreams.upstreams.items():
            if upstream.api_key_ssm_parameter:
                ssm.StringParameter.from_secure_string_parameter_attributes(
                    self, f"UpstreamKey-{name}", parameter_name=upstream.api_key_ssm_parameter
                ).grant_read(worker.function)
            if upstream.api_key_secret_id:
                secretsmanager.Secret.from_secret_name_v2(
                    self, f"UpstreamSecret-{name}", upstream.api_key_secret_id
                ).grant_read(worker.function)


# Writes of files/* carry the retention tag (PutObject / CreateMultipartUpload with Tagging), which
# S3 authorizes as s3:PutObjectTagging too.
_TAGGED_PREFIXES = (f"{Prefix.FILES}*",)


def _list(fn: BatchgateFunction, stateful: StatefulStack, prefixes: list[str]) -> None:
    """s3:ListBucket on the bucket, for keys under `prefixes` only. S3 answers a GET of a missing key
    404 NoSuchKey only to a caller that may list it (evaluated with the key as s3:prefix); to anyone
    else it answers 403 AccessDenied, which the engine cannot tell from a real denial."""
    fn.function.add_to_role_policy(iam.PolicyStatement(
        actions=["s3:ListBucket"], resources=[stateful.bucket_arn_import],
        conditions={"StringLike": {"s3:prefix": prefixes}},
    ))


def _objects(fn: BatchgateFunction, stateful: StatefulStack, prefixes: list[str], actions: list[str]) -> None:
    """Exact object actions on key prefixes (the CDK's grant_* add wildcard actions and GetBucket*)."""
    if "s3:PutObject" in actions and any(p in _TAGGED_PREFIXES for p in prefixes):
        actions = [*actions, "s3:PutObjectTagging"]
    resources = [f"{stateful.bucket_arn_import}/{prefix}" for prefix in prefixes]
    fn.function.add_to_role_policy(iam.PolicyStatement(actions=actions, resources=resources))
    acknowledge(
        fn.role,
        "Object keys under the prefixes this function owns (files/<tenant>/..., uploads/..., work/<batch>/...).",
        *(f"AwsSolutions-IAM5[Resource::{stateful.bucket_arn_export_name}/{prefix}]" for prefix in prefixes),
    )
