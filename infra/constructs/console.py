"""The batch console: GET /console and /console/{proxy+} on the REST API, served by a small function
that returns the page's packaged static files (functions/batchgate/console/)."""
from __future__ import annotations

from aws_cdk import CfnOutput
from aws_cdk import aws_apigateway as apigw
from constructs import Construct

from infra.constructs.function import BatchgateFunction, FunctionDefaults
from infra.constructs.nag import acknowledge

HANDLER = "batchgate.handlers.console.handler"


class ConsoleConstruct(Construct):
    """`<stage url>/console/` beside `<stage url>/v1`. No authorizer: the page is public static content
    and the API calls it makes carry the user's key. Its function needs no AWS permission at all."""

    def __init__(self, scope: Construct, id: str, *, defaults: FunctionDefaults, rest_api: apigw.RestApi) -> None:
        super().__init__(scope, id)
        self.function = BatchgateFunction(self, "Console", defaults=defaults, handler=HANDLER,
                                          memory_mb=256, timeout_seconds=10)
        integration = apigw.LambdaIntegration(self.function.function, proxy=True, allow_test_invoke=False)
        console = rest_api.root.add_resource("console")
        for resource in (console, console.add_resource("{proxy+}")):
            method = resource.add_method("GET", integration, authorization_type=apigw.AuthorizationType.NONE)
            acknowledge(method, "The console's static files are public by design: no tenant data; the API "
                                "calls the page makes carry the user's key.",
                        "AwsSolutions-APIG4", "AwsSolutions-COG4")
        CfnOutput(self, "Url", value=f"{rest_api.url}console/", description="The batch console (a web page)")
