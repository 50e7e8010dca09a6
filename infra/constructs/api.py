"""The public REST API: OpenAI-shaped routes under /v1, a key authorizer, OpenAI error envelopes."""
from __future__ import annotations

import json

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_certificatemanager as acm
from aws_cdk import aws_logs as logs
from aws_cdk import aws_route53 as route53
from aws_cdk import aws_route53_targets as route53_targets
from constructs import Construct

from batchgate.contract import Env, error_envelope, uploads_hint
from infra.constructs.function import BatchgateFunction, FunctionDefaults
from infra.constructs.nag import acknowledge

# Every media type is binary: request bodies reach Lambda base64-encoded (the handlers decode them),
# and a base64 answer (file content) is decoded for any client. API Gateway decides the latter by the
# request's FIRST Accept value only: with a narrower list, curl (`*/*`), requests and browsers would
# get the file's base64 text instead of its bytes.
BINARY_MEDIA_TYPES = ["*/*"]

# API Gateway itself answers these (before or instead of a handler); shape them like OpenAI's errors.
_INVALID_KEY = error_envelope("Incorrect API key provided.", code="invalid_api_key")
# API Gateway's own 413 (bodies over its 10 MB quota): the same advice as the handlers' 413, in HTTP
# terms any client (any SDK, curl) can follow, for the default 4 MiB limit.
_TOO_LARGE = error_envelope("Request body too large. POST /v1/files takes files up to 4 MiB (4194304 bytes). "
                            + uploads_hint(4 * 1024 * 1024), code="request_too_large")
_THROTTLED = error_envelope("Rate limit reached for requests. Slow down and retry.", type="requests",
                            code="rate_limit_exceeded")
_MESSAGE_SLOT = "__message__"


def _envelope_template(message_expr: str, type_: str, code: str | None = None) -> str:
    """The envelope as a mapping template: `message_expr` is VTL that renders a quoted JSON string
    (`$context.error.messageString` is one), so it replaces the message with its quotes."""
    body = json.dumps(error_envelope(_MESSAGE_SLOT, type=type_, code=code), separators=(",", ":"))
    return body.replace(json.dumps(_MESSAGE_SLOT), message_expr)


GATEWAY_RESPONSES: list[tuple[str, apigw.ResponseType, str, str]] = [
    ("Unauthorized", apigw.ResponseType.UNAUTHORIZED, "401", json.dumps(_INVALID_KEY)),
    ("AccessDenied", apigw.ResponseType.ACCESS_DENIED, "401", json.dumps(_INVALID_KEY)),
    ("RequestTooLarge", apigw.ResponseType.REQUEST_TOO_LARGE, "413", json.dumps(_TOO_LARGE)),
    ("Throttled", apigw.ResponseType.THROTTLED, "429", json.dumps(_THROTTLED)),
    # A REST API answers unknown routes with "Missing Authentication Token"; OpenAI says 404.
    ("UnknownRoute", apigw.ResponseType.MISSING_AUTHENTICATION_TOKEN, "404",
     _envelope_template('"Invalid URL ($context.httpMethod $context.path)"', "invalid_request_error")),
    ("Default4xx", apigw.ResponseType.DEFAULT_4_XX, "", _envelope_template("$context.error.messageString",
                                                                          "invalid_request_error")),
    ("Default5xx", apigw.ResponseType.DEFAULT_5_XX, "", _envelope_template("$context.error.messageString",
                                                                          "server_error")),
]

# (path under /v1, methods, which function)
ROUTES: list[tuple[str, tuple[str, ...], str]] = [
    ("files", ("GET", "POST"), "files"),
    ("files/{file_id}", ("GET", "DELETE"), "files"),
    ("files/{file_id}/content", ("GET",), "files"),
    ("uploads", ("POST",), "uploads"),
    ("uploads/{upload_id}/parts", ("POST",), "uploads"),
    ("uploads/{upload_id}/complete", ("POST",), "uploads"),
    ("uploads/{upload_id}/cancel", ("POST",), "uploads"),
    ("batches", ("GET", "POST"), "batches"),
    ("batches/{batch_id}", ("GET",), "batches"),
    ("batches/{batch_id}/cancel", ("POST",), "batches"),
]

# Routes without the key authorizer: read-only, no tenant data (the published OpenAPI document).
OPEN_ROUTES: list[tuple[str, tuple[str, ...], str]] = [
    ("openapi.json", ("GET",), "batches"),
]

HANDLERS = {
    "authorizer": "batchgate.handlers.authorizer.handler",
    "files": "batchgate.handlers.api_files.handler",
    "uploads": "batchgate.handlers.api_uploads.handler",
    "batches": "batchgate.handlers.api_batches.handler",
}


class ApiConstruct(Construct):
    """REST API, stage = environment name, routes under /v1: the SDK's base URL is `<stage url>/v1`."""

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        defaults: FunctionDefaults,
        batches_environment: dict[str, str],
    ) -> None:
        super().__init__(scope, id)
        config = defaults.config

        def function(name: str, extra: dict[str, str] | None = None) -> BatchgateFunction:
            return BatchgateFunction(
                self, name.capitalize(),
                defaults=defaults, handler=HANDLERS[name],
                memory_mb=config.functions.api_memory_mb, timeout_seconds=config.functions.api_timeout_seconds,
                extra_environment=extra,
            )

        # A revoked key stops working within authorizer_cache_seconds (API Gateway's cache) plus the
        # authorizer's own in-memory cache, which never outlives the first (0 turns both off).
        self.authorizer_function = function("authorizer", {
            Env.KEY_CACHE_SECONDS: str(min(15, config.api.authorizer_cache_seconds))})
        self.functions = {
            "files": function("files"),
            "uploads": function("uploads"),
            "batches": function("batches", batches_environment),
        }

        self.authorizer = apigw.RequestAuthorizer(
            self, "KeyAuthorizer",
            handler=self.authorizer_function.function,
            identity_sources=[apigw.IdentitySource.header("Authorization")],
            results_cache_ttl=Duration.seconds(config.api.authorizer_cache_seconds),
        )

        stage_options: dict = dict(
            stage_name=config.name,
            throttling_rate_limit=config.api.throttling_rate_limit,
            throttling_burst_limit=config.api.throttling_burst_limit,
        )
        if config.observability:
            self.access_log_group = logs.LogGroup(
                self, "AccessLogs", retention=config.log_retention, removal_policy=config.removal_policy
            )
            stage_options.update(
                access_log_destination=apigw.LogGroupLogDestination(self.access_log_group),
                access_log_format=apigw.AccessLogFormat.json_with_standard_fields(
                    caller=True, http_method=True, ip=True, protocol=True, request_time=True,
                    resource_path=True, response_length=True, status=True, user=True,
                ),
                logging_level=apigw.MethodLoggingLevel.ERROR,
                metrics_enabled=True,
                tracing_enabled=True,
            )

        self.rest_api = apigw.RestApi(
            self, "RestApi",
            rest_api_name=f"batchgate-{config.name}",
            description=f"batchgate {config.name}: OpenAI-compatible Files, Uploads and Batches API",
            endpoint_types=[apigw.EndpointType.REGIONAL],
            binary_media_types=BINARY_MEDIA_TYPES,
            deploy_options=apigw.StageOptions(**stage_options),
            # Execution logs need the account-wide API Gateway CloudWatch role; kept on delete
            # because other APIs in the account rely on it too.
            cloud_watch_role=config.observability,
            cloud_watch_role_removal_policy=RemovalPolicy.RETAIN if config.observability else None,
            default_method_options=apigw.MethodOptions(
                authorizer=self.authorizer, authorization_type=apigw.AuthorizationType.CUSTOM
            ),
        )

        if config.observability:
            # Execution logs go to a group API Gateway creates itself, without retention (issue 8,
            # defect 10): declared here with the environment's retention, before the stage can log.
            self.execution_log_group = logs.LogGroup(
                self, "ExecutionLogs",
                log_group_name=f"API-Gateway-Execution-Logs_{self.rest_api.rest_api_id}/{config.name}",
                retention=config.log_retention, removal_policy=config.removal_policy,
            )
            self.rest_api.deployment_stage.node.add_dependency(self.execution_log_group)

        for name, type_, status, template in GATEWAY_RESPONSES:
            self.rest_api.add_gateway_response(
                name, type=type_, status_code=status or None,
                templates={"application/json": template},
            )

        integrations = {
            name: apigw.LambdaIntegration(fn.function, proxy=True, allow_test_invoke=False)
            for name, fn in self.functions.items()
        }
        v1 = self.rest_api.root.add_resource("v1")
        for path, methods, target in ROUTES:
            resource = v1.resource_for_path(path)
            for method in methods:
                resource.add_method(method, integrations[target])
        for path, methods, target in OPEN_ROUTES:
            resource = v1.resource_for_path(path)
            for method in methods:
                open_method = resource.add_method(method, integrations[target],
                                                  authorization_type=apigw.AuthorizationType.NONE)
                acknowledge(open_method, "The OpenAPI document is public by design: no tenant data.",
                            "AwsSolutions-APIG4", "AwsSolutions-COG4")

        self.domain = self._custom_domain(config.domain) if config.domain else None
        self._acknowledge(config.observability)

    def _custom_domain(self, domain) -> apigw.DomainName:
        """https://<domain>/v1: a regional custom domain mapped at its root to the stage, and a Route 53
        alias record pointing the name at it."""
        custom = apigw.DomainName(
            self, "CustomDomain",
            domain_name=domain.name,
            certificate=acm.Certificate.from_certificate_arn(self, "Certificate", domain.certificate_arn),
            endpoint_type=apigw.EndpointType.REGIONAL,
            security_policy=apigw.SecurityPolicy.TLS_1_2,
        )
        custom.add_base_path_mapping(self.rest_api, stage=self.rest_api.deployment_stage)
        zone = route53.HostedZone.from_hosted_zone_attributes(
            self, "Zone", hosted_zone_id=domain.hosted_zone_id, zone_name=domain.hosted_zone_name)
        route53.ARecord(self, "AliasRecord", zone=zone, record_name=domain.name,
                        target=route53.RecordTarget.from_alias(route53_targets.ApiGatewayDomain(custom)))
        return custom

    @property
    def url(self) -> str:
        """The base URL the OpenAI SDK takes (`base_url=`)."""
        return f"{self.rest_api.url}v1"

    def _acknowledge(self, observability: bool) -> None:
        acknowledge(
            self.rest_api,
            "Handlers validate every request with pydantic models and answer OpenAI-shaped errors.",
            "AwsSolutions-APIG2",
        )
        acknowledge(
            self.rest_api,
            "API keys are checked by the Lambda REQUEST authorizer (OpenAI-style bearer keys), not Cognito.",
            "AwsSolutions-COG4",
        )
        acknowledge(
            self.rest_api,
            "WAF is left to the deploying team (WebACLs are account-specific); the stage is throttled.",
            "AwsSolutions-APIG3",
        )
        if observability:
            acknowledge(
                self.rest_api,
                "AmazonAPIGatewayPushToCloudWatchLogs is AWS's own policy for the account-wide logging role.",
                "AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/"
                "AmazonAPIGatewayPushToCloudWatchLogs]",
            )
        else:
            acknowledge(
                self.rest_api,
                "Local environment (moto): no access or execution logs, nothing would read them.",
                "AwsSolutions-APIG1", "AwsSolutions-APIG6",
            )
