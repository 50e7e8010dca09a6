"""The one house Lambda construct every Batchgate function is built with."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from aws_cdk import Duration
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct

from infra.config import EnvironmentConfig
from infra.constructs.nag import acknowledge
from infra.paths import FUNCTION_EXCLUDES, FUNCTIONS_DIR

RUNTIME = lambda_.Runtime.PYTHON_3_12


def function_code() -> lambda_.Code:
    """The `functions/` folder (handlers, domain, adapters); dependencies come from the layer."""
    return lambda_.Code.from_asset(str(FUNCTIONS_DIR), exclude=FUNCTION_EXCLUDES)


@dataclass(frozen=True)
class FunctionDefaults:
    """What every function of one environment shares."""
    config: EnvironmentConfig
    code: lambda_.Code
    layer: lambda_.ILayerVersion
    environment: Mapping[str, str] = field(default_factory=dict)


class BatchgateFunction(Construct):
    """Python 3.12 on arm64, JSON logs into its own log group with retention, X-Ray when the
    environment observes, the dependency layer, the common BATCHGATE_* environment, and a role
    that starts empty (no managed policies): callers grant exactly what the function needs."""

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        defaults: FunctionDefaults,
        handler: str,
        memory_mb: int,
        timeout_seconds: int,
        extra_environment: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(scope, id)
        config = defaults.config
        self.log_group = logs.LogGroup(
            self, "LogGroup", retention=config.log_retention, removal_policy=config.removal_policy
        )
        self.role = iam.Role(
            self, "Role",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description=f"batchgate {config.name} {handler}",
        )
        self.function = lambda_.Function(
            self, "Function",
            runtime=RUNTIME,
            architecture=lambda_.Architecture.ARM_64,
            handler=handler,
            code=defaults.code,
            layers=[defaults.layer],
            role=self.role,
            memory_size=memory_mb,
            timeout=Duration.seconds(timeout_seconds),
            environment={**defaults.environment, **(extra_environment or {})},
            logging_format=lambda_.LoggingFormat.JSON,
            application_log_level_v2=lambda_.ApplicationLogLevel.INFO,
            system_log_level_v2=lambda_.SystemLogLevel.WARN,
            log_group=self.log_group,
            # Active tracing is switched on below, with its permissions in a policy of their own.
            tracing=lambda_.Tracing.DISABLED,
            description=f"batchgate {config.name}: {handler}",
        )
        self.log_group.grant_write(self.role)
        acknowledge(
            self,
            "Python 3.12 is pinned on purpose: the dependency layer is built for cp312 wheels.",
            "AwsSolutions-L1",
        )
        if config.observability:
            # Tracing.ACTIVE would add the X-Ray statement (Resource "*") to the role's default
            # policy, and acknowledging it there would hide any future "*" grant. The X-Ray actions
            # get their own policy, and only that policy is acknowledged.
            fn = self.function.node.default_child
            fn.tracing_config = lambda_.CfnFunction.TracingConfigProperty(mode="Active")
            xray = iam.Policy(self, "XRayPolicy", roles=[self.role], statements=[iam.PolicyStatement(
                actions=["xray:PutTraceSegments", "xray:PutTelemetryRecords"], resources=["*"])])
            fn.add_dependency(xray.node.default_child)
            acknowledge(
                xray,
                "X-Ray PutTraceSegments/PutTelemetryRecords support no resource-level permissions.",
                "AwsSolutions-IAM5[Resource::*]",
            )
