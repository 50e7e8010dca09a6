"""Everything that holds data: tables, the bucket, the chunk queue (+ DLQ), the event bus.

Logical ids are pinned so refactoring the constructs can never replace (and empty) a resource.
"""
from __future__ import annotations

from aws_cdk import CfnOutput, CfnResource, Duration, RemovalPolicy, Stack
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_events as events
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from batchgate.contract import MAX_RETENTION_DAYS, RETENTION_TAG_KEY, Prefix
from infra.config import EnvironmentConfig
from infra.constructs.nag import acknowledge
from infra.constructs.webhooks import WebhookStorage


def _pin(construct: Construct, logical_id: str) -> None:
    resource = construct.node.default_child
    assert isinstance(resource, CfnResource)
    resource.override_logical_id(logical_id)


def _file_retention_rules() -> list[s3.LifecycleRule]:
    """One rule per `retention-days=N` object tag (domain/files.retention_tag): a file's bytes go a
    day after its record expires, never before. Untagged files (no expiry) stay until deleted."""
    return [s3.LifecycleRule(id=f"expire-files-{n}d", prefix=Prefix.FILES, tag_filters={RETENTION_TAG_KEY: str(n)},
                             expiration=Duration.days(n + 1))
            for n in range(1, MAX_RETENTION_DAYS + 1)]


class StatefulStack(Stack):
    def __init__(self, scope: Construct, id: str, *, config: EnvironmentConfig, **kwargs) -> None:
        super().__init__(scope, id, **kwargs)
        removal = config.removal_policy
        pitr = dynamodb.PointInTimeRecoverySpecification(
            point_in_time_recovery_enabled=config.point_in_time_recovery
        )

        self.state_table = dynamodb.Table(
            self, "StateTable",
            partition_key=dynamodb.Attribute(name="pk", type=dynamodb.AttributeType.STRING),
            sort_key=dynamodb.Attribute(name="sk", type=dynamodb.AttributeType.STRING),
            billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST,
            time_to_live_attribute="ttl",
            point_in_time_recovery_specification=pitr,
            encryption=dynamodb.TableEncryption.AWS_MANAGED,
            removal_policy=removal,
            deletion_protection=removal == RemovalPolicy.RETAIN,
        )
        _pin(self.state_table, "StateTable")

        self.keys_table = dynamodb.Table(
            self, "KeysTable",
            partition_key=dynamodb.Attribute(name="pk", type=dynamodb.AttributeType.STRING),
            billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST,
            point_in_time_recovery_specification=pitr,
            encryption=dynamodb.TableEncryption.AWS_MANAGED,
            removal_policy=removal,
            deletion_protection=removal == RemovalPolicy.RETAIN,
        )
        _pin(self.keys_table, "KeysTable")

        self.bucket = s3.Bucket(
            self, "Bucket",
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            encryption=s3.BucketEncryption.S3_MANAGED,
            enforce_ssl=True,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            removal_policy=removal,
            # Issue 8, defect 10: DESTROY alone fails `cdk destroy` as soon as the bucket holds a file.
            auto_delete_objects=removal == RemovalPolicy.DESTROY and config.empty_bucket_on_destroy,
            lifecycle_rules=[
                s3.LifecycleRule(id="abort-incomplete-multipart",
                                 abort_incomplete_multipart_upload_after=Duration.days(1)),
                # Parts of uploads that were never completed (an upload expires after 1 hour).
                s3.LifecycleRule(id="expire-upload-parts", prefix=Prefix.UPLOADS, expiration=Duration.days(2)),
                # Chunk segments are concatenated into the output files by Finalize.
                s3.LifecycleRule(id="expire-work", prefix=Prefix.WORK, expiration=Duration.days(7)),
                *_file_retention_rules(),
            ],
        )
        _pin(self.bucket, "Bucket")
        # A named export so the service stack's key-prefix policies (and their cdk-nag
        # acknowledgments) can name the bucket ARN the same way in every synth.
        self.bucket_arn_export_name = f"{id}-BucketArn"
        self.bucket_arn_import = self.export_value(self.bucket.bucket_arn, name=self.bucket_arn_export_name)

        self.dead_letter_queue = sqs.Queue(
            self, "ChunkDeadLetterQueue",
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
            retention_period=Duration.days(14),
            removal_policy=removal,
        )
        _pin(self.dead_letter_queue, "ChunkDeadLetterQueue")

        self.chunk_queue = sqs.Queue(
            self, "ChunkQueue",
            # >= 6x the worker timeout, as AWS advises for SQS event sources.
            visibility_timeout=Duration.seconds(config.worker.queue_visibility_seconds),
            retention_period=Duration.days(4),
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
            dead_letter_queue=sqs.DeadLetterQueue(
                max_receive_count=config.worker.max_receive_count, queue=self.dead_letter_queue
            ),
            removal_policy=removal,
        )
        _pin(self.chunk_queue, "ChunkQueue")

        self.event_bus = events.EventBus(self, "EventBus")
        _pin(self.event_bus, "EventBus")
        # GetAtt Name rather than Ref: same value on AWS, and moto's CloudFormation resolves only this one.
        cfn_bus = self.event_bus.node.default_child
        assert isinstance(cfn_bus, events.CfnEventBus)
        self.event_bus_name = cfn_bus.attr_name
        self.webhooks = WebhookStorage(self, "Webhooks", config=config, event_bus=self.event_bus,
                                       event_bus_name=self.event_bus_name)

        for name, value, description in [
            ("StateTableName", self.state_table.table_name, "DynamoDB state table (files, uploads, batches, chunks)"),
            ("KeysTableName", self.keys_table.table_name, "DynamoDB table of hashed API keys"),
            ("BucketName", self.bucket.bucket_name, "S3 bucket of file bytes and chunk results"),
            ("ChunkQueueUrl", self.chunk_queue.queue_url, "SQS queue of chunk pointer messages"),
            ("ChunkDeadLetterQueueUrl", self.dead_letter_queue.queue_url, "Chunk messages that kept failing"),
            ("EventBusName", self.event_bus_name, "EventBridge bus of batch.* status events"),
        ]:
            CfnOutput(self, name, value=value, description=description)

        acknowledge(
            self.bucket,
            "Access goes only through the service's own roles; enable CloudTrail S3 data events for audit.",
            "AwsSolutions-S1",
        )
        acknowledge(
            self.dead_letter_queue,
            "This queue is the dead-letter queue of the chunk queue.",
            "AwsSolutions-SQS3",
        )
        if not config.point_in_time_recovery:
            for table in (self.state_table, self.keys_table):
                acknowledge(table, f"Point-in-time recovery is on in prod only; {config.name} holds no data worth it.",
                            "AwsSolutions-DDB3")
