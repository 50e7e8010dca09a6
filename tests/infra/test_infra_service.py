"""The service stack: functions, REST API routes, the workflow definition, workers, IAM."""
import json
import os
import re

import pytest
from infra_helpers import (
    actions_of,
    functions_by_handler,
    one,
    policy_statements,
    render,
    resources,
    role_of,
    state_machine_definition,
)
from support import apigw as apigw_events

from batchgate.contract import error_envelope
from infra.config import get_config

HANDLERS = {
    "authorizer": "batchgate.handlers.authorizer.handler",
    "files": "batchgate.handlers.api_files.handler",
    "uploads": "batchgate.handlers.api_uploads.handler",
    "batches": "batchgate.handlers.api_batches.handler",
    "validate": "batchgate.handlers.wf_validate.handler",
    "dispatch": "batchgate.handlers.wf_dispatch.handler",
    "finalize": "batchgate.handlers.wf_finalize.handler",
    "worker": "batchgate.handlers.chunk_worker.handler",
    "webhook_deliver": "batchgate.handlers.webhook_deliver.handler",
    "console": "batchgate.handlers.console.handler",
}
COMMON_ENV = {
    "BATCHGATE_ENV", "BATCHGATE_TABLE", "BATCHGATE_KEYS_TABLE", "BATCHGATE_BUCKET", "BATCHGATE_CHUNK_QUEUE_URL",
    "BATCHGATE_EVENT_BUS", "BATCHGATE_COMPLETION_WINDOW_SECONDS", "BATCHGATE_CHUNK_MAX_LINES",
    "BATCHGATE_CHUNK_MAX_BYTES", "BATCHGATE_MAX_DIRECT_UPLOAD_BYTES", "BATCHGATE_CONTENT_REDIRECT_BYTES",
    "BATCHGATE_PRESIGN_SECONDS", "BATCHGATE_UPSTREAMS", "BATCHGATE_QUOTAS", "BATCHGATE_BATCH_LANES",
    "POWERTOOLS_SERVICE_NAME",
}
ROUTES = {
    ("/v1/files", "GET"): "files", ("/v1/files", "POST"): "files",
    ("/v1/files/{file_id}", "GET"): "files", ("/v1/files/{file_id}", "DELETE"): "files",
    ("/v1/files/{file_id}/content", "GET"): "files",
    ("/v1/uploads", "POST"): "uploads",
    ("/v1/uploads/{upload_id}/parts", "POST"): "uploads",
    ("/v1/uploads/{upload_id}/complete", "POST"): "uploads",
    ("/v1/uploads/{upload_id}/cancel", "POST"): "uploads",
    ("/v1/batches", "GET"): "batches", ("/v1/batches", "POST"): "batches",
    ("/v1/batches/{batch_id}", "GET"): "batches",
    ("/v1/batches/{batch_id}/cancel", "POST"): "batches",
}
# No authorizer: the published OpenAPI document; the console's static files (its API calls carry the key).
OPEN_ROUTES = {("/v1/openapi.json", "GET"): "batches", ("/console", "GET"): "console",
               ("/console/{proxy+}", "GET"): "console"}


@pytest.fixture(scope="module")
def dev(synth):
    return synth("dev").templates["batchgate-dev-service"]


@pytest.fixture(scope="module")
def local(synth):
    return synth("local").templates["batchgate-local-service"]


@pytest.fixture(scope="module")
def fns(dev):
    by_handler = functions_by_handler(dev)
    return {name: by_handler[handler] for name, handler in HANDLERS.items()}


def logical_id(template, resource):
    return next(k for k, r in template["Resources"].items() if r is resource)


def test_exactly_the_designed_functions(dev):
    assert set(functions_by_handler(dev)) == set(HANDLERS.values())


def test_every_function_is_python312_arm64_with_the_layer_json_logs_and_tracing(dev, fns):
    layer_id, _ = one(dev, "AWS::Lambda::LayerVersion")
    for name, fn in fns.items():
        props = fn["Properties"]
        assert props["Runtime"] == "python3.12", name
        assert props["Architectures"] == ["arm64"], name
        assert props["Layers"] == [{"Ref": layer_id}], name
        assert props["LoggingConfig"]["LogFormat"] == "JSON", name
        assert props["LoggingConfig"]["LogGroup"] == {"Ref": props["LoggingConfig"]["LogGroup"]["Ref"]}
        assert props["TracingConfig"] == {"Mode": "Active"}, name
        assert "FunctionName" not in props


def test_layer_is_for_arm64_python312(dev):
    _, layer = one(dev, "AWS::Lambda::LayerVersion")
    assert layer["Properties"]["CompatibleRuntimes"] == ["python3.12"]
    assert layer["Properties"]["CompatibleArchitectures"] == ["arm64"]


def test_function_log_groups_have_retention(dev, fns):
    for fn in fns.values():
        group = dev["Resources"][fn["Properties"]["LoggingConfig"]["LogGroup"]["Ref"]]
        assert group["Type"] == "AWS::Logs::LogGroup"
        assert group["Properties"]["RetentionInDays"] == 14


def test_api_execution_logs_have_retention_before_the_stage_logs(dev):
    # Issue 8, defect 10: API Gateway creates API-Gateway-Execution-Logs_{api}/{stage} itself, kept forever.
    api_id, _ = one(dev, "AWS::ApiGateway::RestApi")
    groups = {lid: r for lid, r in resources(dev, "AWS::Logs::LogGroup").items()
              if "API-Gateway-Execution-Logs_" in json.dumps(r["Properties"].get("LogGroupName"))}
    (group_id, group), = groups.items()
    assert group["Properties"]["LogGroupName"] == {"Fn::Join": ["", ["API-Gateway-Execution-Logs_",
                                                                       {"Ref": api_id}, "/dev"]]}
    assert group["Properties"]["RetentionInDays"] == 14
    _, stage = one(dev, "AWS::ApiGateway::Stage")
    assert group_id in stage["DependsOn"]


def test_common_environment_everywhere_and_state_machine_arn_only_for_batches_api(dev, fns):
    for name, fn in fns.items():
        variables = set(fn["Properties"]["Environment"]["Variables"])
        assert COMMON_ENV <= variables, name
        assert ("BATCHGATE_STATE_MACHINE_ARN" in variables) == (name == "batches"), name
    machine_id, _ = one(dev, "AWS::StepFunctions::StateMachine")
    variables = fns["batches"]["Properties"]["Environment"]["Variables"]
    assert variables["BATCHGATE_STATE_MACHINE_ARN"] == {"Ref": machine_id}


def test_function_code_is_the_lambda_package_and_nothing_else(synth, fns):
    result = synth("dev")
    key = fns["files"]["Properties"]["Code"]["S3Key"]
    staged = result.assembly.directory + "/asset." + key.removesuffix(".zip")
    shipped = {os.path.relpath(os.path.join(d, f), staged) for d, _, files in os.walk(staged) for f in files}
    assert "batchgate/settings.py" in shipped and "batchgate/contract.py" in shipped
    assert all(p.startswith("batchgate/") and "__pycache__" not in p for p in shipped), sorted(shipped)
    # Local mode, the console scripts and the CDK app live outside the asset; nothing shipped reaches them.
    for path in (p for p in shipped if p.endswith(".py")):
        text = open(os.path.join(staged, path), encoding="utf-8").read()
        unshipped = r"^\s*(from|import) (moto|batchgate_local|batchgate_cli|infra|aws_cdk)\b"
        assert not re.search(unshipped, text, re.M), path
    assert len({fn["Properties"]["Code"]["S3Key"] for fn in fns.values()}) == 1  # one asset for all


def test_state_machine_follows_the_design(dev, fns):
    definition = state_machine_definition(dev)
    assert "QueryLanguage" not in definition or definition["QueryLanguage"] == "JSONPath"
    states = definition["States"]
    assert definition["StartAt"] == "Validate"
    validate_id, dispatch_id, finalize_id = (logical_id(dev, fns[n]) for n in ("validate", "dispatch", "finalize"))
    # payload_response_only: the function ARN is the Resource (what moto runs best).
    assert states["Validate"]["Resource"] == f"<{validate_id}.Arn>"
    assert "Lambda.ServiceException" in states["Validate"]["Retry"][0]["ErrorEquals"]
    assert states["Validate"]["Next"] == "Outcome"
    choices = {c["StringEquals"]: c["Next"] for c in states["Outcome"]["Choices"]}
    assert choices == {"valid": "FirstDispatch", "cancelled": "Cancelled", "failed": "ValidationFailed"}
    assert states["FirstDispatch"] == {"Type": "Pass", "Result": 1, "ResultPath": "$.dispatch_attempts",
                                       "Next": "Dispatch"}
    assert states["Outcome"]["Default"] == "StepFailed"

    dispatch = states["Dispatch"]
    assert dispatch["Resource"].endswith(":states:::lambda:invoke.waitForTaskToken")
    assert dispatch["Parameters"]["FunctionName"] == f"<{dispatch_id}.Arn>"
    assert dispatch["Parameters"]["Payload"] == {
        "batch_id.$": "$.batch_id", "tenant.$": "$.tenant", "task_token.$": "$$.Task.Token"}
    assert dispatch["TimeoutSecondsPath"] == "$.seconds_left"
    assert dispatch["ResultPath"] is None
    catches = {tuple(c["ErrorEquals"]): c["Next"] for c in dispatch["Catch"]}
    assert catches == {("Batch.Cancelled",): "Cancelled", ("States.Timeout",): "Expired",
                       ("States.ALL",): "CountDispatch"}
    assert dispatch["Next"] == "Completed"
    # Issue 8, defect 8: no retrier re-arms Dispatch's timeout; a failure goes round Revalidate, which
    # reads the seconds left from expires_at, at most 6 tries in all.
    assert "Retry" not in dispatch
    assert states["CountDispatch"]["Parameters"] == {"n.$": "States.MathAdd($.dispatch_attempts, 1)"}
    again = states["DispatchAgain"]
    assert again["Choices"] == [{"Variable": "$.dispatch_attempts.n", "NumericGreaterThanEquals": 6,
                                 "Next": "StepFailed"}] and again["Default"] == "DispatchBackoff"
    assert states["DispatchBackoff"]["Next"] == "Revalidate"
    revalidate = states["Revalidate"]
    assert revalidate["Parameters"]["FunctionName"] == f"<{validate_id}.Arn>"
    assert revalidate["ResultPath"] == "$.revalidated" and revalidate["Next"] == "Rearm"
    assert states["Rearm"]["Parameters"]["seconds_left.$"] == "$.revalidated.seconds_left"
    still = {c["StringEquals"]: c["Next"] for c in states["StillValid"]["Choices"]}
    assert still == {"valid": "Dispatch", "cancelled": "Cancelled"} and states["StillValid"]["Default"] == "StepFailed"
    for state, reason in (("Completed", "completed"), ("Cancelled", "cancelled"), ("Expired", "expired"),
                          ("StepFailed", "failed")):
        assert states[state] == {"Type": "Pass", "Result": reason, "ResultPath": "$.reason", "Next": "Finalize"}

    finalize = states["Finalize"]
    assert finalize["Resource"] == f"<{finalize_id}.Arn>"
    assert finalize.get("InputPath", "$") == "$" and "Parameters" not in finalize  # the whole state
    busy = next(r for r in finalize["Retry"] if r["ErrorEquals"] == ["Batch.ChunksBusy"])
    assert (busy["IntervalSeconds"], busy["BackoffRate"], busy["MaxAttempts"]) == (5, 1.5, 20)
    assert finalize.get("End") is True
    abort = states["Abort"]
    assert abort["Resource"] == f"<{finalize_id}.Arn>" and abort.get("End") is True
    assert abort["Parameters"] == {"batch_id.$": "$.batch_id", "tenant.$": "$.tenant", "reason": "abort",
                                   "error.$": "$.error"}
    assert [c["Next"] for c in abort["Catch"]] == ["Stranded"] and states["Stranded"]["Type"] == "Fail"
    # Nothing moto cannot run.
    assert not any("aws-sdk" in str(s.get("Resource", "")) for s in states.values())


def test_every_batch_ends_whatever_a_step_does(dev):
    """Each Task state retries (Dispatch by its own bounded loop), then catches States.ALL last, and every
    path from a catch reaches a state that ends the batch (Finalize, then Abort); the only Fail is after
    Abort itself failed."""
    states = state_machine_definition(dev)["States"]
    tasks = {name: s for name, s in states.items() if s["Type"] == "Task"}
    assert set(tasks) == {"Validate", "Dispatch", "Revalidate", "Finalize", "Abort"}
    for name, state in tasks.items():
        assert state["Catch"][-1]["ErrorEquals"] == ["States.ALL"], name
        if name != "Dispatch":
            assert any("States.ALL" in r["ErrorEquals"] for r in state["Retry"]), name

    def ends_batch(start: str) -> bool:
        seen, name = set(), start
        while name not in seen:
            seen.add(name)
            if name in ("Finalize", "Abort"):
                return True
            name = states[name].get("Next") or states[name].get("Default")
            if name is None:
                return False
        return False
    for name in ("Validate", "Dispatch", "Revalidate", "Finalize"):
        assert all(ends_batch(c["Next"]) for c in tasks[name]["Catch"]), name
    assert [n for n, s in states.items() if s["Type"] == "Fail"] == ["Stranded"]


def test_state_machine_is_standard_logged_and_traced(dev, local):
    _, machine = one(dev, "AWS::StepFunctions::StateMachine")
    assert machine["Properties"]["StateMachineType"] == "STANDARD"
    assert machine["Properties"]["LoggingConfiguration"]["Level"] == "ALL"
    assert machine["Properties"]["TracingConfiguration"] == {"Enabled": True}
    # Issue 8, defect 7: the task token is in Dispatch's parameters; execution data must not be logged.
    assert "$$.Task.Token" in json.dumps(machine["Properties"]["DefinitionString"])
    assert machine["Properties"]["LoggingConfiguration"]["IncludeExecutionData"] is False
    # Issue 8, defect 10: Step Functions' log group under /aws/vendedlogs/ (small log resource policy)
    (log_group,) = [r for r in resources(dev, "AWS::Logs::LogGroup").values()
                    if "vendedlogs" in str(r["Properties"].get("LogGroupName"))]
    assert log_group["Properties"]["LogGroupName"] == "/aws/vendedlogs/states/batchgate-dev-workflow"
    _, local_machine = one(local, "AWS::StepFunctions::StateMachine")
    assert "LoggingConfiguration" not in local_machine["Properties"]


def api_routes(template):
    """{(path, method): (integration function logical id, authorization type, authorizer ref)}."""
    api_id, _ = one(template, "AWS::ApiGateway::RestApi")
    res = resources(template, "AWS::ApiGateway::Resource")

    def path(ref):
        if ref == {"Fn::GetAtt": [api_id, "RootResourceId"]}:
            return ""
        r = res[ref["Ref"]]["Properties"]
        return f"{path(r['ParentId'])}/{r['PathPart']}"

    routes = {}
    for method in resources(template, "AWS::ApiGateway::Method").values():
        p = method["Properties"]
        uri = render(p["Integration"]["Uri"])
        target = uri.split("functions/<")[1].split(".Arn>")[0]
        routes[(path(p["ResourceId"]), p["HttpMethod"])] = (target, p["AuthorizationType"], p.get("AuthorizerId"),
                                                            p["Integration"]["Type"])
    return routes


def test_routes_methods_integrations_and_authorizer(dev, fns):
    routes = api_routes(dev)
    authorizer_id, authorizer = one(dev, "AWS::ApiGateway::Authorizer")
    assert set(routes) == set(ROUTES) | set(OPEN_ROUTES)
    for route, name in ROUTES.items():
        target, auth_type, auth_ref, integration = routes[route]
        assert target == logical_id(dev, fns[name]), route
        assert (auth_type, auth_ref, integration) == ("CUSTOM", {"Ref": authorizer_id}, "AWS_PROXY"), route
    for route, name in OPEN_ROUTES.items():
        target, auth_type, auth_ref, integration = routes[route]
        assert (target, auth_type, auth_ref, integration) == (logical_id(dev, fns[name]), "NONE", None,
                                                              "AWS_PROXY"), route
    props = authorizer["Properties"]
    assert props["Type"] == "REQUEST"
    assert props["IdentitySource"] == "method.request.header.Authorization"
    assert props["AuthorizerResultTtlInSeconds"] == 300
    assert f"<{logical_id(dev, fns['authorizer'])}.Arn>" in render(props["AuthorizerUri"])


def test_api_stage_binary_types_and_base_url(dev):
    _, api = one(dev, "AWS::ApiGateway::RestApi")
    # */*: API Gateway decodes file content for any client's first Accept value (curl's */*, browsers')
    assert api["Properties"]["BinaryMediaTypes"] == ["*/*"] == list(apigw_events.BINARY_TYPES)
    _, stage = one(dev, "AWS::ApiGateway::Stage")
    assert stage["Properties"]["StageName"] == "dev"
    assert "AccessLogSetting" in stage["Properties"] and stage["Properties"]["TracingEnabled"] is True
    assert render(dev["Outputs"]["ApiUrl"]["Value"]).endswith("/v1")
    assert "StateMachineArn" in dev["Outputs"]


def test_gateway_responses_speak_openai(dev):
    by_type = {r["Properties"]["ResponseType"]: r["Properties"]
               for r in resources(dev, "AWS::ApiGateway::GatewayResponse").values()}
    for kind in ("UNAUTHORIZED", "ACCESS_DENIED"):
        assert by_type[kind]["StatusCode"] == "401"
        body = json.loads(by_type[kind]["ResponseTemplates"]["application/json"])
        assert body == {"error": {"message": "Incorrect API key provided.", "type": "invalid_request_error",
                                  "param": None, "code": "invalid_api_key"}}
    too_large = by_type["REQUEST_TOO_LARGE"]
    assert too_large["StatusCode"] == "413"
    message = json.loads(too_large["ResponseTemplates"]["application/json"])["error"]["message"]
    # Issue 8: the Uploads API in HTTP terms and the part size in words, no Python-only helper.
    assert "POST /v1/uploads" in message and "POST /v1/uploads/{upload_id}/parts" in message
    assert "at most 4 MiB (4194304 bytes)" in message and "upload_file_chunked" not in message
    assert {"DEFAULT_4XX", "DEFAULT_5XX"} <= set(by_type)
    assert '"error":{"message":$context.error.messageString' in by_type["DEFAULT_5XX"]["ResponseTemplates"][
        "application/json"]


def test_every_gateway_response_is_the_one_envelope(dev):
    for props in (r["Properties"] for r in resources(dev, "AWS::ApiGateway::GatewayResponse").values()):
        template = props["ResponseTemplates"]["application/json"]
        body = json.loads(template.replace("$context.error.messageString", '"rendered"'))
        err = body["error"]
        assert body == error_envelope(err["message"], type=err["type"], param=err["param"], code=err["code"])


def chunk_queue_mapping(template) -> dict:
    (mapping,) = [m for m in resources(template, "AWS::Lambda::EventSourceMapping").values()
                  if "ChunkQueue" in render(m["Properties"]["EventSourceArn"])]
    return mapping


def test_worker_event_source_mapping(dev, fns):
    mapping = chunk_queue_mapping(dev)
    props = mapping["Properties"]
    assert props["FunctionName"] == {"Ref": logical_id(dev, fns["worker"])}
    assert props["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert props["ScalingConfig"]["MaximumConcurrency"] == get_config("dev").worker.max_concurrency >= 2
    assert 1 <= props["BatchSize"] <= 10
    assert "ChunkQueue" in render(props["EventSourceArn"])


def test_each_function_gets_narrow_permissions(dev, fns):
    def actions(name):
        return actions_of(policy_statements(dev, role_of(fns[name])))

    assert actions("authorizer") >= {"dynamodb:GetItem"}
    assert not any(a.startswith(("dynamodb:Put", "dynamodb:Update", "dynamodb:Delete", "s3:", "states:"))
                   for a in actions("authorizer"))
    assert {"states:StartExecution", "states:SendTaskFailure"} <= actions("batches")
    assert "states:SendTaskSuccess" in actions("worker") and "sqs:SendMessage" in actions("worker")
    assert "states:SendTaskFailure" in actions("dispatch") and "sqs:SendMessage" in actions("dispatch")
    assert "ssm:GetParameter" in actions("worker")
    assert not any(a.startswith("ssm:") for n in fns if n != "worker" for a in actions(n))
    assert "events:PutEvents" in actions("finalize") and "events:PutEvents" in actions("validate")
    assert not any(a.startswith("states:") for n in ("files", "uploads", "validate", "finalize")
                   for a in actions(n))
    assert "s3:PutObject" not in actions("validate")
    for name in fns:  # no managed policies, no wildcard actions
        role = dev["Resources"][role_of(fns[name])]
        assert "ManagedPolicyArns" not in role["Properties"], name
        assert not any(a.endswith("*") for a in actions(name)), name


def test_dispatch_task_response_policy_does_not_block_the_function(dev, fns):
    # The function must not depend on the policy naming the state machine (that would be a cycle).
    dispatch = fns["dispatch"]
    machine_id, _ = one(dev, "AWS::StepFunctions::StateMachine")
    for dep in dispatch.get("DependsOn", []):
        assert machine_id not in str(dev["Resources"][dep])


MOTO_CREATABLE = {
    "AWS::DynamoDB::Table", "AWS::SQS::Queue", "AWS::S3::Bucket", "AWS::Lambda::Function",
    "AWS::Lambda::LayerVersion", "AWS::Lambda::EventSourceMapping", "AWS::Lambda::Permission",
    "AWS::IAM::Role", "AWS::IAM::Policy", "AWS::StepFunctions::StateMachine", "AWS::Events::EventBus",
    "AWS::Events::Rule",  # and moto delivers its SQS targets (tests/e2e/test_e2e_webhooks.py)
    "AWS::ApiGateway::RestApi", "AWS::ApiGateway::Resource", "AWS::ApiGateway::Method",
    "AWS::ApiGateway::Deployment", "AWS::Logs::LogGroup", "AWS::CloudWatch::Dashboard",
}
# moto's CloudFormation skips these with a warning; nothing moto creates depends on them.
MOTO_SKIPPED = {"AWS::ApiGateway::Stage", "AWS::ApiGateway::Authorizer", "AWS::ApiGateway::GatewayResponse",
                "AWS::S3::BucketPolicy", "AWS::SQS::QueuePolicy"}


def test_local_templates_use_only_what_moto_handles(synth):
    for name, template in synth("local").templates.items():
        types = {r["Type"] for r in template["Resources"].values()}
        assert types <= MOTO_CREATABLE | MOTO_SKIPPED, (name, types - MOTO_CREATABLE - MOTO_SKIPPED)
    service = synth("local").templates["batchgate-local-service"]
    for fn in functions_by_handler(service).values():
        assert fn["Properties"].get("TracingConfig", {}).get("Mode") != "Active"
    assert not resources(service, "AWS::ApiGateway::Account")


# What local mode passes.
LOCAL_OVERRIDES = {
    "upstream_base_url": "http://127.0.0.1:9911/v1",
    "upstream_api_key_env": "BG_TEST_UPSTREAM_KEY",
    "completion_window_seconds": 3,
    "chunk_max_lines": 7,
    "worker_max_concurrency": 3,
    "quotas": {"default": {"active_batches": 20}, "tenants": {"big": {"enqueued_tokens_per_model": 10**9}}},
}


def test_local_overrides_reach_the_template(synth):
    service = synth("local", LOCAL_OVERRIDES).templates["batchgate-local-service"]
    worker = functions_by_handler(service)[HANDLERS["worker"]]
    variables = worker["Properties"]["Environment"]["Variables"]
    upstreams = json.loads(variables["BATCHGATE_UPSTREAMS"])
    assert upstreams["upstreams"]["default"] == {**upstreams["upstreams"]["default"],
                                                "base_url": "http://127.0.0.1:9911/v1",
                                                "api_key_env": "BG_TEST_UPSTREAM_KEY"}
    assert variables["BATCHGATE_COMPLETION_WINDOW_SECONDS"] == "3"
    assert variables["BATCHGATE_CHUNK_MAX_LINES"] == "7"
    assert json.loads(variables["BATCHGATE_QUOTAS"]) == LOCAL_OVERRIDES["quotas"]
    assert chunk_queue_mapping(service)["Properties"]["ScalingConfig"]["MaximumConcurrency"] == 3
    # a batch runs on all workers but the reserved one (WorkerConfig.batch_lanes)
    dispatch = functions_by_handler(service)[HANDLERS["dispatch"]]
    assert dispatch["Properties"]["Environment"]["Variables"]["BATCHGATE_BATCH_LANES"] == "2"


def test_functions_that_read_keys_that_may_not_exist_may_list_their_prefix(dev, fns):
    """S3 answers a GET of a missing key 404 only to a caller allowed s3:ListBucket (for that key as
    s3:prefix); without it the answer is 403 AccessDenied. Workers and Finalize read segment records
    that do not exist yet and Finalize lists work/<batch>/ to delete it: they list work/ only."""
    def list_statements(name):
        return [s for s in policy_statements(dev, role_of(fns[name])) if "s3:ListBucket" in actions_of([s])]

    for name in ("worker", "finalize"):
        (statement,) = list_statements(name)
        assert statement["Effect"] == "Allow" and actions_of([statement]) == {"s3:ListBucket"}
        assert render(statement["Resource"]).startswith("<import ") and "BucketArn" in render(statement["Resource"])
        assert statement["Condition"] == {"StringLike": {"s3:prefix": ["work/*"]}}
    for name in set(fns) - {"worker", "finalize"}:
        assert list_statements(name) == [], name


def test_the_authorizer_key_cache_never_outlives_api_gateways(dev, fns):
    # Revocation takes authorizer_cache_seconds plus the authorizer's own cache: at most 15 s more.
    variables = fns["authorizer"]["Properties"]["Environment"]["Variables"]
    assert variables["BATCHGATE_KEY_CACHE_SECONDS"] == str(min(15, get_config("dev").api.authorizer_cache_seconds))


# -- custom domain (issue 8) -------------------------------------------------------------------------
DOMAIN = {"name": "batch.example.com", "hosted_zone_id": "Z0123456789ABCDEFGHIJ", "hosted_zone_name": "example.com",
          "certificate_arn": "arn:aws:acm:eu-west-1:123456789012:certificate/0e7c7c1a-1111-2222-3333-444455556666"}


def test_no_custom_domain_unless_configured(dev):
    for type_ in ("AWS::ApiGateway::DomainName", "AWS::ApiGateway::BasePathMapping", "AWS::Route53::RecordSet"):
        assert resources(dev, type_) == {}
    assert "CustomDomainUrl" not in dev["Outputs"]


def test_custom_domain_maps_the_stage_at_its_root_and_aliases_the_name(synth):
    template = synth("dev", {"domain": DOMAIN}).templates["batchgate-dev-service"]
    domain_id, domain = one(template, "AWS::ApiGateway::DomainName")
    props = domain["Properties"]
    assert props["DomainName"] == "batch.example.com"
    assert props["RegionalCertificateArn"] == DOMAIN["certificate_arn"]
    assert props["EndpointConfiguration"] == {"Types": ["REGIONAL"]} and props["SecurityPolicy"] == "TLS_1_2"
    _, mapping = one(template, "AWS::ApiGateway::BasePathMapping")
    rest_id, _ = one(template, "AWS::ApiGateway::RestApi")
    stage_id, _ = one(template, "AWS::ApiGateway::Stage")
    assert mapping["Properties"]["DomainName"] == {"Ref": domain_id}
    assert mapping["Properties"]["RestApiId"] == {"Ref": rest_id}
    assert mapping["Properties"]["Stage"] == {"Ref": stage_id} and "BasePath" not in mapping["Properties"]
    _, record = one(template, "AWS::Route53::RecordSet")
    assert record["Properties"]["Type"] == "A" and record["Properties"]["Name"] == "batch.example.com."
    assert record["Properties"]["HostedZoneId"] == DOMAIN["hosted_zone_id"]
    alias = record["Properties"]["AliasTarget"]
    assert alias["DNSName"] == {"Fn::GetAtt": [domain_id, "RegionalDomainName"]}
    assert alias["HostedZoneId"] == {"Fn::GetAtt": [domain_id, "RegionalHostedZoneId"]}
    assert template["Outputs"]["CustomDomainUrl"]["Value"] == "https://batch.example.com/v1"


def test_a_domain_outside_its_zone_is_refused():
    import pydantic

    from infra.config import DomainConfig
    with pytest.raises(pydantic.ValidationError, match="not in hosted zone"):
        DomainConfig(**{**DOMAIN, "name": "batch.other.org"})


def test_cdk_json_sets_every_flag_cdk_init_recommends_for_the_pinned_aws_cdk_lib():
    # Issue 8, defect 4: without them, e.g., changing the authorizer did not redeploy the stage.
    import tarfile
    from pathlib import Path

    import aws_cdk

    from infra.synth import cdk_json_context
    (tgz,) = (Path(aws_cdk.__file__).parent / "_jsii").glob("aws-cdk-lib@*.jsii.tgz")
    with tarfile.open(tgz) as archive:
        recommended = json.load(archive.extractfile("package/recommended-feature-flags.json"))
    context = cdk_json_context()
    # Deliberate: the service stack imports the stateful stack's exports (CloudFormation refuses to
    # remove an export in use, so the data stack cannot be changed out from under the service).
    kept = {"@aws-cdk/core:defaultCrossStackReferences": "strong"}
    assert {k: context.get(k) for k in recommended} == {**recommended, **kept}


def test_changing_the_authorizer_redeploys_the_stage(synth, dev):
    def deployment_id(template):
        (lid,) = resources(template, "AWS::ApiGateway::Deployment")
        return lid

    changed = synth("dev", {"api": {"authorizer_cache_seconds": 60}}).templates["batchgate-dev-service"]
    assert deployment_id(changed) != deployment_id(dev)
